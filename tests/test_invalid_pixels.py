"""Invalid pixels (sentinels, NaN gaps, a bad-pixel mask) are masked, not fatal: the model still
finds the spots of the rest of the frame, no peak uses them, hopeless frames fail with a reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from prometheus_client import CollectorRegistry

from peaknet_serve.accuracy import match_frame
from peaknet_serve.config import load_service_config
from peaknet_serve.errors import ConfigError, InvalidFrameError
from peaknet_serve.model import InputConfig, prepare_batch
from peaknet_serve.peaks import PeakFinder, PeaksConfig, PixelScreen, find_peaks, invalid_values
from peaknet_serve.pipeline import LocalPipeline
from peaknet_serve.service.accounting import FrameLedger
from peaknet_serve.service.screen import MaskedPixelMetrics, screen_batch
from peaknet_serve.service.stage import PeakStage
from peaknet_serve.synthetic import FrameTruth, SyntheticFrames
from peaknet_serve.wire import FrameBatch

SHAPE = (256, 256)
SENTINEL = 0xFFFFFFFF


def gap_mask() -> np.ndarray:
    """Two gap rows and a dead column pair, as between Eiger modules."""
    gaps = np.zeros(SHAPE, dtype=bool)
    gaps[127:129] = True
    gaps[:, 90:92] = True
    gaps[:, 200] = True
    return gaps


def gap_geometry(path: Path, *, rows: bool) -> Path:
    """A one-panel CrystFEL geometry whose ``bad_`` regions are gap_mask()'s columns (and rows)."""
    regions = {"cols": (90, 91, 0, 255), "col": (200, 200, 0, 255)}
    if rows:
        regions["rows"] = (0, 255, 127, 128)
    path.write_text(
        "clen = 0.1\nres = 10000\nphoton_energy = 9500\nadu_per_photon = 1\ndata = /data/data\n\n"
        "p0/min_fs = 0\np0/max_fs = 255\np0/min_ss = 0\np0/max_ss = 255\n"
        "p0/corner_x = -128\np0/corner_y = -128\np0/fs = x\np0/ss = y\n\n"
        + "".join(
            f"bad_{name}/panel = p0\nbad_{name}/min_fs = {f0}\nbad_{name}/max_fs = {f1}\n"
            f"bad_{name}/min_ss = {s0}\nbad_{name}/max_ss = {s1}\n"
            for name, (f0, f1, s0, s1) in regions.items()
        )
    )
    return path


def frames() -> tuple[np.ndarray, list[FrameTruth]]:
    generator = SyntheticFrames(shape=SHAPE, peaks=20, hit_fraction=1.0, seed=515, sigma=(0.8, 1.3))
    return generator.batch(0, 4)


def away_from(truth: FrameTruth, gaps: np.ndarray, distance: float = 4.0) -> FrameTruth:
    """The spots of ``truth`` farther than ``distance`` px from every gap pixel."""
    gy, gx = np.nonzero(gaps)
    far = np.array(
        [np.min(np.hypot(gy - y, gx - x)) > distance for y, x in zip(truth.y, truth.x, strict=True)]
    )
    return FrameTruth(
        truth.event,
        truth.timestamp,
        truth.wavelength_nm,
        truth.panel[far],
        truth.y[far],
        truth.x[far],
        truth.intensity[far],
        truth.sigma[far],
    )


def matched(truths: list[FrameTruth], found: list) -> int:
    return sum(match_frame(t, p).n_matched for t, p in zip(truths, found, strict=True))


def pipeline(peaks: dict) -> LocalPipeline:
    return LocalPipeline.from_config(
        {"model": {"preset": "peaknet-demo", "weights": "builtin:peaknet-demo"}, "peaks": peaks}
    )


@pytest.fixture(scope="module")
def clean_found() -> tuple[list[FrameTruth], int]:
    images, truths = frames()
    rest = [away_from(t, gap_mask()) for t in truths]
    with pipeline({}) as pipe:
        found = pipe.process(np.rint(images).astype(np.uint32))
    reference = matched(rest, found)
    assert reference >= 0.9 * sum(t.n_peaks for t in rest)  # the model sees these spots at all
    return rest, reference


def test_uint32_sentinel_gaps_flagged_by_value_leave_the_other_spots_found(clean_found) -> None:
    rest, reference = clean_found
    images, _ = frames()
    gapped = np.rint(images).astype(np.uint32)
    gapped[:, gap_mask()] = SENTINEL
    with pipeline({"flag_morethan": SENTINEL - 1}) as pipe:
        results = pipe.judge(gapped)
    assert all(r.masked_pixels == gap_mask().sum() for r in results)
    assert matched(rest, [r.peaks for r in results]) >= 0.9 * reference


def test_uint32_sentinel_gaps_in_the_bad_pixel_mask_leave_the_other_spots_found(
    clean_found, tmp_path: Path
) -> None:
    rest, reference = clean_found
    images, _ = frames()
    gapped = np.rint(images).astype(np.uint32)
    gapped[:, gap_mask()] = SENTINEL
    mask_file = tmp_path / "mask.npy"
    np.save(mask_file, (~gap_mask()).astype(np.uint8))  # Cheetah convention: 1 good
    with pipeline({"bad_pixel_mask": str(mask_file)}) as pipe:
        found = pipe.process(gapped)
    assert matched(rest, found) >= 0.9 * reference


def test_nan_gap_pixels_leave_the_other_spots_found(clean_found) -> None:
    rest, reference = clean_found
    images, _ = frames()
    gapped = np.rint(images).astype(np.float32)
    gapped[:, gap_mask()] = np.nan
    with pipeline({}) as pipe:
        found = pipe.process(gapped)
    assert matched(rest, found) >= 0.9 * reference
    for peaks in found:  # no peak sits on a gap
        assert not gap_mask()[np.rint(peaks.y).astype(int), np.rint(peaks.x).astype(int)].any()


def test_hot_pixels_given_as_a_bad_pixel_array_leave_the_other_spots_found(clean_found) -> None:
    rest, reference = clean_found
    images, _ = frames()
    hot = np.rint(images).astype(np.uint16)
    hot[:, gap_mask()] = 65535
    with pipeline({}) as pipe:
        unmasked = pipe.process(hot)
    assert matched(rest, unmasked) < 0.5 * reference  # the hot pixels do hurt when unmasked
    config = pipe.config
    with LocalPipeline(config, bad_pixels=gap_mask()) as pipe:
        found = pipe.process(hot)
    assert matched(rest, found) >= 0.9 * reference


def test_frames_without_enough_valid_pixels_fail_with_their_reason() -> None:
    images, _ = frames()
    images = images[:3].copy()
    images[1] = np.nan
    images[2, :200] = np.inf  # 78 % invalid
    with pipeline({"max_invalid_fraction": 0.5}) as pipe:
        results = pipe.judge(images)
        assert results[0].failure is None and len(results[0].peaks) > 0
        assert "no valid pixel" in results[1].failure
        assert "78.1% of the pixels invalid" in results[2].failure
        assert len(results[1].peaks) == len(results[2].peaks) == 0
        with pytest.raises(InvalidFrameError, match="2 of 3 frames failed; frame 1: no valid"):
            pipe.process(images)


def test_screen_counts_and_nans_every_kind_of_invalid_pixel() -> None:
    images = np.full((2, 4, 5), 10, dtype=np.int32)
    images[0, 0, 0] = 100  # > flag_morethan
    images[0, 1, 1] = -999  # < flag_lessthan
    bad = np.zeros((4, 5), dtype=bool)
    bad[3, 4] = True
    screen = PixelScreen(PeaksConfig(flag_morethan=50, flag_lessthan=0), bad_pixels=bad)
    screened = screen.screen(images)
    assert screened.masked_pixels.tolist() == [3, 1]
    assert screened.failures == [None, None]
    assert screened.images.dtype == np.float32
    assert np.isnan(screened.images[0]).sum() == 3 and np.isnan(screened.images[1, 3, 4])
    assert images[0, 0, 0] == 100  # the input is not modified
    clean = np.full((2, 4, 5), 10, dtype=np.int32)
    assert PixelScreen(PeaksConfig()).screen(clean).images is clean  # nothing to do: no copy


def test_flags_compare_like_crystfel() -> None:
    values = np.array([-1000.0, -999.0, 0.0, 16383.0, 16384.0, np.nan, np.inf])
    config = PeaksConfig(flag_lessthan=-999, flag_morethan=16383)
    assert invalid_values(values, config).tolist() == [True, False, False, False, True, True, True]
    assert invalid_values(np.zeros(3, np.uint16), PeaksConfig()) is None


def test_normalisation_leaves_non_finite_pixels_out() -> None:
    rng = np.random.default_rng(0)
    frame = rng.poisson(10, (1, 64, 64)).astype(np.float32)
    with_gaps = frame.copy()
    with_gaps[0, 10:12] = np.nan
    with_gaps[0, :, 5] = np.inf
    x, _ = prepare_batch(torch.from_numpy(with_gaps), InputConfig())
    valid = np.isfinite(with_gaps[0])
    expected = (frame[0] - frame[0][valid].mean()) / frame[0][valid].std()
    out = x[0, 0].numpy()
    np.testing.assert_allclose(out[valid], expected[valid], rtol=1e-4, atol=1e-4)
    assert np.all(out[~valid] == 0.0)


def test_peaks_never_hold_flagged_pixels() -> None:
    image = np.full((32, 32), 10.0)
    image[8:11, 8:11] = 200.0
    image[20:23, 20:23] = 200.0
    image[21, 21] = 70000.0  # a saturated pixel inside the second peak
    image[5:15, 14] = 70000.0  # a flagged column in the first peak's background ring
    mask = image > 50
    mask[:, 14] = False
    config = PeaksConfig(flag_morethan=65000, min_snr=None)
    peaks = find_peaks(mask, image, config)
    assert len(peaks) == 1  # the peak holding a flagged pixel is dropped
    assert peaks.x[0] == pytest.approx(9.0)
    assert peaks.total_intensity[0] == pytest.approx(9 * 190.0)
    unflagged = PeakFinder(PeaksConfig(min_snr=None)).find(mask, image)
    assert len(unflagged) == 2


def test_hot_pixels_in_the_geometry_files_bad_regions_leave_the_other_spots_found(
    clean_found, tmp_path: Path
) -> None:
    """``output.geometry_file``'s ``bad_`` regions feed the same mask, with no array in code."""
    rest, reference = clean_found
    images, _ = frames()
    hot = np.rint(images).astype(np.uint16)
    hot[:, 127:129] = 65535  # the gap rows of gap_mask(), as two bad regions in fs/ss
    hot[:, :, 90:92] = 65535
    hot[:, :, 200] = 65535
    geometry = gap_geometry(tmp_path / "gapped.geom", rows=True)
    config = {
        "model": {"preset": "peaknet-demo", "weights": "builtin:peaknet-demo"},
        "output": {"geometry_file": str(geometry)},
    }
    with LocalPipeline.from_config(config) as pipe:
        results = pipe.judge(hot)
    assert all(r.masked_pixels == gap_mask().sum() for r in results)
    assert matched(rest, [r.peaks for r in results]) >= 0.9 * reference
    for result in results:  # no peak sits on a bad region
        y, x = np.rint(result.peaks.y).astype(int), np.rint(result.peaks.x).astype(int)
        assert not gap_mask()[y, x].any()


DEMO = {"model": {"preset": "peaknet-demo", "weights": "builtin:peaknet-demo"}}


def test_a_missing_or_misfit_bad_pixel_mask_is_refused_at_config_load(tmp_path) -> None:
    with pytest.raises(ConfigError, match="no file"):
        load_service_config({**DEMO, "peaks": {"bad_pixel_mask": str(tmp_path / "nope.npy")}})
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(ConfigError, match="cannot read"):
        load_service_config({**DEMO, "peaks": {"bad_pixel_mask": str(tmp_path / "junk.h5")}})
    np.save(tmp_path / "mask.npy", np.ones((16, 16), dtype=np.uint8))
    peaks = {"bad_pixel_mask": str(tmp_path / "mask.npy")}
    with pytest.raises(ConfigError, match=r"shape \(16, 16\) but the frames are \(32, 32\)"):
        load_service_config({**DEMO, "peaks": peaks, "warmup": {"frame_shapes": [[32, 32]]}})
    fitting = load_service_config({**DEMO, "peaks": peaks, "warmup": {"frame_shapes": [[16, 16]]}})
    assert fitting.peaks.bad_pixel_mask == str(tmp_path / "mask.npy")


def test_frames_the_bad_pixel_mask_does_not_fit_are_logged_once(tmp_path, caplog) -> None:
    np.save(tmp_path / "mask.npy", np.ones((16, 16), dtype=np.uint8))
    screen = PixelScreen(PeaksConfig(bad_pixel_mask=str(tmp_path / "mask.npy")))
    frames = np.zeros((2, 32, 32), dtype=np.float32)
    for _ in range(3):
        with pytest.raises(ConfigError, match="shape"):
            screen.screen(frames)
    logged = [r for r in caplog.records if "bad_pixel_mask" in r.getMessage()]
    assert len(logged) == 1
    assert screen.screen(np.zeros((1, 16, 16), dtype=np.float32)).failures == [None]


def test_a_batch_failure_message_gives_every_distinct_reason_with_its_count() -> None:
    images = np.zeros((4, 8, 8), dtype=np.float32)
    images[0] = np.nan  # no valid pixel
    images[1] = np.nan
    images[2, :6] = np.nan  # 75% invalid
    batch = FrameBatch(images=images, metadata={}, original_shape=None)
    screened = screen_batch(batch, PixelScreen(PeaksConfig()))
    summary = screened.failure_summary()
    assert summary.startswith("2 frame(s): no valid pixel")
    assert "; 1 frame(s): 75.0% of the pixels invalid" in summary


def test_resolution_limits_on_panel_stacks_are_refused_or_reach_last_error(tmp_path) -> None:
    stacks = {"warmup": {"frame_shapes": [[2, 16, 16]]}}
    with pytest.raises(ConfigError, match="min_res/max_res need 2-D frames"):
        load_service_config({**DEMO, "peaks": {"min_res": 5}, **stacks})
    config = load_service_config(
        {**DEMO, "peaks": {"min_res": 5}, "output": {"output_dir": str(tmp_path)}}
    )
    images = np.ones((2, 2, 16, 16), dtype=np.float32)
    masks = np.zeros(images.shape, dtype=np.uint8)
    masks[..., 6:9, 6:9] = 1
    images[..., 6:9, 6:9] = 100.0
    batch = FrameBatch(images=images, metadata={}, original_shape=None)
    stage = PeakStage(config.peaks, config.hits, config.output, writer_id="w")
    outcome = stage.process(masks, batch)
    assert outcome.failed == {"peak_finding": 2}
    assert "min_res/max_res need a 2-D frame" in outcome.error
    ledger = FrameLedger()
    ledger.frames_received(2)
    ledger.settle(hits=0, non_hits=0, failed=outcome.failed, error=outcome.error)
    assert "min_res/max_res need a 2-D frame" in ledger.snapshot()["last_error"]


@pytest.mark.parametrize("dtype", [np.uint32, np.uint16])
def test_unflagged_sentinel_gaps_are_warned_once_and_counted(dtype, caplog) -> None:
    top = np.iinfo(dtype).max
    images = np.full((3, 64, 64), 5, dtype=dtype)
    images[0, 30:32] = top  # gap rows: 3% of the pixels
    images[1, :, 10] = top
    images[2, 0, :4] = top  # 4 saturated pixels: 0.1%, no gap
    screen = PixelScreen(PeaksConfig())
    batch = FrameBatch(images=images, metadata={}, original_shape=None)
    registry = CollectorRegistry()
    metrics = MaskedPixelMetrics(registry)
    for _ in range(2):
        screened = screen_batch(batch, screen)
        assert screened.kept is batch  # the default masking is unchanged
        metrics.observe(screened)
    assert screen.screen(images).sentinel_frames.tolist() == [True, True, False]
    assert registry.get_sample_value("peaknet_sentinel_frames_total") == 4
    warned = [r for r in caplog.records if "peaks.flag_morethan" in r.getMessage()]
    assert len(warned) == 1
    assert f"set peaks.flag_morethan to {top - 1}" in warned[0].getMessage()
    flagged = PixelScreen(PeaksConfig(flag_morethan=top - 1)).screen(images)
    assert not flagged.sentinel_frames.any()
