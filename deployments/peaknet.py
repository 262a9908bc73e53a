"""The PeakNet deployment: dynamic batching over frames in front of the inference engine."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from ray import serve

from peaknet_serve.config import BatchingConfig, ServiceConfig
from peaknet_serve.engine import InferenceEngine
from peaknet_serve.pipeline import load_model
from peaknet_serve.wire import FrameBatch

logger = logging.getLogger(__name__)

DEFAULT = BatchingConfig()


def count_frames(images: list[np.ndarray]) -> int:
    """Batch size in frames, not requests: one request is one LCLStreamer message."""
    return sum(len(block) for block in images)


@serve.deployment(name="PeakNet", max_ongoing_requests=16)
class PeakNet:
    """Turns frame batches into uint8 peak masks on one GPU (or the CPU when there is none).

    ``user_config`` keys ``max_batch_frames`` and ``batch_wait_timeout_s`` change batching at
    run time, without a restart.
    """

    def __init__(self, settings: dict[str, Any]) -> None:
        config = ServiceConfig.model_validate(settings)
        self._engine = InferenceEngine.from_config(
            load_model(config.model), config.engine, config.model.inputs
        )
        self._max_batch_frames = DEFAULT.max_batch_frames
        logger.info("PeakNet replica on %s", self._engine.describe())
        for shape in config.warmup.frame_shapes:
            self._engine.warmup(tuple(shape), config.warmup.batch_sizes)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Apply ``user_config`` (a BatchingConfig) without restarting the replica."""
        batching = BatchingConfig.model_validate(user_config)
        self._max_batch_frames = batching.max_batch_frames
        self._masks_for_blocks.set_max_batch_size(batching.max_batch_frames)
        self._masks_for_blocks.set_batch_wait_timeout_s(batching.batch_wait_timeout_s)

    def ready(self) -> bool:
        """A replica answers only after ``__init__``: weights loaded, configured shapes warm."""
        return True

    def describe(self) -> dict[str, Any]:
        return {"engine": self._engine.describe(), "max_batch_frames": self._max_batch_frames}

    async def infer(self, batch: FrameBatch) -> np.ndarray:
        """The uint8 peak mask of every frame of ``batch``, in the frames' shape."""
        images = batch.images
        blocks = [
            images[start : start + self._max_batch_frames]
            for start in range(0, len(images), self._max_batch_frames)
        ]
        masks = [await self._masks_for_blocks(block) for block in blocks]
        return masks[0] if len(masks) == 1 else np.concatenate(masks)

    @serve.batch(
        max_batch_size=DEFAULT.max_batch_frames,
        batch_wait_timeout_s=DEFAULT.batch_wait_timeout_s,
        max_concurrent_batches=3,
        batch_size_fn=count_frames,
    )
    async def _masks_for_blocks(self, blocks: list[np.ndarray]) -> list[np.ndarray]:
        """One engine call for blocks of one frame shape; blocks of other shapes run apart."""
        results: list[np.ndarray | None] = [None] * len(blocks)
        by_kind: dict[tuple[Any, ...], list[int]] = {}
        for index, block in enumerate(blocks):
            by_kind.setdefault((block.shape[1:], block.dtype.str), []).append(index)
        for indices in by_kind.values():
            stacked = np.concatenate([blocks[i] for i in indices])
            masks = await self._engine.infer(stacked)
            offset = 0
            for i in indices:
                results[i] = masks[offset : offset + len(blocks[i])]
                offset += len(blocks[i])
        return results
