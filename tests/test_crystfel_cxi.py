"""The real CrystFEL 0.11.1 reads what the service writes: the geometry ``peaknet-serve geom``
prints is used as written, every event is read with the file's peaks, and pattern_sim's lysozyme
frames that went through the service path are indexed (``indexamajig --peaks=cxi``)."""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from peaknet_serve import cli
from peaknet_serve.config import load_service_config
from peaknet_serve.crystfel import LYSOZYME, Chunk, CrystFEL, index, simulate_patterns
from peaknet_serve.cxi import CXIConfig, CXIWriter
from peaknet_serve.cxi.geometry import read_geometry
from peaknet_serve.cxi.geometry_bad_pixels import bad_pixel_mask
from peaknet_serve.peaks import Peaks
from peaknet_serve.pipeline import LocalPipeline
from peaknet_serve.service.stage import PeakStage
from peaknet_serve.wire import FrameBatch

GEOMETRY_DIR = Path(__file__).parent / "data" / "geometry"
RESULT = "/entry_1/result_1"
#: geometry file -> (frame shape, output settings, camera length CrystFEL should find, in m)
DETECTORS = {
    "epix10k2m-mfx.geom": ((16, 352, 384), {}, 0.1),  # clen commented out: geom's FIXME value
    "jungfrau4m-cxi.geom": ((8, 512, 1024), {}, 0.0875),
    "cspad-cxi.geom": ((32, 185, 388), {"clen_field": "EncoderValue"}, -0.450 + 0.573224),
    "rayonix-mfx.geom": ((1920, 1920), {}, 0.130),
}
#: Photons per pulse for the small frames: bright enough that the demo model finds the ~10
#: spots per 512 x 512 frame that indexing needs (at 3e14 it finds 4-10).
BRIGHT = 1e15
#: A 512 x 512 detector of 89 um pixels at 80 mm, 9.5 keV: lysozyme's spots out to ~2.5 A.
SIM_GEOMETRY = """photon_energy = 9500
clen = 0.08
res = 11235.955
adu_per_photon = 1
data = /data/data
p0/min_fs = 0
p0/max_fs = 511
p0/min_ss = 0
p0/max_ss = 511
p0/corner_x = -256
p0/corner_y = -256
p0/fs = x
p0/ss = y
"""


@pytest.fixture(autouse=True)
def _subcommands(monkeypatch) -> None:
    monkeypatch.setitem(cli.SUBCOMMANDS, "geom", "peaknet_serve.cli.geom")


def _geom(cxi: Path, out: Path) -> Path:
    """``peaknet-serve geom --cxi CXI -o OUT``, as a user runs it."""
    assert cli.main(["geom", "--cxi", str(cxi), "-o", str(out)]) == 0
    return out


def _file_peaks(cxi: Path) -> list[np.ndarray]:
    with h5py.File(cxi) as handle:
        counts = handle[f"{RESULT}/nPeaks"][()]
        x, y = handle[f"{RESULT}/peakXPosRaw"][()], handle[f"{RESULT}/peakYPosRaw"][()]
    return [np.stack([x[i, :n], y[i, :n]], axis=1) for i, n in enumerate(counts)]


def _assert_same_peaks(chunks: list[Chunk], cxi: Path) -> None:
    """Every event was read, with the file's peaks at CrystFEL's pixel centres (+0.5 px)."""
    written = _file_peaks(cxi)
    assert [chunk.event for chunk in chunks] == [f"//{i}" for i in range(len(written))]
    for chunk, expected in zip(chunks, written, strict=True):
        got = chunk.peaks[:, :2]
        assert len(got) == len(expected)
        order = np.lexsort(expected.T[::-1]), np.lexsort((got - 0.5).T[::-1])
        # the stream gives positions to 2 decimals
        np.testing.assert_allclose(got[order[1]], expected[order[0]] + 0.5, atol=0.006)


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_indexamajig_reads_the_lcls_detectors_with_the_geometry_geom_writes(
    crystfel: CrystFEL, tmp_path: Path, name: str
) -> None:
    shape, settings, clen_m = DETECTORS[name]
    config = CXIConfig(output_dir=str(tmp_path), geometry_file=str(GEOMETRY_DIR / name),
                       **settings)
    rng = np.random.default_rng(7)
    geometry = read_geometry(GEOMETRY_DIR / name)
    bad = bad_pixel_mask(geometry, shape).reshape(-1, *shape[-2:])
    n_panels = bad.shape[0]
    height, width = shape[-2:]
    bad_pixels = np.argwhere(bad)
    events = []
    for _ in range(2):
        n = 40
        panel = rng.integers(0, n_panels, n)
        x, y = rng.uniform(0, width - 1, n).round(1), rng.uniform(0, height - 1, n).round(1)
        on_bad = bad_pixels[rng.choice(len(bad_pixels), 5, replace=False)]
        panel[:5], y[:5], x[:5] = on_bad[:, 0], on_bad[:, 1] + 0.2, on_bad[:, 2] + 0.3
        events.append(Peaks(x, y, rng.uniform(50, 500, n), np.full(n, 4, np.int32),
                            np.full(n, 60.0), np.full(n, 8.0), panel.astype(np.int32)))
    frames = rng.poisson(2.0, (2, *shape)).astype(np.float32)
    metadata = {"photon_energy_eV": np.array([9500.0, 9510.0]),
                "EncoderValue": np.array([-450.0, -450.0])}
    with CXIWriter(config, writer_id="w") as writer:
        assert writer.write_batch(frames, events, metadata, [True, True]) == 2
    (cxi,) = writer.files_written
    geom = _geom(cxi, tmp_path / "out.geom")
    stream = tmp_path / "peaks.stream"
    chunks = index(crystfel, [cxi], geom, None, stream, indexing="none",
                   extra_args=["--no-revalidate"])
    assert [chunk.photon_energy_ev for chunk in chunks] == [9500.0, 9510.0]
    lengths = re.findall(r"average_camera_length = (\S+) m", stream.read_text())
    assert [float(v) for v in lengths] == pytest.approx([clen_m] * 2, abs=2e-4)
    _assert_same_peaks(chunks, cxi)  # those on bad pixels too: --no-revalidate keeps them


def test_a_panel_stack_without_geometry_gets_one_crystfel_reads(crystfel, tmp_path) -> None:
    rng = np.random.default_rng(3)
    peaks = Peaks(rng.uniform(0, 63, 12), rng.uniform(0, 31, 12), np.ones(12),
                  np.full(12, 3, np.int32), np.ones(12), np.ones(12),
                  rng.integers(0, 4, 12).astype(np.int32))
    with CXIWriter(CXIConfig(output_dir=str(tmp_path)), writer_id="w") as writer:
        writer.write_batch(np.ones((3, 4, 32, 64)), [peaks] * 3,
                           {"photon_energy_eV": np.full(3, 9000.0)}, [True] * 3)
    (cxi,) = writer.files_written
    geom = _geom(cxi, tmp_path / "out.geom")
    assert "FIXME" in geom.read_text()
    chunks = index(crystfel, [cxi], geom, None, tmp_path / "x.stream", indexing="none",
                   extra_args=["--no-revalidate"])
    _assert_same_peaks(chunks, cxi)


def test_simulated_lysozyme_through_the_service_path_is_indexed(crystfel, tmp_path) -> None:
    sim_geom = tmp_path / "det.geom"
    sim_geom.write_text(SIM_GEOMETRY)
    cell = LYSOZYME.write(tmp_path / "lyso.cell")
    frames = simulate_patterns(
        crystfel, cell, sim_geom, tmp_path / "frames", 4, photons_per_pulse=BRIGHT
    )
    images = np.stack([h5py.File(f)["/data/data"][()] for f in frames]).astype(np.float32)
    config = load_service_config({
        "model": {"preset": "peaknet-demo", "weights": "builtin:peaknet-demo"},
        "engine": {"device": "cpu"},
        "hits": {"min_peaks": 5},
        # every frame written: indexamajig is to read each event, hit or not
        "output": {"output_dir": str(tmp_path / "out"), "geometry_file": str(sim_geom),
                   "write_mode": "all"},
    })
    with LocalPipeline(config) as pipeline:
        masks = pipeline.masks(images)
    stage = PeakStage(config.peaks, config.hits, config.output, writer_id="w")
    batch = FrameBatch(images=images, original_shape=None, metadata={
        "photon_energy_ev": np.full(4, 9500.0), "timestamp": np.arange(4, dtype=np.uint64)})
    outcome = stage.process(masks, batch)
    stage.close()
    assert outcome.hits >= 3 and outcome.hits + outcome.non_hits == 4
    assert not outcome.failed and outcome.write_error is None
    (cxi,) = sorted((tmp_path / "out").glob("*.cxi"))
    geom = _geom(cxi, tmp_path / "out.geom")
    chunks = index(crystfel, [cxi], geom, cell, tmp_path / "cxi.stream",
                   extra_args=["--no-revalidate"])
    _assert_same_peaks(chunks, cxi)
    indexed = [chunk for chunk in chunks if chunk.indexed]
    assert len(indexed) >= 3, [(len(c.peaks), c.indexed_by) for c in chunks]
    for chunk in indexed:
        assert chunk.indexed_by.split("-")[0] in ("asdf", "taketwo")
        a, b, c = chunk.crystals[0].cell[:3]
        assert abs(a - 7.91) < 0.1 and abs(b - 7.91) < 0.1 and abs(c - 3.79) < 0.1  # nm
