"""Hits that mean something, with the default configuration and the shipped demo model: blank
frames (Poisson background at 1, 10 and 50 photons/px, with and without a water ring, with and
without NaN module gaps; dark frames of 0.001-0.1 photons/px) are no hits, and frames with a
crystal's spots are."""

from __future__ import annotations

import numpy as np
import pytest

from peaknet_serve.pipeline import LocalPipeline
from peaknet_serve.synthetic import SyntheticFrames, blank_frame


@pytest.fixture(scope="module")
def pipeline():
    with LocalPipeline.from_config() as pipe:
        yield pipe


@pytest.mark.slow
def test_blank_frames_are_at_most_one_percent_hits(pipeline: LocalPipeline) -> None:
    rng = np.random.default_rng(2026)
    results = []
    for photons in (1.0, 10.0, 50.0):
        for ring in (False, True):
            for gaps in (False, True):
                images = np.stack(
                    [
                        blank_frame(rng, (1024, 1024), photons=photons, water_ring=ring, gaps=gaps)
                        for _ in range(3)
                    ]
                )
                results.extend(pipeline.judge(images))
    assert len(results) == 36
    assert not any(r.failure for r in results)
    hits = sum(r.hit for r in results)
    assert hits <= 0.01 * len(results), [r.peaks.n_found for r in results]


@pytest.mark.parametrize("photons", [0.001, 0.03, 0.05, 0.1])
def test_dark_frames_are_no_hits(pipeline: LocalPipeline, photons: float) -> None:
    # the background ring's noise is 0 here: without a noise floor every SNR was NaN and passed
    rng = np.random.default_rng(int(photons * 1000))
    (result,) = pipeline.judge(rng.poisson(photons, (1, 1024, 1024)).astype(np.float32))
    assert result.failure is None
    assert not result.hit, result.peaks.n_found
    assert result.peaks.n_found <= 2
    assert (result.peaks.total_intensity > 0).all()


def test_frames_with_spots_are_hits(pipeline: LocalPipeline) -> None:
    # faint, sharp spots on true Poisson backgrounds, as pattern_sim makes them
    images = []
    for background in (1.0, 10.0, 50.0):
        generator = SyntheticFrames(
            shape=(512, 512),
            peaks=40,
            hit_fraction=1.0,
            seed=77,
            background=(background, background),
            intensity=(300.0, 3000.0),
            sigma=(0.5, 0.9),
            noise="poisson",
        )
        images.append(generator.batch(0, 8)[0])
    results = pipeline.judge(np.concatenate(images))
    assert sum(r.hit for r in results) >= 0.99 * len(results), [r.peaks.n_found for r in results]
