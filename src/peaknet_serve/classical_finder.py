"""A classical peak finder to score the model against: a local threshold, no learning.

Background and noise from block medians, pixels ``snr`` noise levels above the background
(``evaluate --baseline-snr``), 8-connected components measured by the same ``find_peaks`` as the
model's masks.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy import ndimage

from peaknet_serve.peaks import Peaks, PeaksConfig, find_peaks

_MAD_TO_SIGMA = 1.4826


def threshold_mask(image: np.ndarray, *, snr: float = 5.0, block: int = 16) -> np.ndarray:
    """Pixels ``snr`` local noise levels above the local background (a classical finder).

    Background and noise are the median and 1.4826 x MAD of ``block`` x ``block`` tiles,
    interpolated bilinearly to every pixel; tiles are robust to the few peak pixels they hold.

    Args:
        image: (H, W) frame.
        snr: threshold in noise levels.
        block: tile size, pixels.
    """
    image = np.asarray(image, dtype=np.float32)
    height, width = image.shape
    th, tw = -(-height // block), -(-width // block)
    padded = np.pad(image, ((0, th * block - height), (0, tw * block - width)), mode="edge")
    tiles = padded.reshape(th, block, tw, block).transpose(0, 2, 1, 3).reshape(th, tw, -1)
    level = np.median(tiles, axis=2)
    noise = _MAD_TO_SIGMA * np.median(np.abs(tiles - level[..., None]), axis=2)
    noise = np.maximum(noise, 1e-6)
    rows = (np.arange(height) + 0.5) / block - 0.5
    cols = (np.arange(width) + 0.5) / block - 0.5
    grid = np.meshgrid(rows, cols, indexing="ij")
    level_px = ndimage.map_coordinates(level, grid, order=1, mode="nearest")
    noise_px = ndimage.map_coordinates(noise, grid, order=1, mode="nearest")
    return image > level_px + snr * noise_px


def baseline_peaks(
    images: Iterable[np.ndarray], *, snr: float = 5.0, peaks: PeaksConfig | None = None
) -> list[Peaks]:
    """The classical finder's peaks of each (H, W) frame, measured like the model's."""
    return [find_peaks(threshold_mask(image, snr=snr), image, peaks) for image in images]
