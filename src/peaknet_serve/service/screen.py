"""Frames the model must not see: NaN or inf pixels.

PeakNet's per-frame instance norm turns one non-finite pixel into an all-NaN frame, so such
frames are taken out of the batch before inference and counted failed as ``non_finite``.
"""

from __future__ import annotations

import numpy as np

from peaknet_serve.wire import FrameBatch

NON_FINITE = "non_finite"


def split_non_finite(batch: FrameBatch) -> tuple[FrameBatch | None, FrameBatch | None]:
    """``(finite frames, non-finite frames)`` of ``batch``; either is None when empty.

    Integer images are always finite and come back unchanged, without a copy.
    """
    images = batch.images
    if images.dtype.kind != "f":
        return batch, None
    finite = np.isfinite(images.reshape(len(batch), -1)).all(axis=1)
    if finite.all():
        return batch, None
    if not finite.any():
        return None, batch
    return _select(batch, finite), _select(batch, ~finite)


def _select(batch: FrameBatch, rows: np.ndarray) -> FrameBatch:
    return FrameBatch(
        images=batch.images[rows],
        metadata={key: values[rows] for key, values in batch.metadata.items()},
        original_shape=batch.original_shape,
    )
