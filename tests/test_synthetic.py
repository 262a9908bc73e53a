"""Synthetic frames: deterministic, findable spots, truth that matches the pixels."""

from __future__ import annotations

import json

import numpy as np
import pytest

from peaknet_serve.errors import ConfigError
from peaknet_serve.synthetic import (
    SyntheticFrames,
    event_timestamp,
    first_event,
    spot_mask,
    truth_arrays,
)


def test_same_seed_and_event_give_the_same_frame_in_any_order() -> None:
    gen = SyntheticFrames(shape=(64, 80), peaks=5, seed=3)
    images, truths = gen.batch(10, 4)
    again, _ = SyntheticFrames(shape=(64, 80), peaks=5, seed=3).batch(12, 1)
    np.testing.assert_array_equal(images[2], again[0])
    assert [t.event for t in truths] == [10, 11, 12, 13]
    other, _ = SyntheticFrames(shape=(64, 80), peaks=5, seed=4).batch(10, 1)
    assert not np.array_equal(images[0], other[0])


def test_cycle_reuses_images_under_new_event_numbers_and_timestamps() -> None:
    plain = SyntheticFrames(shape=(64, 80), peaks=5, seed=3)
    cycled = SyntheticFrames(shape=(64, 80), peaks=5, seed=3, cycle=3)
    images, truths = cycled.batch(100, 7)
    assert [t.event for t in truths] == list(range(100, 107))
    assert [t.timestamp for t in truths] == [event_timestamp(e) for e in range(100, 107)]
    source, source_truth = plain.batch(0, 3)  # 100 % 3 == 1: the content of events 1, 2, 0, 1..
    for i, event in enumerate(range(100, 107)):
        np.testing.assert_array_equal(images[i], source[event % 3])
        np.testing.assert_array_equal(truths[i].y, source_truth[event % 3].y)
    assert not np.array_equal(images[0], images[1])


def test_hit_fraction_and_peak_count() -> None:
    gen = SyntheticFrames(shape=(64, 64), peaks=6, hit_fraction=0.3, seed=1)
    _, truths = gen.batch(0, 200)
    hits = [t for t in truths if t.is_hit]
    assert 0.2 < len(hits) / 200 < 0.4
    assert all(t.n_peaks == 6 for t in hits)
    assert all(t.n_peaks == 0 for t in truths if not t.is_hit)


def test_spots_are_inside_apart_and_stand_out_of_the_noise() -> None:
    gen = SyntheticFrames(shape=(128, 128), peaks=12, hit_fraction=1.0, seed=5)
    images, truths = gen.batch(0, 5)
    for image, truth in zip(images, truths, strict=True):
        assert (truth.y >= 8).all() and (truth.y <= 127 - 8).all()
        assert (truth.x >= 8).all() and (truth.x <= 127 - 8).all()
        d = np.hypot(truth.y[:, None] - truth.y, truth.x[:, None] - truth.x)
        assert (d[~np.eye(truth.n_peaks, dtype=bool)] >= 12).all()
        for y, x, total in zip(truth.y, truth.x, truth.intensity, strict=True):
            yi, xi = round(y), round(x)
            window = image[yi - 5 : yi + 6, xi - 5 : xi + 6]
            ring = np.concatenate([window[0], window[-1], window[:, 0], window[:, -1]])
            background = np.median(ring)
            peak_at = np.unravel_index(window.argmax(), window.shape)
            assert np.abs(np.subtract(peak_at, 5)).max() <= 1
            assert window.sum() - background * window.size == pytest.approx(total, rel=0.25)
            assert window.max() - background > 8 * np.sqrt(background)


def test_frames_without_peaks_are_smooth_background_plus_noise() -> None:
    gen = SyntheticFrames(shape=(96, 96), peaks=5, hit_fraction=0.0, seed=2)
    (image,), (truth,) = gen.batch(0, 1)
    assert not truth.is_hit
    assert image.min() >= 0
    assert 3 < image.mean() < 100
    assert image.max() < image.mean() + 12 * np.sqrt(image.mean()) + 20


@pytest.mark.parametrize("dtype", ["float64", "float32", "uint16", "int32"])
def test_dtypes_and_panel_stacks(dtype: str) -> None:
    gen = SyntheticFrames(shape=(3, 48, 64), peaks=9, hit_fraction=1.0, dtype=dtype, seed=0)
    images, truths = gen.batch(0, 2)
    assert images.shape == (2, 3, 48, 64) and images.dtype == np.dtype(dtype)
    if np.dtype(dtype).kind in "iu":
        assert images.min() >= 0
    assert set(truths[0].panel.tolist()) <= {0, 1, 2}


def test_spot_mask_marks_disks_around_every_spot() -> None:
    gen = SyntheticFrames(shape=(2, 64, 64), peaks=6, hit_fraction=1.0, seed=8)
    _, (truth,) = gen.batch(0, 1)
    mask = spot_mask(truth, (2, 64, 64), radius=2.0)
    assert mask.dtype == bool and mask.shape == (2, 64, 64)
    for p, y, x in zip(truth.panel, truth.y, truth.x, strict=True):
        assert mask[p, round(y), round(x)]
    assert 6 * 9 <= mask.sum() <= 6 * 16  # each r=2 disk covers 9-16 pixels, none overlap
    flat = spot_mask(truth, (64, 64)) if (truth.panel == 0).all() else None
    assert flat is None or flat.sum() == mask.sum()


def test_timestamps_are_unique_lcls_style_and_ranks_do_not_collide() -> None:
    events = list(range(0, 500)) + [first_event(1) + i for i in range(500)]
    stamps = [event_timestamp(e) for e in events]
    assert len(set(stamps)) == len(stamps)
    assert all(s < 2**64 for s in stamps)
    assert all((s & 0xFFFFFFFF) < 1_000_000_000 for s in stamps)
    assert (stamps[1] >> 32) == 1_700_000_000


def test_truth_records_and_arrays() -> None:
    gen = SyntheticFrames(shape=(64, 64), peaks=4, hit_fraction=0.5, seed=11)
    _, truths = gen.batch(0, 10)
    records = [json.loads(json.dumps(t.to_record())) for t in truths]
    assert [r["n_peaks"] for r in records] == [t.n_peaks for t in truths]
    arrays = truth_arrays(truths)
    assert arrays["peak_y"].shape == (sum(t.n_peaks for t in truths),)
    assert arrays["timestamp"].dtype == np.uint64
    np.testing.assert_array_equal(
        arrays["peak_event"], np.repeat(arrays["event"], arrays["n_peaks"])
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"shape": (10,)},
        {"dtype": "int8"},
        {"hit_fraction": 1.5},
        {"shape": (12, 12)},
        {"shape": (32, 32), "peaks": 50},
        {"cycle": -1},
    ],
)
def test_invalid_settings_are_config_errors(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        SyntheticFrames(**kwargs)
