"""The ingress's pixel screen: invalid pixels masked before the model, hopeless frames failed.

Every decoded batch goes through ``peaks.PixelScreen`` (NaN/inf, ``flag_morethan``,
``flag_lessthan`` and the bad-pixel mask): invalid pixels become NaN in a float32 copy, which
the model leaves out of its normalisation and the peak finder out of every peak. Frames with no
valid pixel, or more invalid ones than ``peaks.max_invalid_fraction``, are taken out of the
batch and failed as ``invalid_pixels`` (the ingress quarantines them); the rest go on. A batch
that ``peaks.bad_pixel_mask`` does not fit fails whole as ``bad_pixel_mask``, one that the
geometry (``output.geometry_file``) does not fit as ``geometry`` (``MISFIT``). The number of
masked pixels of every frame goes to ``/metrics``.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Histogram

from peaknet_serve.peaks import BAD_PIXEL_MASK, INVALID_PIXELS, PixelScreen
from peaknet_serve.wire import FrameBatch

__all__ = [
    "BAD_PIXEL_MASK",
    "INVALID_PIXELS",
    "MISFIT",
    "MaskedPixelMetrics",
    "ScreenedBatch",
    "screen_batch",
]

#: Failure reason of frames that the configured geometry does not fit.
MISFIT = "geometry"

FRACTION_BUCKETS = (0.0, 0.001, 0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)


@dataclass(frozen=True, eq=False)
class ScreenedBatch:
    """A batch split by the screen.

    Attributes:
        kept: the frames that go on, invalid pixels NaN; None when every frame failed.
        failed: the frames that failed, as received; None when none did.
        failures: one message per failed frame, in order.
        masked_pixels: (B,) invalid pixels of every frame of the batch, in its order.
        frame_pixels: pixels per frame.
        sentinel_frames: frames that look like unflagged gap sentinels
            (``peaks.Screened.sentinel_frames``).
    """

    kept: FrameBatch | None
    failed: FrameBatch | None
    failures: list[str]
    masked_pixels: np.ndarray
    frame_pixels: int
    sentinel_frames: int = 0

    def failure_summary(self) -> str:
        """Each distinct failure message with the number of frames that failed with it."""
        counts = collections.Counter(self.failures)
        return "; ".join(f"{n} frame(s): {message}" for message, n in counts.items())


def screen_batch(batch: FrameBatch, screen: PixelScreen) -> ScreenedBatch:
    """Mask the invalid pixels of ``batch``'s frames and take out the frames that fail.

    A batch without any invalid pixel comes back as it is, without a copy.

    Raises:
        ConfigError: the bad-pixel mask cannot be read or does not fit the frames.
    """
    screened = screen.screen(batch.images)
    failed = screened.failed
    frame_pixels = int(np.prod(batch.images.shape[1:]))
    if screened.images is batch.images:
        cleaned = batch
    else:
        cleaned = FrameBatch(
            images=screened.images, metadata=batch.metadata, original_shape=batch.original_shape
        )
    sentinels = int(screened.sentinel_frames.sum())
    if not failed.any():
        return ScreenedBatch(cleaned, None, [], screened.masked_pixels, frame_pixels, sentinels)
    failures = [f for f in screened.failures if f is not None]
    kept = None if failed.all() else _select(cleaned, ~failed)
    return ScreenedBatch(
        kept, _select(batch, failed), failures, screened.masked_pixels, frame_pixels, sentinels
    )


def _select(batch: FrameBatch, rows: np.ndarray) -> FrameBatch:
    return FrameBatch(
        images=batch.images[rows],
        metadata={key: values[rows] for key, values in batch.metadata.items()},
        original_shape=batch.original_shape,
    )


class MaskedPixelMetrics:
    """``peaknet_masked_pixels_total`` and the per-frame ``peaknet_masked_pixel_fraction``.

    Args:
        registry: where the metrics live (the ingress's ``/metrics`` registry).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.pixels = Counter(
            "peaknet_masked_pixels",
            "Invalid pixels (NaN/inf, flag_morethan, flag_lessthan, bad-pixel mask) masked "
            "before the model, summed over frames.",
            registry=registry,
        )
        self.fraction = Histogram(
            "peaknet_masked_pixel_fraction",
            "Fraction of each frame's pixels masked as invalid.",
            buckets=FRACTION_BUCKETS,
            registry=registry,
        )
        self.sentinels = Counter(
            "peaknet_sentinel_frames",
            "Frames of an unsigned integer dtype with more than 0.1% of their pixels at the "
            "dtype's maximum while peaks.flag_morethan is unset (likely unflagged gap "
            "sentinels, not masked).",
            registry=registry,
        )

    def observe(self, screened: ScreenedBatch) -> None:
        """Count the masked pixels of every frame of a screened batch."""
        total = int(screened.masked_pixels.sum())
        if total:
            self.pixels.inc(total)
        for count in screened.masked_pixels:
            self.fraction.observe(int(count) / max(screened.frame_pixels, 1))
        if screened.sentinel_frames:
            self.sentinels.inc(screened.sentinel_frames)
