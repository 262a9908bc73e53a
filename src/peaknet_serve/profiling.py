"""torch.profiler traces of a few model batches, switched on from the config.

A PeakNet replica wraps each engine call in :meth:`BatchProfiler.batch`. With
``profiling.torch_trace_dir`` set, the profiler starts once ``skip_batches`` batches have run
(compilation and warm caches out of the way), records ``trace_batches`` batches, and writes one
Chrome/Perfetto trace per replica (open it in https://ui.perfetto.dev or chrome://tracing).
Then it is off again: a long run pays nothing for it. Overlapping batches (the engine's N-way
buffering) are recorded as they overlap.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from pydantic import Field

from peaknet_serve._section import Section

logger = logging.getLogger(__name__)

RANGE_NAME = "peaknet.batch"
"""The name of each batch's range in the trace."""


class ProfilingConfig(Section):
    """Profiling switches (section ``profiling``)."""

    torch_trace_dir: Path | None = Field(
        default=None,
        description="Write a torch.profiler trace of `trace_batches` batches per PeakNet "
        "replica into this directory (on the replica's node); null: off.",
    )
    skip_batches: int = Field(
        default=5, ge=0, description="Batches to let pass before recording (warm-up)."
    )
    trace_batches: int = Field(default=20, ge=1, description="Batches to record.")
    record_shapes: bool = Field(default=True, description="Record the input shapes of ops.")
    with_stack: bool = Field(
        default=False, description="Record Python stacks (larger traces, more overhead)."
    )


class BatchProfiler:
    """Records batches ``skip_batches + 1`` to ``skip_batches + trace_batches`` of one process.

    Args:
        config: the ``profiling`` section; with no ``torch_trace_dir`` this does nothing.
        name: goes into the trace's file name (the replica id, say).
    """

    def __init__(self, config: ProfilingConfig, *, name: str = "peaknet") -> None:
        self._config = config
        self._name = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        self._lock = threading.Lock()
        self._started = 0
        self._finished = 0
        self._profile: torch.profiler.profile | None = None
        self.trace_path: Path | None = None
        """Where the trace was written, once it was."""

    @property
    def enabled(self) -> bool:
        return self._config.torch_trace_dir is not None

    @property
    def recording(self) -> bool:
        return self._profile is not None

    @contextlib.contextmanager
    def batch(self, *, frames: int | None = None) -> Iterator[None]:
        """Wrap one engine call (sync or awaited inside): counts it, and records it if due."""
        if not self.enabled or self.trace_path is not None:
            yield
            return
        with self._lock:
            self._started += 1
            if self._started == self._config.skip_batches + 1:
                self._start()
            recorded = self._profile is not None and self._started <= self._last_batch
        if not recorded:
            yield
            return
        label = RANGE_NAME if frames is None else f"{RANGE_NAME}[{frames}]"
        try:
            with torch.profiler.record_function(label):
                yield
        finally:
            with self._lock:
                self._finished += 1
                if self._finished == self._config.trace_batches:
                    self._stop()

    @property
    def _last_batch(self) -> int:
        return self._config.skip_batches + self._config.trace_batches

    def _start(self) -> None:
        activities = [torch.profiler.ProfilerActivity.CPU]
        if torch.cuda.is_available():
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        self._profile = torch.profiler.profile(
            activities=activities,
            record_shapes=self._config.record_shapes,
            with_stack=self._config.with_stack,
        )
        self._profile.start()
        logger.info("torch.profiler: recording %d batches", self._config.trace_batches)

    def _stop(self) -> None:
        profile, self._profile = self._profile, None
        assert profile is not None and self._config.torch_trace_dir is not None
        profile.stop()
        directory = self._config.torch_trace_dir
        directory.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = directory / f"{self._name}-{os.getpid()}-{stamp}.pt.trace.json"
        profile.export_chrome_trace(str(path))
        self.trace_path = path
        logger.warning("torch.profiler trace of %d batches written to %s", self._finished, path)
