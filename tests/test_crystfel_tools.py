"""The CrystFEL runner against the real pattern_sim and indexamajig: frames made, indexed, read."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from peaknet_serve.crystfel import (
    LYSOZYME,
    CrystFEL,
    index,
    peaks_on_reflections,
    simulate_patterns,
)
from tests.test_crystfel_cxi import SIM_GEOMETRY


def test_simulated_lysozyme_frames_are_indexed_and_their_peaks_lie_on_reflections(
    crystfel: CrystFEL, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # relative paths, as a user types them
    geometry = Path("det.geom")
    geometry.write_text(SIM_GEOMETRY)
    cell = LYSOZYME.write(Path("lyso.cell"))
    frames = simulate_patterns(crystfel, cell, geometry, Path("frames"), 3)
    with h5py.File(frames[0]) as f:
        image = f["/data/data"][()]
    assert image.shape == (512, 512) and 5 < np.median(image) < 15  # 10 photons of background

    chunks = index(
        crystfel, frames, geometry, cell, Path("pf8.stream"), peaks="peakfinder8",
        extra_args=["--threshold=20", "--min-snr=5", "--min-pix-count=1"],
    )
    assert [Path(c.filename).name for c in chunks] == [f.name for f in frames]
    assert all(c.photon_energy_ev == 9500.0 for c in chunks)
    indexed = [c for c in chunks if c.indexed]
    assert len(indexed) >= 2
    for chunk in indexed:
        a, b, c = chunk.crystals[0].cell[:3]
        assert abs(a - 7.91) < 0.1 and abs(b - 7.91) < 0.1 and abs(c - 3.79) < 0.1  # nm
        on, total = peaks_on_reflections(chunk)
        assert total >= 5 and on / total > 0.7
    unindexed = index(
        crystfel, frames, geometry, None, Path("peaks.stream"), peaks="peakfinder8",
        indexing="none", extra_args=["--threshold=20", "--min-snr=5", "--min-pix-count=1"],
    )
    assert not any(c.indexed for c in unindexed)
    assert peaks_on_reflections(unindexed[0]) == (0, len(unindexed[0].peaks))
    (single,) = simulate_patterns(crystfel, cell, geometry, Path("one"), 1)
    assert single.is_file()
