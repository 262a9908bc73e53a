"""The pixel screen before the model: gap pixels masked, frames with no valid pixel split out."""

from __future__ import annotations

import numpy as np

from peaknet_serve.peaks import PeaksConfig, PixelScreen
from peaknet_serve.service.screen import screen_batch
from peaknet_serve.wire import FrameBatch
from tests.stage_helpers import batch


def test_screen_masks_gap_pixels_and_splits_out_hopeless_frames() -> None:
    frames = batch(0, 4)
    images = frames.images.copy()
    images[1, 3, 3] = np.nan  # a gap pixel: masked, the frame goes on
    images[2] = np.nan  # no valid pixel: failed
    images[3, 0, 0] = np.inf
    screened = screen_batch(
        FrameBatch(images=images, metadata=frames.metadata), PixelScreen(PeaksConfig())
    )
    assert screened.kept is not None and screened.failed is not None
    assert screened.kept.metadata["timestamp"].tolist() == [0, 1, 3]
    assert screened.failed.metadata["timestamp"].tolist() == [2]
    assert "no valid pixel" in screened.failures[0]
    assert screened.masked_pixels.tolist() == [0, 1, images[2].size, 1]
    ints = FrameBatch(images=np.zeros((2, 4, 4), np.uint16), metadata={})
    same = screen_batch(ints, PixelScreen(PeaksConfig()))
    assert same.kept is ints and same.failed is None
