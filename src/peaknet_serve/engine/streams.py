"""Copy-in, compute and copy-out of one batch on three CUDA streams (inline on a CPU)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Protocol

import torch

from peaknet_serve.engine.staging import Slot, Staging


class RunModel(Protocol):
    """Masks of ``frames`` (on the device) into ``out``: ``InferenceEngine._run_model``."""

    def __call__(self, frames: torch.Tensor, out: torch.Tensor, *, compiled: bool = True) -> None:
        """Run the model (compiled, or eagerly when ``compiled`` is False)."""


class BatchStreams:
    """The three streams of the engine's data path and the launch of one batch on them.

    Args:
        device: the engine's device; on a CPU no streams exist and a launch runs inline.
        run_model: what the compute step runs.
    """

    def __init__(self, device: torch.device, run_model: RunModel) -> None:
        self._on_gpu = device.type == "cuda"
        self._run_model = run_model
        self.compute_stream: torch.cuda.Stream | None = None
        if self._on_gpu:
            self._copy_in_stream = torch.cuda.Stream(device)
            self.compute_stream = torch.cuda.Stream(device)
            self._copy_out_stream = torch.cuda.Stream(device)

    def launch(
        self, slot: Slot, staging: Staging, count: int, bucket: int, compiled: bool
    ) -> torch.cuda.Event | None:
        """Enqueue copy-in, compute and copy-out of one batch, padded to ``bucket`` (compiled or
        eager); runs on the launcher thread.

        Returns the event that completes with the copy-out (None on a CPU, where the work is
        done on return).
        """
        with torch.inference_mode():
            if not self._on_gpu:
                with self._nvtx("peaknet.compute"):
                    staging.dev_in[count:bucket].zero_()
                    self._run_model(
                        staging.dev_in[:bucket], staging.dev_out[:bucket], compiled=compiled
                    )
                return None
            assert slot.copied_in is not None and slot.computed is not None
            assert slot.copied_out is not None and self.compute_stream is not None
            with self._nvtx("peaknet.copy_in"), torch.cuda.stream(self._copy_in_stream):
                staging.dev_in[:count].copy_(staging.host_in[:count], non_blocking=True)
                staging.dev_in[count:bucket].zero_()
                slot.copied_in.record()
            with self._nvtx("peaknet.compute"), self._on_compute_stream():
                self.compute_stream.wait_event(slot.copied_in)
                self._run_model(
                    staging.dev_in[:bucket], staging.dev_out[:bucket], compiled=compiled
                )
                slot.computed.record()
            with self._nvtx("peaknet.copy_out"), torch.cuda.stream(self._copy_out_stream):
                self._copy_out_stream.wait_event(slot.computed)
                staging.host_out[:count].copy_(staging.dev_out[:count], non_blocking=True)
                slot.copied_out.record()
        return slot.copied_out

    def _on_compute_stream(self) -> contextlib.AbstractContextManager[Any]:
        if not self._on_gpu:
            return contextlib.nullcontext()
        return torch.cuda.stream(self.compute_stream)

    @contextlib.contextmanager
    def _nvtx(self, name: str) -> Iterator[None]:
        if not self._on_gpu:
            yield
            return
        with torch.cuda.nvtx.range(name):
            yield
