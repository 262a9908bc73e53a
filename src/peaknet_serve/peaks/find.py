"""Peaks from a segmentation mask: 8-connected components per panel, measured without a loop.

Components are labelled with OpenCV's ``connectedComponents`` (8-connectivity, one call per
panel), faster than ``scipy.ndimage.label`` (``scripts/bench_peaks.py``; docs/perf-notes.md).
Everything after labelling touches only the mask's pixels: their flat indices
(``numpy.flatnonzero`` of the boolean mask) and per-component sums with ``numpy.bincount``, so
the cost grows with the number of peak pixels, not with the frame.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from peaknet_serve.peaks.background import ring_background
from peaknet_serve.peaks.config import PeaksConfig
from peaknet_serve.peaks.invalid import BadPixels, ExtraBadPixels, invalid_values

logger = logging.getLogger(__name__)

#: A labeller takes a C-contiguous (P, H, W) bool mask and returns the flat indices of its
#: nonzero pixels, the 0-based component of each (unique across panels), and the component count.
Labeller = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, int]]


@dataclass(frozen=True, eq=False)
class Peaks:
    """The peaks of one frame, one entry per peak in every array.

    Attributes:
        x: fast-scan (column) position in pixels within its panel; pixel centres at integers.
        y: slow-scan (row) position, likewise.
        total_intensity: sum over the peak's pixels, background-subtracted unless
            ``background`` is ``none``.
        n_pixels: number of mask pixels.
        max_value: the largest raw pixel value.
        snr: ``total_intensity / (noise * sqrt(n_pixels))``, the noise raised to
            ``noise_floor``; NaN with ``background`` ``none`` (peakfinder8's SNR is
            ``total_intensity / noise``).
        panel: panel index (zeros for a 2-D frame).
        n_found: peaks that passed the pixel, invalid-pixel, SNR and resolution filters, before
            the ``max_peaks`` cap: the number the hit rule should see.
    """

    x: np.ndarray
    y: np.ndarray
    total_intensity: np.ndarray
    n_pixels: np.ndarray
    max_value: np.ndarray
    snr: np.ndarray
    panel: np.ndarray
    n_found: int = field(default=-1)

    def __post_init__(self) -> None:
        if self.n_found < 0:
            object.__setattr__(self, "n_found", len(self.x))

    def __len__(self) -> int:
        return len(self.x)

    @classmethod
    def empty(cls) -> Peaks:
        """No peaks."""
        floats = np.zeros(0, dtype=np.float64)
        ints = np.zeros(0, dtype=np.int32)
        return cls(floats, floats, floats, ints, floats, floats, ints, 0)

    def select(self, index: np.ndarray) -> Peaks:
        """The peaks at ``index`` (an integer or boolean index), keeping ``n_found``."""
        return Peaks(
            self.x[index],
            self.y[index],
            self.total_intensity[index],
            self.n_pixels[index],
            self.max_value[index],
            self.snr[index],
            self.panel[index],
            self.n_found,
        )


class PeakFinder:
    """Finds peaks with one configuration; holds the bad-pixel mask, read on first use.

    A peak holding an invalid pixel (``peaks.invalid``: NaN/inf, outside flag_lessthan ..
    flag_morethan) or a bad pixel grown by ``bad_pixel_margin`` is dropped; background rings
    skip such pixels. Then peaks whose total above background is <= 0, below ``min_snr``, or
    outside ``min_res`` .. ``max_res`` pixels from the beam centre are dropped.

    Args:
        config: the ``peaks`` section (defaults when None).
        labeller: the connected-component labeller (``label_opencv``).
        bad_pixels: extra bad pixels (True = bad): an array shaped like a frame, or a function
            of the frame shape; combined with ``peaks.bad_pixel_mask`` (``peaks.BadPixels``).
    """

    def __init__(
        self,
        config: PeaksConfig | None = None,
        *,
        labeller: Labeller | None = None,
        bad_pixels: ExtraBadPixels | None = None,
    ):
        self._config = config or PeaksConfig()
        self._labeller = labeller or label_opencv
        self._bad = BadPixels(self._config, extra=bad_pixels)

    @property
    def config(self) -> PeaksConfig:
        return self._config

    def find(self, mask: np.ndarray, image: np.ndarray) -> Peaks:
        """The peaks of one frame.

        Args:
            mask: bool or uint8 (H, W) or (P, H, W); nonzero pixels belong to peaks.
            image: the raw frame (ADU or photons), same shape, any numeric dtype.

        Raises:
            ValueError: shapes differ; min_res/max_res set for a panel stack.
            ConfigError: the bad-pixel mask cannot be read or does not fit.
        """
        mask = np.asarray(mask)
        image = np.asarray(image)
        if mask.shape != image.shape or mask.ndim not in (2, 3):
            raise ValueError(
                f"mask {mask.shape} and image {image.shape} must have the same (H, W) or "
                "(P, H, W) shape"
            )
        mask3 = np.ascontiguousarray(mask if mask.dtype == bool else mask != 0)
        if mask3.ndim == 2:
            mask3 = mask3[None]
            image = image[None]
        return _measure(mask3, image, self._config, self._bad_pixels(mask.shape), self._labeller)

    def _bad_pixels(self, shape: tuple[int, ...]) -> np.ndarray | None:
        if not self._bad.configured:
            return None
        fitted = self._bad.for_shape(shape, margin=self._config.bad_pixel_margin)
        if fitted is None:
            return None
        return fitted if fitted.ndim == 3 else fitted[None]


def find_peaks(
    mask: np.ndarray, image: np.ndarray, config: PeaksConfig | None = None
) -> Peaks:
    """The peaks of one frame.

    Args:
        mask: bool or integer (H, W) or (P, H, W); nonzero pixels belong to peaks.
        image: the raw frame (ADU or photons), same shape, any numeric dtype; invalid pixels
            (NaN/inf, outside flag_lessthan .. flag_morethan) are never part of a peak.
        config: ``PeaksConfig`` (defaults if None); a bad-pixel mask file is read once per config.
    """
    return _finder(config or PeaksConfig()).find(mask, image)


@functools.lru_cache(maxsize=16)
def _finder(config: PeaksConfig) -> PeakFinder:
    return PeakFinder(config)


def label_opencv(mask3: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """8-connected components per panel with ``cv2.connectedComponents`` (a ``Labeller``)."""
    panel_size = mask3.shape[1] * mask3.shape[2]
    indices, labels, total = [], [], 0
    for p, panel_mask in enumerate(mask3):
        count, panel_labels = cv2.connectedComponents(
            panel_mask.view(np.uint8), connectivity=8, ltype=cv2.CV_32S
        )
        fg = np.flatnonzero(panel_mask)
        indices.append(fg + p * panel_size)
        labels.append(panel_labels.reshape(-1)[fg].astype(np.intp) + (total - 1))
        total += count - 1
    return np.concatenate(indices), np.concatenate(labels), total


def _measure(
    mask3: np.ndarray,
    image3: np.ndarray,
    config: PeaksConfig,
    bad3: np.ndarray | None,
    labeller: Labeller,
) -> Peaks:
    _, height, width = mask3.shape
    fg, lab, n = labeller(mask3)
    if n == 0:
        return Peaks.empty()
    if image3.flags.c_contiguous:
        raw = image3.reshape(-1).take(fg)
    else:
        p, rest = np.divmod(fg, height * width)
        raw = image3[(p, *np.divmod(rest, width))]
    n_pixels = np.bincount(lab, minlength=n)
    keep = n_pixels >= config.min_pixels
    if config.max_pixels is not None:
        keep &= n_pixels <= config.max_pixels
    if bad3 is not None:
        keep &= np.bincount(lab, weights=bad3.reshape(-1).take(fg), minlength=n) == 0
    invalid = invalid_values(raw, config)
    if invalid is not None:
        keep &= np.bincount(lab, weights=invalid, minlength=n) == 0
    if not keep.all():
        on = keep[lab]
        lab = (np.cumsum(keep) - 1)[lab[on]]
        fg, raw = fg[on], raw[on]
        n_pixels = n_pixels[keep]
        n = int(keep.sum())
        if n == 0:
            return Peaks.empty()
    p, rest = np.divmod(fg, height * width)
    y, x = np.divmod(rest, width)
    values = raw.astype(np.float64)
    panel = np.empty(n, dtype=np.int32)
    panel[lab] = p
    cx = np.bincount(lab, weights=x, minlength=n) / n_pixels
    cy = np.bincount(lab, weights=y, minlength=n) / n_pixels
    if config.background == "ring":
        background, noise = ring_background(
            image3,
            mask3,
            bad3,
            panel=panel,
            cy=cy,
            cx=cx,
            n_pixels=n_pixels,
            offset=config.background_offset,
            rings=config.background_rings,
            samples=config.background_samples,
            invalid=lambda v: invalid_values(v, config),
        )
        net = values - background[lab]
    else:
        noise = np.full(n, np.nan)
        net = values
    total = np.bincount(lab, weights=net, minlength=n)
    max_value = np.full(n, -np.inf)
    np.maximum.at(max_value, lab, values)
    if config.centroid == "weighted":
        weight = np.clip(net, 0.0, None)
        weight_sum = np.bincount(lab, weights=weight, minlength=n)
        usable = weight_sum > 0
        safe_sum = np.where(usable, weight_sum, 1.0)
        cx = np.where(usable, np.bincount(lab, weights=weight * x, minlength=n) / safe_sum, cx)
        cy = np.where(usable, np.bincount(lab, weights=weight * y, minlength=n) / safe_sum, cy)
    if config.background == "ring":
        noise = np.fmax(noise, config.noise_floor)
    snr = total / (noise * np.sqrt(n_pixels))
    peaks = Peaks(cx, cy, total, n_pixels.astype(np.int32), max_value, snr, panel, n)
    keep = _passes(peaks, config, (height, width), panels=mask3.shape[0])
    if not keep.all():
        peaks = peaks.select(keep)
        peaks = replace(peaks, n_found=len(peaks))
    n = len(peaks)
    if n > config.max_peaks:
        strongest = np.argpartition(-peaks.total_intensity, config.max_peaks - 1)
        peaks = peaks.select(np.sort(strongest[: config.max_peaks]))
        logger.debug("kept the %d strongest of %d peaks", config.max_peaks, n)
    return peaks


def _passes(
    peaks: Peaks, config: PeaksConfig, shape: tuple[int, int], *, panels: int
) -> np.ndarray:
    """(n,) bool: the peaks with a positive total that pass ``min_snr`` (a NaN SNR fails) and
    ``min_res``/``max_res``."""
    keep = peaks.total_intensity > 0
    if config.min_snr is not None:
        keep &= peaks.snr >= config.min_snr
    if config.min_res is None and config.max_res is None:
        return keep
    if panels > 1:
        raise ValueError(
            "peaks.min_res/max_res need a 2-D frame: a panel stack has no beam centre without "
            "its geometry; set them to null"
        )
    height, width = shape
    fs, ss = config.beam_center or ((width - 1) / 2, (height - 1) / 2)
    radius = np.hypot(peaks.x - fs, peaks.y - ss)
    if config.min_res is not None:
        keep &= radius >= config.min_res
    if config.max_res is not None:
        keep &= radius <= config.max_res
    return keep
