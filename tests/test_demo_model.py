"""The shipped demo weights through ``LocalPipeline``: they must really find the synthetic peaks."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from peaknet_serve.accuracy import score
from peaknet_serve.config import load_service_config
from peaknet_serve.errors import ConfigError
from peaknet_serve.model.section import ModelSection, builtin_weights_path
from peaknet_serve.peaks import is_hit
from peaknet_serve.pipeline import LocalPipeline
from peaknet_serve.synthetic import SyntheticFrames


@pytest.fixture(scope="module")
def pipeline():
    with LocalPipeline.from_config() as pipe:
        yield pipe


def test_demo_weights_are_shipped_small_and_named_builtin() -> None:
    section = ModelSection(preset="peaknet-demo", weights="builtin:peaknet-demo")
    assert section.weights == builtin_weights_path("peaknet-demo")
    assert section.weights.stat().st_size < 2_000_000  # 350k fp32 parameters


def test_unknown_builtin_weights_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no built-in weights 'nope'"):
        load_service_config({"model": {"weights": "builtin:nope"}})


def test_demo_model_finds_peaks_within_1_5_px(pipeline: LocalPipeline) -> None:
    generator = SyntheticFrames(shape=(512, 512), peaks=30, hit_fraction=1.0, seed=4242)
    images, truths = generator.batch(0, 6)
    found = pipeline.process(images)
    s = score(truths, found, radius=1.5)
    assert s.n_true == 180
    assert s.recall >= 0.9, s
    assert s.precision >= 0.9, s
    assert s.mean_error < 0.5, s
    assert s.hit_accuracy == 1.0


def test_demo_model_is_quiet_on_frames_without_peaks(pipeline: LocalPipeline) -> None:
    images, _ = SyntheticFrames(shape=(512, 512), hit_fraction=0.0, seed=4243).batch(0, 4)
    found = pipeline.process(images)
    assert sum(len(p) for p in found) <= 2
    assert not any(is_hit(p.n_found, pipeline.config.hits) for p in found)


def test_process_accepts_integer_frames_and_other_sizes(pipeline: LocalPipeline) -> None:
    generator = SyntheticFrames(shape=(200, 300), peaks=8, hit_fraction=1.0, seed=7, dtype="uint16")
    images, truths = generator.batch(0, 2)
    found = pipeline.process(images)
    s = score(truths, found, radius=1.5)
    assert s.recall >= 0.9 and s.precision >= 0.9, s


def test_process_rejects_a_single_frame(pipeline: LocalPipeline) -> None:
    with pytest.raises(ValueError, match="add a leading axis"):
        pipeline.process(np.zeros((64, 64), np.float32))


def test_from_config_reads_a_serve_config_file(tmp_path) -> None:
    serve_config = {
        "applications": [
            {
                "name": "peaknet",
                "import_path": "deployments.app:build_app",
                "args": {
                    "model": {"preset": "peaknet-demo", "weights": "builtin:peaknet-demo"},
                    "engine": {"device": "cpu"},
                    "peaks": {"min_pixels": 3},
                    "hits": {"min_peaks": 5},
                },
            }
        ]
    }
    path = tmp_path / "serve_config.yaml"
    path.write_text(yaml.safe_dump(serve_config))
    with LocalPipeline.from_config(path) as pipe:
        assert pipe.config.peaks.min_pixels == 3
        assert pipe.config.hits.min_peaks == 5
        images, truths = SyntheticFrames(hit_fraction=1.0, seed=11).batch(0, 1)
        assert score(truths, pipe.process(images)).recall >= 0.9


def test_from_config_names_the_bad_key() -> None:
    with pytest.raises(ConfigError, match="peaks.min_pixels"):
        LocalPipeline.from_config(
            {"model": {"weights": "builtin:peaknet-demo"}, "peaks": {"min_pixels": 0}}
        )
