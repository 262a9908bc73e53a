"""Local background and noise of each peak, from pixels sampled on rings around it.

Why rings: the background under a Bragg peak changes across the detector (solvent and water
rings), so a per-frame or per-panel level is biased; the median of a few dozen pixels just outside
the peak follows it, and costs O(peaks x samples), independent of the frame size. Pixels of any
mask component, bad pixels, invalid values (``peaks.invalid``) and pixels off the panel are
left out. The noise is 1.4826 x the median absolute deviation of the same pixels (the standard
deviation for Gaussian noise). Peaks whose rings hold no usable pixel (or fewer than 4, for the
noise) take the median over the frame's other peaks.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

_MAD_TO_SIGMA = 1.4826
_MIN_NOISE_SAMPLES = 4


def ring_background(
    image: np.ndarray,
    blocked: np.ndarray,
    bad: np.ndarray | None,
    *,
    panel: np.ndarray,
    cy: np.ndarray,
    cx: np.ndarray,
    n_pixels: np.ndarray,
    offset: float,
    rings: int,
    samples: int,
    invalid: Callable[[np.ndarray], np.ndarray | None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Background level and noise per peak, shape (n,) each.

    Args:
        image: the frame, (P, H, W), any numeric dtype.
        blocked: (P, H, W) C-contiguous bool, the segmentation mask (pixels of any peak).
        bad: (P, H, W) C-contiguous bool bad pixels, or None.
        panel, cy, cx, n_pixels: per peak: panel index, unweighted centre (ss, fs) and size.
        offset: gap between the peak's equivalent radius and the first ring, in pixels.
        rings: number of rings, one pixel apart.
        samples: pixels sampled per ring.
        invalid: raw values -> bool (True = invalid pixel) or None; non-finite values are
            always left out.

    Returns:
        ``(background, noise)``; noise is NaN where nothing in the frame allows an estimate.
    """
    _, height, width = image.shape
    radius = np.sqrt(n_pixels / np.pi)[:, None] + offset + np.arange(rings)[None, :]
    # Alternate rings are rotated half a step so that they sample different pixels.
    angles = (np.arange(samples)[None, :] + 0.5 * (np.arange(rings)[:, None] % 2)) * (
        2 * np.pi / samples
    )
    sy = np.rint(cy[:, None, None] + radius[:, :, None] * np.sin(angles)).astype(np.intp)
    sx = np.rint(cx[:, None, None] + radius[:, :, None] * np.cos(angles)).astype(np.intp)
    sy = sy.reshape(len(cy), -1)
    sx = sx.reshape(len(cx), -1)
    ok = (sy >= 0) & (sy < height) & (sx >= 0) & (sx < width)
    np.clip(sy, 0, height - 1, out=sy)
    np.clip(sx, 0, width - 1, out=sx)
    flat = (panel[:, None] * height + sy) * width + sx
    if image.flags.c_contiguous:
        raw = image.reshape(-1).take(flat)
    else:
        raw = image[panel[:, None], sy, sx]
    values = raw.astype(np.float64)
    ok &= ~blocked.reshape(-1).take(flat)
    ok &= np.isfinite(values)
    rejected = invalid(raw) if invalid is not None else None
    if rejected is not None:
        ok &= ~rejected
    if bad is not None:
        ok &= ~bad.reshape(-1).take(flat)
    count = ok.sum(axis=1)
    background = _masked_median(values, ok, count)
    noise = _MAD_TO_SIGMA * _masked_median(np.abs(values - background[:, None]), ok, count)
    noise[(count < _MIN_NOISE_SAMPLES) | ~(noise > 0)] = np.nan
    return _fill_from_others(background, default=0.0), _fill_from_others(noise, default=np.nan)


def _masked_median(values: np.ndarray, ok: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Row medians over the entries where ``ok``; NaN for rows with none."""
    ordered = np.sort(np.where(ok, values, np.inf), axis=1)
    rows = np.arange(len(values))
    low = np.maximum((count - 1) // 2, 0)
    high = np.minimum(count // 2, values.shape[1] - 1)
    median = 0.5 * (ordered[rows, low] + ordered[rows, high])
    median[count == 0] = np.nan
    return median


def _fill_from_others(values: np.ndarray, *, default: float) -> np.ndarray:
    missing = np.isnan(values)
    if missing.any():
        known = values[~missing]
        values[missing] = np.median(known) if known.size else default
    return values
