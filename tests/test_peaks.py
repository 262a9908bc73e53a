"""Peaks from hand-made masks and frames, and the hit rule."""

from __future__ import annotations

import re

import h5py
import numpy as np
import pytest
from pydantic import ValidationError
from scipy import ndimage

import peaknet_serve.peaks as peaks_pkg
from peaknet_serve.errors import ConfigError
from peaknet_serve.peaks import HitConfig, PeakFinder, PeaksConfig, find_peaks, is_hit

UNWEIGHTED = PeaksConfig(centroid="unweighted")


def _frame(shape: tuple[int, ...], level: float = 10.0) -> np.ndarray:
    return np.full(shape, level, dtype=np.float64)


def _lit(mask: np.ndarray, level: float = 10.0, signal: float = 50.0) -> np.ndarray:
    """A flat frame with ``signal`` added under ``mask``: every component has a positive total."""
    image = _frame(mask.shape, level)
    image[mask] += signal
    return image


def test_public_names_are_exported() -> None:
    for name in peaks_pkg.__all__:
        assert hasattr(peaks_pkg, name), name


def test_unweighted_centroid_is_the_mean_pixel_position() -> None:
    mask = np.zeros((20, 30), dtype=bool)
    mask[5:8, 10:13] = True
    mask[6, 13] = True  # 10 pixels, mean x = (3 * (10 + 11 + 12) + 13) / 10
    image = _lit(mask)
    peaks = find_peaks(mask, image, UNWEIGHTED)
    assert len(peaks) == 1
    assert peaks.x[0] == pytest.approx((3 * 33 + 13) / 10)
    assert peaks.y[0] == pytest.approx(6.0)
    assert peaks.n_pixels[0] == 10
    assert peaks.panel.tolist() == [0]


def test_weighted_centroid_subtracts_the_local_background() -> None:
    mask = np.zeros((40, 40), dtype=bool)
    mask[10:13, 20:23] = True
    image = _frame(mask.shape, 100.0)
    signal = np.array([[0, 1, 0], [1, 4, 6], [0, 1, 0]], dtype=float)
    image[10:13, 20:23] += signal
    peaks = find_peaks(mask, image)
    ys, xs = np.mgrid[10:13, 20:23]
    assert peaks.x[0] == pytest.approx((signal * xs).sum() / signal.sum())
    assert peaks.y[0] == pytest.approx((signal * ys).sum() / signal.sum())
    assert peaks.total_intensity[0] == pytest.approx(signal.sum())
    assert peaks.max_value[0] == pytest.approx(106.0)
    unweighted = find_peaks(mask, image, UNWEIGHTED)
    assert unweighted.x[0] == pytest.approx(21.0)
    assert peaks.x[0] > unweighted.x[0] + 0.3


def test_snr_and_total_on_a_noisy_background() -> None:
    rng = np.random.default_rng(1)
    image = rng.normal(50.0, 2.0, (64, 64))
    mask = np.zeros(image.shape, dtype=bool)
    mask[30:33, 30:33] = True
    image[30:33, 30:33] += 20.0
    peaks = find_peaks(mask, image)
    assert peaks.total_intensity[0] == pytest.approx(180.0, abs=20.0)
    # total / (noise * sqrt(npix)) with noise ~2: ~180 / 6 = 30
    assert 15.0 < peaks.snr[0] < 60.0
    assert peaks.x[0] == pytest.approx(31.0, abs=0.2)


def test_background_none_gives_raw_sums_and_no_snr() -> None:
    mask = np.zeros((10, 10), dtype=bool)
    mask[2:4, 2:4] = True
    image = _frame(mask.shape, 5.0)
    peaks = find_peaks(mask, image, PeaksConfig(background="none", min_snr=None))
    assert peaks.total_intensity[0] == pytest.approx(20.0)
    assert np.isnan(peaks.snr[0])


def test_matches_scipy_center_of_mass_on_a_random_mask() -> None:
    rng = np.random.default_rng(2)
    mask = rng.random((200, 300)) < 0.08
    image = rng.random(mask.shape) + 0.5
    labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
    config = PeaksConfig(
        min_pixels=1, max_pixels=None, background="none", min_snr=None, max_peaks=10**6
    )
    weighted = find_peaks(mask, image, config)
    unweighted = find_peaks(mask, image, config.model_copy(update={"centroid": "unweighted"}))
    assert len(weighted) == n
    expected_w = np.array(ndimage.center_of_mass(image, labels, range(1, n + 1)))
    expected_u = np.array(ndimage.center_of_mass(mask, labels, range(1, n + 1)))
    order = np.lexsort((weighted.x, weighted.y))
    order_w = np.lexsort((expected_w[:, 1], expected_w[:, 0]))
    np.testing.assert_allclose(weighted.y[order], expected_w[order_w, 0], atol=1e-9)
    np.testing.assert_allclose(weighted.x[order], expected_w[order_w, 1], atol=1e-9)
    order = np.lexsort((unweighted.x, unweighted.y))
    order_u = np.lexsort((expected_u[:, 1], expected_u[:, 0]))
    np.testing.assert_allclose(unweighted.x[order], expected_u[order_u, 1], atol=1e-9)
    sums = ndimage.sum_labels(image, labels, range(1, n + 1))
    assert np.sort(weighted.total_intensity) == pytest.approx(np.sort(sums))


def test_diagonal_pixels_form_one_component() -> None:
    mask = np.zeros((10, 10), dtype=bool)
    mask[[2, 3, 4], [2, 3, 4]] = True
    peaks = find_peaks(mask, _lit(mask), UNWEIGHTED)
    assert len(peaks) == 1
    assert peaks.n_pixels[0] == 3


def test_edge_and_corner_peaks_are_found() -> None:
    mask = np.zeros((16, 16), dtype=bool)
    mask[0:2, 0:2] = True
    mask[14:16, 7:10] = True
    image = _frame(mask.shape)
    image[mask] += 5.0
    peaks = find_peaks(mask, image)
    assert len(peaks) == 2
    assert (peaks.x[0], peaks.y[0]) == pytest.approx((0.5, 0.5))
    assert (peaks.x[1], peaks.y[1]) == pytest.approx((8.0, 14.5))
    assert peaks.total_intensity == pytest.approx([20.0, 30.0])


def test_pixel_count_filters() -> None:
    mask = np.zeros((30, 30), dtype=bool)
    mask[1, 1] = True  # 1 pixel
    mask[5:7, 5:7] = True  # 4 pixels
    mask[10:20, 10:20] = True  # 100 pixels
    image = _lit(mask)
    assert len(find_peaks(mask, image)) == 2  # default min_pixels=2
    only_mid = find_peaks(mask, image, PeaksConfig(min_pixels=2, max_pixels=50))
    assert only_mid.n_pixels.tolist() == [4]
    assert only_mid.n_found == 1


def test_empty_mask() -> None:
    peaks = find_peaks(np.zeros((32, 32), dtype=bool), np.zeros((32, 32), dtype=np.float32))
    assert len(peaks) == 0
    assert peaks.n_found == 0
    assert peaks.x.shape == peaks.snr.shape == peaks.panel.shape == (0,)


def test_all_ones_mask_is_one_component_and_too_big_by_default() -> None:
    mask = np.ones((40, 50), dtype=np.uint8)
    image = _frame(mask.shape)
    assert len(find_peaks(mask, image)) == 0
    peaks = find_peaks(mask, image, PeaksConfig(max_pixels=None, background="none", min_snr=None))
    assert len(peaks) == 1
    assert peaks.n_pixels[0] == 2000
    assert (peaks.x[0], peaks.y[0]) == pytest.approx((24.5, 19.5))


def test_many_peaks_are_capped_keeping_the_strongest() -> None:
    mask = np.zeros((64, 64), dtype=bool)
    mask[::2, ::2] = True  # 1024 isolated pixels
    image = np.zeros(mask.shape)
    image[::2, ::2] = np.arange(1, 1025).reshape(32, 32)
    config = PeaksConfig(min_pixels=1, max_peaks=10, background="none", min_snr=None)
    peaks = find_peaks(mask, image, config)
    assert len(peaks) == 10
    assert peaks.n_found == 1024
    assert sorted(peaks.total_intensity.tolist()) == list(range(1015, 1025))
    assert np.all(np.diff(peaks.y * 64 + peaks.x) > 0)  # raster order kept


def test_bad_pixels_drop_peaks_that_touch_them(tmp_path) -> None:
    mask = np.zeros((20, 20), dtype=bool)
    mask[2:4, 2:4] = True  # contains a bad pixel
    mask[10:12, 10:12] = True  # next to a bad pixel
    mask[15:17, 2:4] = True  # clean
    good = np.ones(mask.shape, dtype=np.uint8)
    good[3, 3] = 0
    good[12, 12] = 0
    np.save(tmp_path / "mask.npy", good)
    image = _lit(mask)
    touching = find_peaks(mask, image, PeaksConfig(bad_pixel_mask=str(tmp_path / "mask.npy")))
    assert touching.y.tolist() == [15.5]
    containing = find_peaks(
        mask, image, PeaksConfig(bad_pixel_mask=str(tmp_path / "mask.npy"), bad_pixel_margin=0)
    )
    assert containing.y.tolist() == [10.5, 15.5]


def test_bad_pixel_mask_from_hdf5_and_npz(tmp_path) -> None:
    mask = np.zeros((10, 10), dtype=bool)
    mask[2:4, 2:4] = True
    mask[6:8, 6:8] = True
    bad = np.zeros(mask.shape, dtype=np.uint8)
    bad[7, 7] = 1
    with h5py.File(tmp_path / "bad.h5", "w") as handle:
        handle["/entry/bad"] = bad
    np.savez(tmp_path / "bad.npz", first=bad, second=bad)
    image = _lit(mask)
    for path, key in (("bad.h5", "/entry/bad"), ("bad.npz", "second")):
        config = PeaksConfig(
            bad_pixel_mask=str(tmp_path / path),
            bad_pixel_mask_key=key,
            bad_pixel_mask_convention="nonzero_bad",
        )
        assert find_peaks(mask, image, config).y.tolist() == [2.5]
    with pytest.raises(ConfigError, match="bad_pixel_mask_key"):
        PeakFinder(PeaksConfig(bad_pixel_mask=str(tmp_path / "bad.npz"))).find(mask, image)
    with pytest.raises(ConfigError, match="no dataset"):
        PeakFinder(PeaksConfig(bad_pixel_mask=str(tmp_path / "bad.h5"))).find(mask, image)
    with pytest.raises(ConfigError, match="no file"):
        PeakFinder(PeaksConfig(bad_pixel_mask=str(tmp_path / "nope.npy"))).find(mask, image)
    with pytest.raises(ConfigError, match="shape"):
        PeakFinder(
            PeaksConfig(bad_pixel_mask=str(tmp_path / "bad.h5"), bad_pixel_mask_key="/entry/bad")
        ).find(mask[:5], image[:5])


def test_panel_stack_is_labelled_per_panel_and_takes_a_slab_mask(tmp_path) -> None:
    mask = np.zeros((3, 8, 10), dtype=bool)
    mask[0, 6:8, 4:6] = True  # bottom edge of panel 0 ...
    mask[1, 0:2, 4:6] = True  # ... touches the top of panel 1 in the slab, yet apart
    mask[2, 3:5, 1:3] = True
    image = _lit(mask)
    peaks = find_peaks(mask, image, UNWEIGHTED)
    assert peaks.panel.tolist() == [0, 1, 2]
    assert peaks.y.tolist() == [6.5, 0.5, 3.5]
    assert peaks.x.tolist() == [4.5, 4.5, 1.5]
    slab_good = np.ones((24, 10), dtype=np.uint8)
    slab_good[8 * 2 + 4, 2] = 0  # panel 2, row 4
    np.save(tmp_path / "slab.npy", slab_good)
    config = PeaksConfig(bad_pixel_mask=str(tmp_path / "slab.npy"), bad_pixel_margin=0)
    assert find_peaks(mask, image, config).panel.tolist() == [0, 1]


def test_input_dtypes_and_nan_pixels() -> None:
    mask = np.zeros((12, 12), dtype=np.uint8)
    mask[4:6, 4:6] = 255
    image = np.full(mask.shape, 3, dtype=np.uint16)
    image[4:6, 4:6] = 7
    peaks = find_peaks(mask, image)
    assert peaks.total_intensity[0] == pytest.approx(16.0)
    floats = image.astype(np.float32)
    floats[0, 0] = np.nan
    floats[4, 4] = np.nan
    assert np.isfinite(find_peaks(mask, floats).total_intensity).all()


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="same"):
        find_peaks(np.zeros((4, 4), bool), np.zeros((4, 5)))


def test_hit_rule_is_inclusive() -> None:
    config = HitConfig(min_peaks=10, max_peaks=20)
    assert [is_hit(n, config) for n in (9, 10, 20, 21)] == [False, True, True, False]
    assert is_hit(10) and not is_hit(9)


@pytest.mark.parametrize(
    ("section", "values", "message"),
    [
        (HitConfig, {"min_peaks": 5, "max_peaks": 4}, "max_peaks must be >= min_peaks"),
        (PeaksConfig, {"min_pixels": 9, "max_pixels": 5}, "max_pixels must be >= min_pixels"),
        (PeaksConfig, {"min_res": 5, "max_res": 5}, "max_res must be > min_res (or null)"),
        (
            PeaksConfig,
            {"flag_lessthan": 3, "flag_morethan": 2},
            "flag_morethan must be >= flag_lessthan (or null): no pixel would be valid",
        ),
    ],
)
def test_limits_out_of_order_are_named(section, values, message) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        section(**values)
    low, high = values
    assert getattr(section(**{low: values[low]}), low) == values[low]  # one limit alone: fine
    equal = {low: values[low], high: values[low]}
    if "max_res" in values:
        with pytest.raises(ValidationError):
            section(**equal)
    else:
        assert section(**equal)


def test_configs_reject_bad_values() -> None:
    with pytest.raises(ValidationError):
        HitConfig(min_peaks=5, max_peaks=4)
    with pytest.raises(ValidationError):
        PeaksConfig(min_pixels=10, max_pixels=5)
    with pytest.raises(ValidationError):
        PeaksConfig(centroid="median")
    with pytest.raises(ValidationError):
        PeaksConfig(min_pixel=3)


@pytest.mark.parametrize(
    "bad",
    [
        {"min_snr": float("nan")},
        {"min_snr": float("inf")},
        {"min_snr": -1.0},
        {"beam_center": (float("nan"), 10.0)},
        {"beam_center": (10.0, float("inf"))},
        {"min_res": float("nan")},
        {"noise_floor": 0.0},
    ],
)
def test_peak_filters_must_be_finite(bad: dict) -> None:
    with pytest.raises(ValidationError):
        PeaksConfig(**bad)


def test_non_contiguous_inputs_give_the_same_peaks() -> None:
    rng = np.random.default_rng(5)
    big_image = rng.normal(20.0, 1.0, (2, 40, 80))
    big_mask = np.zeros(big_image.shape, dtype=np.uint8)
    big_mask[:, 10:13, 20:26] = 1
    big_mask[:, 30:32, 60:64] = 1
    big_image[big_mask > 0] += 30.0
    image, mask = big_image[:, :, ::2], big_mask[:, :, ::2]
    assert not image.flags.c_contiguous
    strided = find_peaks(mask, image)
    packed = find_peaks(np.ascontiguousarray(mask), np.ascontiguousarray(image))
    assert len(strided) == 4
    for name in ("x", "y", "total_intensity", "snr", "panel"):
        np.testing.assert_array_equal(getattr(strided, name), getattr(packed, name))


def _spots_and_noise_components(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A Poisson(10) frame with 12 spots of 300 photons and a mask of 5-pixel components: one on
    each spot and 12 on plain background (what a model marks on noise)."""
    rng = np.random.default_rng(seed)
    shape = (128, 128)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    expected = np.full(shape, 10.0)
    centres = [(12 + 20 * (i // 6), 12 + 20 * (i % 6)) for i in range(24)]
    spots = centres[::2]  # the others: components on plain background
    mask = np.zeros(shape, dtype=bool)
    for cy, cx in spots:
        expected += 300 / (2 * np.pi) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 2)
    for cy, cx in centres:
        mask |= (abs(yy - cy) + abs(xx - cx)) <= 1  # a 5-pixel plus
    return rng.poisson(expected).astype(np.float32), mask, np.array(spots)


def test_snr_cut_drops_noise_components_and_keeps_the_spots() -> None:
    image, mask, spots = _spots_and_noise_components(seed=4)
    everything = find_peaks(mask, image, PeaksConfig(min_snr=None))
    assert len(everything) > 12  # the spots and the noise components with a positive total
    kept = find_peaks(mask, image, PeaksConfig(min_snr=3.0))
    assert kept.n_found == len(kept) == 12
    found = np.stack([kept.y, kept.x], axis=1)
    assert np.abs(np.sort(found, axis=0) - np.sort(spots, axis=0)).max() < 0.5
    assert np.all(kept.snr >= 3.0)


def test_dark_frame_single_photon_components_fail_the_snr_cut() -> None:
    # MAD of the ring is 0 on a dark frame: the noise floor keeps the SNR finite and small
    image = np.zeros((64, 64), dtype=np.float32)
    mask = np.zeros((64, 64), dtype=bool)
    for cy, cx in ((10, 10), (30, 40), (50, 20)):
        mask[cy - 1 : cy + 2, cx - 1 : cx + 2] = True
        image[cy, cx] = 1.0
    mask[40:43, 50:53] = True  # nothing under this one: total 0
    peaks = find_peaks(mask, image, PeaksConfig())
    assert len(peaks) == 0
    kept = find_peaks(mask, image, PeaksConfig(min_snr=None))
    assert len(kept) == 3  # the empty component has total 0 and is dropped even without a cut
    assert np.allclose(kept.snr, 1.0 / 3.0)  # 1 photon / (noise_floor 1 x sqrt(9))


def test_background_none_needs_min_snr_null() -> None:
    image = _frame((32, 32))
    mask = np.zeros((32, 32), dtype=bool)
    mask[10:13, 10:13] = True
    image[10:13, 10:13] += 100
    with pytest.raises(ValueError, match="min_snr needs background 'ring'"):
        PeaksConfig(background="none")
    assert len(find_peaks(mask, image, PeaksConfig(background="none", min_snr=None))) == 1


def test_resolution_limits_keep_peaks_within_the_ring_around_the_beam_centre() -> None:
    image, mask, _ = _spots_and_noise_components(seed=5)
    config = PeaksConfig(min_snr=None, min_res=20, max_res=50, beam_center=(60.0, 60.0))
    peaks = find_peaks(mask, image, config)
    radius = np.hypot(peaks.x - 60, peaks.y - 60)
    assert len(peaks) > 0 and np.all((radius >= 20) & (radius <= 50))
    every = find_peaks(mask, image, PeaksConfig(min_snr=None))
    all_radius = np.hypot(every.x - 60, every.y - 60)
    assert len(peaks) == np.sum((all_radius >= 20) & (all_radius <= 50)) < len(every)
    with pytest.raises(ValueError, match="need a 2-D frame"):
        find_peaks(np.stack([mask, mask]), np.stack([image, image]), config)
