"""The inference engine: numpy frames in, uint8 peak masks out, with the GPU kept busy.

Data path of one batch (one slot of the N-way buffer):

1. host: the frames are copied, in their own dtype, into the slot's pinned staging buffer
   (``copy_threads`` worker threads; the event loop only awaits them);
2. copy-in stream: pinned -> device copy, rows that pad the batch up to its bucket are zeroed;
3. compute stream (waits on 2's event): cast to float32, normalise and pad, PeakNet, mask
   ``logits[:,1] > logits[:,0]``, crop, into the slot's device mask buffer;
4. copy-out stream (waits on 3's event): device -> pinned uint8 mask copy;
5. host: the caller's task polls 4's event (``await asyncio.sleep`` between polls) and copies the
   masks out of the slot, which then serves the next batch.

Steps 1 and 5 are ``host_copy``, 2 to 4 ``streams``; device and dtypes come from ``device``, the
compiled or fused model from ``model_prep``.

All kernel launches happen on one launcher thread, so the event loop never runs model code and
CUDA graphs recorded in ``warmup`` (thread-local in torch.compile) are the ones replayed. With N
slots, batch k+1 is copied in while batch k computes and batch k-1 is copied out. Nothing on this
path synchronises the device. The CPU path runs the same steps without streams or pinned memory.

Compiled engines run a batch compiled only when its (bucket, frame shape) is warm; other batches
run the same model eagerly rather than stop the launcher for a compile
(``shapes.ShapeGate``). With ``compile="aot"`` such a pair's package is built meanwhile in a child
process and used once loaded (``aot``). On a GPU the engine pins its threads near the GPU first
(``affinity``) and points torch.compile at a persistent cache (``compile_cache``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from torch import nn

from peaknet_serve.engine.affinity import AffinityChoice, pin_process_near
from peaknet_serve.engine.aot import AotPackages, FrameMasker
from peaknet_serve.engine.compile_cache import configure_compile_cache
from peaknet_serve.engine.config import EngineConfig, WarmupConfig
from peaknet_serve.engine.device import (
    DTYPE_NAMES,
    frame_torch_dtype,
    resolve_device,
    resolve_dtype,
)
from peaknet_serve.engine.graphs import GraphedForward
from peaknet_serve.engine.host_copy import HostCopier
from peaknet_serve.engine.model_prep import (
    compile_forward,
    init_cuda_graph_thread,
    switch_to_fused_kernels,
)
from peaknet_serve.engine.shapes import Pair, ShapeGate, pair_of
from peaknet_serve.engine.staging import SlotPool, StagingStats
from peaknet_serve.engine.streams import BatchStreams
from peaknet_serve.errors import ConfigError, DecodeError
from peaknet_serve.model import InputConfig

logger = logging.getLogger(__name__)


class InferenceEngine:
    """Runs PeakNet on batches of frames; safe for overlapping ``infer`` calls on one loop.

    The engine takes ownership of ``model``: it is moved to the device, cast and set to eval mode
    in place.

    Args:
        fixed_shapes: reject frame shapes not warmed up (``warmup``) instead of compiling them
            in the background (``warmup.fixed_shapes``).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        engine: EngineConfig,
        inputs: InputConfig,
        fixed_shapes: bool = False,
    ) -> None:
        self.config = engine
        self.inputs = inputs
        self.device = resolve_device(engine.device)
        self.dtype = resolve_dtype(engine.precision, self.device)
        self._on_gpu = self.device.type == "cuda"
        self._buckets = engine.batch_buckets
        self._max_bucket = engine.batch_buckets[-1]
        self._model_dtype = torch.float32 if engine.autocast else self.dtype
        self._channels_last = engine.channels_last and self._on_gpu
        self._cuda_graphs = engine.compile == "reduce-overhead" and self._on_gpu
        # Before any thread or pinned buffer exists: they inherit the mask / land on its node.
        self.affinity = (
            pin_process_near(self.device)
            if engine.cpu_affinity and self._on_gpu
            else AffinityChoice((), None, "not pinned: " + ("off" if self._on_gpu else "CPU"))
        )
        self.compile_cache_dir = (
            configure_compile_cache(engine.compile_cache_dir) if engine.compile != "off" else None
        )

        model.eval().requires_grad_(False)
        model.to(device=self.device, dtype=self._model_dtype)
        if self._channels_last:
            model.to(memory_format=torch.channels_last)
        fast = self._channels_last and engine.compile != "aot"
        self._fused_stages = engine.fused_dwconv_stages if fast else ()
        if self._fused_stages:
            switch_to_fused_kernels(model, self._fused_stages)
        self.model = model
        self._masker = FrameMasker(model, inputs, self._model_dtype, self._channels_last)

        self._aot: AotPackages | None = None
        self._aot_runners: dict[Pair, Callable[[torch.Tensor], torch.Tensor]] = {}
        if engine.compile == "aot":
            if engine.autocast:
                raise ConfigError("engine.compile='aot' casts the weights: set autocast to false")
            assert self.compile_cache_dir is not None
            self._aot = AotPackages(
                self._masker,
                self.compile_cache_dir / "aot",
                self.device,
                processes=engine.aot_build_processes,
            )
        self._forward = compile_forward(
            self._forward_eager, mode=engine.compile, on_gpu=self._on_gpu, buckets=self._buckets
        )
        graphs = engine.cuda_graphs and engine.compile in ("default", "max-autotune")
        self._graphs = GraphedForward(self._forward, self.device) if graphs else None
        self._pool = SlotPool(engine.num_buffers, capacity=self._max_bucket, device=self.device)
        self._launcher = ThreadPoolExecutor(
            1,
            thread_name_prefix="peaknet-launch",
            initializer=init_cuda_graph_thread if self._cuda_graphs else None,
        )
        self._copier = HostCopier(engine.copy_threads)
        self._gate = ShapeGate(
            buckets=self._buckets,
            compiled=engine.compile != "off",
            fixed=fixed_shapes,
            on_new_eager_pair=self._build_in_background if self._aot is not None else None,
        )
        if self._on_gpu:
            torch.backends.cudnn.benchmark = engine.cudnn_benchmark
        self._streams = BatchStreams(self.device, self._run_model)
        logger.info("inference engine ready: %s", self.describe())

    @classmethod
    def from_config(
        cls,
        model: nn.Module,
        engine: EngineConfig,
        inputs: InputConfig,
        warmup: WarmupConfig | None = None,
    ) -> InferenceEngine:
        """Build the engine for ``model`` from its configuration sections (no warm-up yet)."""
        fixed = warmup.fixed_shapes if warmup is not None else False
        return cls(model, engine=engine, inputs=inputs, fixed_shapes=fixed)

    # -- status ---------------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """What the engine runs on and how, for status pages and benchmark logs."""
        stats = self.staging_stats()
        return {
            "device": str(self.device),
            "device_name": (torch.cuda.get_device_name(self.device) if self._on_gpu else "cpu"),
            "precision": DTYPE_NAMES[self.dtype],
            "autocast": self.config.autocast,
            "channels_last": self._channels_last,
            "fused_dwconv_stages": list(self._fused_stages),
            "compile": self.config.compile if self.config.compile != "off" else None,
            "cuda_graphs": [list(p) for p in self._graphs.pairs()] if self._graphs else None,
            "num_buffers": self.config.num_buffers,
            "batch_buckets": list(self._buckets),
            "staging_buffers": stats.buffers,
            "staging_bytes": stats.nbytes,
            "torch": torch.__version__,
            "cpu_affinity": self.affinity.describe(),
            "compile_cache_dir": str(self.compile_cache_dir) if self.compile_cache_dir else None,
            "fixed_shapes": self._gate.fixed,
            "warm": [list(pair) for pair in self._gate.warm_pairs()],
            "uncompiled": [list(pair) for pair in self._gate.eager_pairs()],
            "aot": self._aot.describe() if self._aot is not None else None,
        }

    def staging_stats(self) -> StagingStats:
        """Number and size of the staging buffer sets allocated so far."""
        return self._pool.stats()

    def bucket_for(self, batch_size: int) -> int:
        """The smallest bucket that holds ``batch_size`` frames (at most the largest).

        A batch runs at a larger bucket when only that one is compiled for its shape, and
        uncompiled when none is (``ShapeGate``).
        """
        return self._gate.natural_bucket(batch_size)

    def known_shapes(self) -> list[tuple[int, int]]:
        """Frame shapes (height, width) with at least one warm batch bucket."""
        return self._gate.known_shapes()

    # -- model ----------------------------------------------------------------------------------

    def _forward_eager(self, frames: torch.Tensor) -> torch.Tensor:
        """float32 (B, H, W) frames -> uint8 (B, H, W) masks; what torch.compile compiles."""
        with self._autocast():
            return self._masker(frames)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if not self.config.autocast or self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def _run_model(self, frames: torch.Tensor, out: torch.Tensor, *, compiled: bool = True) -> None:
        """Masks of ``frames`` (any dtype, on the device) into ``out``; call in inference mode.

        ``compiled=False`` runs the model eagerly (a pair that was not warmed up).
        """
        if not compiled:
            out.copy_(self._forward_eager(frames.to(torch.float32)))
            return
        if self._aot is not None:
            runner = self._aot_runners[pair_of(frames)]
            out.copy_(runner(frames.to(torch.float32)))
            return
        if self._graphs is not None and self._graphs.has(pair_of(frames)):
            self._graphs.run(frames, out)
            return
        if self._cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        out.copy_(self._forward(frames.to(torch.float32)))

    # -- warm-up ----------------------------------------------------------------------------------

    def warmup(
        self, frame_shape: tuple[int, int], batch_sizes: Sequence[int] | None = None
    ) -> None:
        """Compile (and record CUDA graphs) for ``frame_shape`` at every bucket ``batch_sizes`` use.

        Call before taking traffic: the first batch of each new (bucket, shape) otherwise pays
        the compilation (tens of seconds per shape for the standard model) and cuDNN's
        algorithm search. Blocks until done.

        Args:
            frame_shape: (height, width) of the frames to expect.
            batch_sizes: batch sizes to expect; all buckets when None.
        """
        buckets = sorted({self.bucket_for(b) for b in (batch_sizes or self._buckets)})
        height, width = frame_shape[-2:]
        runs = 3 if self._cuda_graphs else 1  # cudagraph trees: warm-up run, record, replay
        if self._aot is not None:  # all builds at once: they run in parallel child processes
            builds = [self._aot.build((bucket, height, width)) for bucket in buckets]
            for future in builds:
                future.result()
        for bucket in buckets:
            stream = self._streams.compute_stream
            self._launcher.submit(self._warm_one, bucket, height, width, runs, stream).result()
            self._gate.mark_warm(bucket, height, width)
            logger.info("warmed up batch %d x %d x %d", bucket, height, width)

    def warmup_all(self, warmup: WarmupConfig) -> float:
        """Warm up every shape and batch size of ``warmup``; returns the seconds it took."""
        start = time.perf_counter()
        for shape in warmup.image_shapes():
            self.warmup(shape, warmup.batch_sizes)
        return time.perf_counter() - start

    def _warm_one(
        self, bucket: int, height: int, width: int, runs: int, stream: torch.cuda.Stream | None
    ) -> None:
        if self._aot is not None:
            self._aot_runners[(bucket, height, width)] = self._aot.load((bucket, height, width))
        on_stream = torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext()
        with torch.inference_mode(), on_stream:
            generator = torch.Generator(device=self.device).manual_seed(0)
            frames = torch.rand((bucket, height, width), generator=generator, device=self.device)
            out = torch.empty((bucket, height, width), dtype=torch.uint8, device=self.device)
            for _ in range(runs):
                self._run_model(frames, out)
            if self._graphs is not None:
                self._graphs.capture(frames)
                self._run_model(frames, out)
        if stream is not None:
            stream.synchronize()
        # The compile's garbage (Triton's MLIR objects among it) is freed here, on the thread
        # that made it: collected on another engine's launcher thread, it crashed a test process.
        gc.collect()

    # -- inference --------------------------------------------------------------------------------

    async def infer(self, images: np.ndarray) -> np.ndarray:
        """Peak masks for a batch of frames.

        Args:
            images: (B, H, W), or (B, P, H, W) panel stacks (each panel runs as its own frame),
                any integer or float dtype.

        Returns:
            uint8 masks (1 = peak) with the shape of ``images``.

        Raises:
            DecodeError: ``images`` has the wrong number of dimensions or an unsupported dtype.
        """
        if images.ndim not in (3, 4):
            raise DecodeError(
                f"frames must be (B, H, W) or (B, P, H, W), got shape {images.shape}",
                reason="bad_shape",
            )
        height, width = images.shape[-2:]
        frames = images.reshape(-1, height, width)
        key = (height, width, frame_torch_dtype(images.dtype))
        masks = np.empty(frames.shape, dtype=np.uint8)
        starts = range(0, frames.shape[0], self._max_bucket)
        await asyncio.gather(
            *(
                self._infer_chunk(
                    frames[s : s + self._max_bucket], masks[s : s + self._max_bucket], key
                )
                for s in starts
            )
        )
        return masks.reshape(images.shape)

    async def _infer_chunk(
        self, frames: np.ndarray, masks: np.ndarray, key: tuple[int, int, torch.dtype]
    ) -> None:
        count = frames.shape[0]
        bucket, compiled = self._gate.choose(count, key[0], key[1])
        slot = await self._pool.acquire()
        launched: torch.cuda.Event | None = None
        try:
            staging = slot.buffers(key)
            await self._copier.copy(staging.host_in_np[:count], frames)
            loop = asyncio.get_running_loop()
            launched = await loop.run_in_executor(
                self._launcher, self._streams.launch, slot, staging, count, bucket, compiled
            )
            if launched is not None:
                while not launched.query():
                    await asyncio.sleep(self.config.poll_interval_s)
            await self._copier.copy(masks, staging.host_out_np[:count])
        finally:
            if launched is not None and not launched.query():
                launched.synchronize()  # cancelled mid-flight: the GPU still uses this slot
            self._pool.release(slot)

    def _build_in_background(self, pair: Pair) -> None:
        """Build ``pair``'s package in a child process; load and warm it on the launcher when
        it is done, after which its batches run compiled (the gate asks once per pair)."""
        assert self._aot is not None
        stream = self._streams.compute_stream

        def adopt() -> None:
            try:
                self._warm_one(*pair, runs=1, stream=stream)
            except Exception:
                logger.exception("loading the package of %s failed: it stays uncompiled", pair)
                return
            self._gate.mark_warm(*pair)
            logger.info("batch x shape %s now runs compiled", pair)

        def when_built(future: Future[Any]) -> None:
            if future.exception() is not None:
                logger.error("%s: its batches stay uncompiled", future.exception())
                return
            with contextlib.suppress(RuntimeError):  # the engine was closed meanwhile
                self._launcher.submit(adopt)

        self._aot.build(pair).add_done_callback(when_built)

    def pending_builds(self) -> list[Pair]:
        """(bucket, height, width) pairs whose compiled package is being built."""
        return self._aot.pending() if self._aot is not None else []

    def close(self) -> None:
        """Stop the worker threads (after the batches in flight)."""
        if self._aot is not None:
            self._aot.close()
        self._launcher.shutdown(wait=True)
        self._copier.close()
