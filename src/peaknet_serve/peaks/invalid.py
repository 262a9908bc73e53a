"""Invalid pixels: the pixels of a frame that neither the model nor a peak may use.

A pixel is invalid when its raw value is NaN or inf, greater than ``peaks.flag_morethan`` or
less than ``peaks.flag_lessthan`` (CrystFEL's geometry keys, with CrystFEL's comparisons), or
when it is in the bad-pixel mask: ``peaks.bad_pixel_mask`` OR'ed with a boolean array given in
code (a geometry file's ``bad_`` regions). The value test (``invalid_values``) is the one
predicate: ``PixelScreen`` applies it to whole frames before the model, the peak finder to the
pixels a peak and its background ring read.

Why the screen writes NaN: detectors flag gaps and dead pixels with sentinels (uint32
0xFFFFFFFF on Eigers) and assembled images carry NaN in module gaps. A sentinel dominates the
per-frame normalisation (the model then sees a flat frame), so every invalid pixel becomes NaN
in a float32 copy of the frame; the model's input preparation leaves NaN out of its statistics
and shows it the frame's mean (``model.preprocess``), and CrystFEL reads NaN pixels of a CXI file
as bad pixels, so the files written from the copy index as the detector's own masks would.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from peaknet_serve.errors import ConfigError
from peaknet_serve.peaks.badpixels import fit_bad_pixels, load_bad_pixel_mask
from peaknet_serve.peaks.config import PeaksConfig

logger = logging.getLogger(__name__)

INVALID_PIXELS = "invalid_pixels"
"""Failure reason of a frame with no valid pixel or too many invalid ones."""

SENTINEL_FRACTION = 0.001
"""Above this fraction of pixels at its dtype's maximum, an unsigned integer frame probably holds
a gap sentinel that ``peaks.flag_morethan`` should flag."""

BAD_PIXEL_MASK = "bad_pixel_mask"
"""Failure reason of a frame that ``peaks.bad_pixel_mask`` does not fit."""

ExtraBadPixels = np.ndarray | Callable[[tuple[int, ...]], np.ndarray]
"""Bad pixels given in code: a bool array shaped like the frames (True = bad), or a function of
the frame shape that returns one (a geometry's: ``cxi.geometry_bad_pixels``)."""


def invalid_values(values: np.ndarray, config: PeaksConfig) -> np.ndarray | None:
    """Where raw pixel values are invalid by value: NaN, inf, > flag_morethan, < flag_lessthan.

    Args:
        values: raw pixel values (ADU), any shape and numeric dtype.
        config: the ``peaks`` section (its ``flag_*`` limits).

    Returns:
        A bool array of ``values``' shape (True = invalid), or None when no value of this
        dtype can be invalid (integers without flag_morethan and flag_lessthan).
    """
    valid = _valid_values(values, config)
    return None if valid is None else ~valid


def _valid_values(values: np.ndarray, config: PeaksConfig) -> np.ndarray | None:
    """The complement of ``invalid_values``, without the extra pass of a negation."""
    high, low = config.flag_morethan, config.flag_lessthan
    if high is None and low is None:
        return np.isfinite(values) if values.dtype.kind == "f" else None
    # One comparison per limit, and NaN fails every comparison.
    valid = values < np.inf if high is None else values <= high
    valid &= values > -np.inf if low is None else values >= low
    return valid


class BadPixels:
    """The bad-pixel mask: ``peaks.bad_pixel_mask`` OR'ed with ``extra``, fitted per frame shape.

    Args:
        config: the ``peaks`` section (its ``bad_pixel_mask*`` keys).
        extra: a bool array, True = bad pixel, shaped like the frames ((H, W), (P, H, W), or the
            (P*H, W) slab of a panel stack), or a function of the frame shape giving one (a
            CrystFEL geometry's ``bad_`` regions and masks, which know their panels).
    """

    def __init__(self, config: PeaksConfig, *, extra: ExtraBadPixels | None = None) -> None:
        self._config = config
        self._of_shape = extra if callable(extra) else None
        self._extra = None if extra is None or callable(extra) else np.asarray(extra, dtype=bool)
        self._raw: np.ndarray | None = None
        self._loaded = False
        self._fitted: dict[tuple[tuple[int, ...], int], np.ndarray | None] = {}

    @property
    def configured(self) -> bool:
        """Whether any bad pixel can exist (a mask file, an extra array or a geometry)."""
        return (
            self._config.bad_pixel_mask is not None
            or self._extra is not None
            or self._of_shape is not None
        )

    def for_shape(self, shape: tuple[int, ...], *, margin: int = 0) -> np.ndarray | None:
        """The read-only bool mask (True = bad) of frames shaped ``shape``, grown by
        ``margin`` pixels within each panel; None without a mask.

        Raises:
            ConfigError: the mask file cannot be read, or its shape does not fit the frames.
        """
        key = (tuple(shape), margin)
        if key not in self._fitted:
            raw = self._load()
            fitted = None if raw is None else fit_bad_pixels(raw, shape, margin=margin)
            if self._of_shape is not None:
                own = fit_bad_pixels(self._of_shape(tuple(shape)), shape, margin=margin)
                fitted = own if fitted is None else fitted | own
                fitted.flags.writeable = False
            self._fitted[key] = fitted
        return self._fitted[key]

    def _load(self) -> np.ndarray | None:
        if not self._loaded:
            config = self._config
            masks = [self._extra] if self._extra is not None else []
            if config.bad_pixel_mask is not None:
                masks.append(
                    load_bad_pixel_mask(
                        config.bad_pixel_mask,
                        key=config.bad_pixel_mask_key,
                        convention=config.bad_pixel_mask_convention,
                    )
                )
            if len(masks) == 2 and masks[0].size == masks[1].size:
                masks = [masks[0] | masks[1].reshape(masks[0].shape)]
            elif len(masks) == 2:
                raise ValueError(
                    f"the bad-pixel array {masks[0].shape} and peaks.bad_pixel_mask "
                    f"{masks[1].shape} describe different detectors"
                )
            self._raw = masks[0] if masks else None
            self._loaded = True
        return self._raw


@dataclass(frozen=True, eq=False)
class Screened:
    """A batch after ``PixelScreen.screen``.

    Attributes:
        images: (B, ...) the frames; a float32 copy with every invalid pixel NaN when any frame
            holds one, else the input array itself.
        masked_pixels: (B,) int64, invalid pixels per frame.
        failures: per frame, None or why it failed (no valid pixel, too many invalid ones).
        sentinel_frames: (B,) bool, frames of an unsigned integer dtype with more than
            ``SENTINEL_FRACTION`` of their pixels at the dtype's maximum while
            ``flag_morethan`` is unset (likely unflagged gap sentinels; they are not masked).
    """

    images: np.ndarray
    masked_pixels: np.ndarray
    failures: list[str | None]
    sentinel_frames: np.ndarray

    @property
    def failed(self) -> np.ndarray:
        """(B,) bool, True for the frames that failed."""
        return np.array([f is not None for f in self.failures], dtype=bool)


class PixelScreen:
    """Marks the invalid pixels of frames before the model, and fails frames with too many.

    Args:
        config: the ``peaks`` section.
        bad_pixels: extra bad pixels (True = bad): an array shaped like a frame, or a function
            of the frame shape (see ``BadPixels``); combined with ``peaks.bad_pixel_mask``.
    """

    def __init__(self, config: PeaksConfig, *, bad_pixels: ExtraBadPixels | None = None) -> None:
        self.config = config
        self.bad_pixels = BadPixels(config, extra=bad_pixels)
        self._good: dict[tuple[int, ...], np.ndarray | None] = {}
        self._misfits: set[tuple[int, ...]] = set()
        self._warned_sentinels = False

    def screen(self, images: np.ndarray) -> Screened:
        """Invalid pixels of each frame of ``images`` set to NaN, counted, and judged.

        Args:
            images: (B, H, W) or (B, P, H, W) raw frames (ADU), any numeric dtype; not modified.

        Returns:
            The ``Screened`` batch. When no frame holds an invalid pixel, ``images`` is the
            input itself; otherwise every frame is a float32 copy (what the CXI file stores).

        Raises:
            ConfigError: the bad-pixel mask cannot be read or does not fit the frames (logged
                once per frame shape; such frames fail as ``bad_pixel_mask``).
        """
        images = np.asarray(images)
        frame_shape = images.shape[1:]
        size = int(np.prod(frame_shape)) if images.ndim > 1 else 0
        good = self._good_pixels(frame_shape)
        counts = np.zeros(len(images), dtype=np.int64)
        failures: list[str | None] = [None] * len(images)
        out: np.ndarray | None = None
        for index, frame in enumerate(images):
            valid = _valid_values(frame, self.config)
            if good is not None:
                valid = good if valid is None else valid & good
            if valid is None:
                continue
            counts[index] = count = size - int(np.count_nonzero(valid))
            if count == 0:
                continue
            failures[index] = self._failure(count, size)
            if out is None:
                out = images.astype(np.float32)
            out[index][~valid] = np.nan
        sentinels = self._unflagged_sentinels(images, size)
        return Screened(images if out is None else out, counts, failures, sentinels)

    def _unflagged_sentinels(self, images: np.ndarray, size: int) -> np.ndarray:
        """(B,) bool ``Screened.sentinel_frames``; the first such frame is logged (once)."""
        if self.config.flag_morethan is not None or images.dtype.kind != "u" or size == 0:
            return np.zeros(len(images), dtype=bool)
        top = np.iinfo(images.dtype).max
        at_top = np.count_nonzero(images.reshape(len(images), -1) == top, axis=1)
        found = at_top > SENTINEL_FRACTION * size
        if found.any() and not self._warned_sentinels:
            self._warned_sentinels = True
            logger.warning(
                "%d of %d pixels of a %s frame hold %d, the dtype's maximum, and "
                "peaks.flag_morethan is unset: if that is the detector's gap sentinel, set "
                "peaks.flag_morethan to %d, else these pixels spoil the model's normalisation "
                "(logged once; counted in peaknet_sentinel_frames_total)",
                int(at_top[found][0]),
                size,
                images.dtype,
                top,
                top - 1,
            )
        return found

    def _good_pixels(self, frame_shape: tuple[int, ...]) -> np.ndarray | None:
        if not self.bad_pixels.configured:
            return None
        if frame_shape not in self._good:
            try:
                bad = self.bad_pixels.for_shape(frame_shape)
            except ConfigError as exc:
                if frame_shape not in self._misfits:  # logged once per shape, raised every time
                    self._misfits.add(frame_shape)
                    logger.error("frames of shape %s fail: their bad pixels do not fit: %s",
                                 frame_shape, exc)
                raise
            self._good[frame_shape] = None if bad is None else ~bad
        return self._good[frame_shape]

    def _failure(self, count: int, size: int) -> str | None:
        limit = self.config.max_invalid_fraction
        if count < size and count <= limit * size:
            return None
        what = "no valid pixel" if count == size else f"{count / size:.1%} of the pixels invalid"
        return (
            f"{what} ({count} of {size}: NaN/inf, > flag_morethan={self.config.flag_morethan}, "
            f"< flag_lessthan={self.config.flag_lessthan} or bad-pixel mask); "
            f"peaks.max_invalid_fraction={limit}"
        )
