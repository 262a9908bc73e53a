"""The PeakNet deployment: dynamic batching over frames in front of the inference engine.

A replica checks its GPU before anything else (a broken GPU fails the constructor, so Serve
starts the replica elsewhere), pins its threads near the GPU, loads the model and compiles the
configured frame shapes; only then does ``__init__`` return, which is Serve's readiness.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import numpy as np
from ray import serve

from deployments.board import GPU_POST_INTERVAL_S, status_board
from deployments.metrics import PeakNetMetrics
from peaknet_serve.engine import GPUHealth, InferenceEngine, resolve_device
from peaknet_serve.engine.config import BatchingConfig, EngineConfig, WarmupConfig
from peaknet_serve.engine.health import Probe, startup_probe, tick_probe
from peaknet_serve.model.section import ModelSection
from peaknet_serve.pipeline import load_model
from peaknet_serve.profiling import BatchProfiler, ProfilingConfig
from peaknet_serve.wire import FrameBatch

logger = logging.getLogger(__name__)

DEFAULT = BatchingConfig()


def count_frames(images: list[np.ndarray]) -> int:
    """Batch size in frames, not requests: one request is one LCLStreamer message."""
    return sum(len(block) for block in images)


def stack_by_kind(blocks: list[np.ndarray]) -> list[tuple[list[int], np.ndarray]]:
    """The blocks of each frame shape and dtype, in one array per kind, with their indices.

    A kind with one block (one message, the usual case at full rate) is that block itself: a
    copy of hundreds of MB, with the GIL held, would only feed the engine's own copy.
    """
    by_kind: dict[tuple[Any, ...], list[int]] = {}
    for index, block in enumerate(blocks):
        by_kind.setdefault((block.shape[1:], block.dtype.str), []).append(index)
    stacks = []
    for indices in by_kind.values():
        parts = [blocks[i] for i in indices]
        stacks.append((indices, parts[0] if len(parts) == 1 else np.concatenate(parts)))
    return stacks


@serve.deployment(name="PeakNet", max_ongoing_requests=64, health_check_period_s=5)
class PeakNet:
    """Turns frame batches into uint8 peak masks on one GPU (or the CPU when there is none).

    ``user_config`` keys ``max_batch_frames`` and ``batch_wait_timeout_s`` change batching at
    run time, without a restart.

    Args:
        model: which PeakNet and which weights.
        engine: device, precision, compilation, buffers, the GPU health-check timeout.
        warmup: the frame shapes and batch sizes compiled before the replica is ready.
        profiling: torch.profiler traces of a few batches (off by default).
        health_startup: the GPU start-up probe (tests pass a failing one).
        health_tick: the probe of each Serve health check.
    """

    def __init__(
        self,
        *,
        model: ModelSection,
        engine: EngineConfig,
        warmup: WarmupConfig,
        profiling: ProfilingConfig,
        health_startup: Probe = startup_probe,
        health_tick: Probe = tick_probe,
    ) -> None:
        self._health = GPUHealth(
            resolve_device(engine.device),
            timeout_s=engine.health_timeout_s,
            startup=health_startup,
            tick=health_tick,
        )
        self._health.check_startup()
        self._engine = InferenceEngine.from_config(load_model(model), engine, model.inputs, warmup)
        self._max_batch_frames = DEFAULT.max_batch_frames
        self._metrics = PeakNetMetrics()
        context = serve.get_replica_context()
        self._replica = context.replica_id.unique_id
        self._profiler = BatchProfiler(profiling, name=self._replica)
        self._warmup_s = self._engine.warmup_all(warmup)
        self._board = status_board(context.app_name)
        self._poster = asyncio.get_running_loop().create_task(self._post_gpu(), name="post-gpu")
        logger.info(
            "PeakNet replica ready after %.1f s of warm-up on %s",
            self._warmup_s,
            self._engine.describe(),
        )

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Apply ``user_config`` (a BatchingConfig) without restarting the replica."""
        batching = BatchingConfig.model_validate(user_config)
        self._max_batch_frames = batching.max_batch_frames
        self._masks_for_blocks.set_max_batch_size(batching.max_batch_frames)
        self._masks_for_blocks.set_batch_wait_timeout_s(batching.batch_wait_timeout_s)

    async def check_health(self) -> None:
        """Serve's periodic check: fails after CUDA errors, or when a tiny kernel times out."""
        await asyncio.to_thread(self._health.check)

    async def _post_gpu(self) -> None:
        """Post this replica's GPU to the status board (``/status`` ``gpus``) now and then."""
        while True:
            try:
                await asyncio.wait_for(
                    self._board.post.remote("peaknet", self._replica, self.gpu_status()), 5
                )
            except Exception as exc:  # the board is a convenience: never stop the replica
                logger.warning("status board unreachable: %s", exc)
            await asyncio.sleep(GPU_POST_INTERVAL_S)

    def __del__(self) -> None:
        if hasattr(self, "_poster"):
            self._poster.cancel()
        if hasattr(self, "_board"):
            with contextlib.suppress(Exception):  # Ray may be shutting down
                self._board.forget.remote("peaknet", self._replica)

    def ready(self) -> bool:
        """A replica answers only after ``__init__``: GPU checked, weights loaded, shapes warm."""
        return True

    def gpu_status(self) -> dict[str, Any]:
        """This replica's GPU for ``/status``: name, index, memory in use, health, warm shapes."""
        return self._health.status() | {
            "warmup_s": round(self._warmup_s, 2),
            "known_shapes": [list(shape) for shape in self._engine.known_shapes()],
        }

    def describe(self) -> dict[str, Any]:
        return {
            "engine": self._engine.describe(),
            "gpu": self.gpu_status(),
            "max_batch_frames": self._max_batch_frames,
        }

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
        for indices, stacked in stack_by_kind(blocks):
            started = time.perf_counter()
            try:
                with self._profiler.batch(frames=len(stacked)):
                    masks = await self._engine.infer(stacked)
            except Exception as exc:
                self._health.record_error(exc)  # CUDA errors fail the next health check
                self._metrics.error(exc)
                raise
            self._metrics.batch(frames=len(stacked), seconds=time.perf_counter() - started)
            offset = 0
            for i in indices:
                results[i] = masks[offset : offset + len(blocks[i])]
                offset += len(blocks[i])
        return results
