"""The PeakFinderWriter deployment's work without Ray: judge each batch, then write it."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from peaknet_serve.cxi import geometry_bad_pixels
from peaknet_serve.cxi.config import CXIConfig
from peaknet_serve.cxi.recovery import Liveness
from peaknet_serve.peaks import ExtraBadPixels, HitConfig, PeaksConfig
from peaknet_serve.service.judge import BatchJudge
from peaknet_serve.service.outcome import BatchOutcome
from peaknet_serve.service.writing import BatchWriter
from peaknet_serve.wire import FrameBatch


class PeakStage:
    """Judges and writes every frame of a batch; a frame that fails is counted, never raised.

    Judging (``BatchJudge``) runs concurrently; writes (``BatchWriter``) are serialised, as Serve
    runs sync methods in a thread pool.

    Args:
        peaks, hits: how peaks are found in a mask and which frames are hits.
        output: where and how the CXI files are written.
        writer_id: this writer's name in file names.
        bad_pixels: extra bad pixels (True = bad), an array shaped like a frame or a function of
            the frame shape; by default those of ``output.geometry_file``. Combined with
            ``peaks.bad_pixel_mask``.
        alive: writer id -> whether that writer lives (None: cannot tell), for recovery.
    """

    def __init__(
        self,
        peaks: PeaksConfig,
        hits: HitConfig,
        output: CXIConfig,
        *,
        writer_id: str,
        bad_pixels: ExtraBadPixels | None = None,
        alive: Liveness | None = None,
    ) -> None:
        if bad_pixels is None:
            bad_pixels = geometry_bad_pixels(output.geometry_file)
        self.writer_id = writer_id
        self._judge = BatchJudge(peaks, hits, bad_pixels=bad_pixels)
        self._writer = BatchWriter(output, writer_id=writer_id, alive=alive)
        self._lock = threading.Lock()
        self.last_error: str | None = None

    def process(
        self, masks: np.ndarray, batch: FrameBatch, *, batch_id: str | None = None
    ) -> BatchOutcome:
        """Peaks, hit or not, and the CXI write, for each frame of ``batch`` and its ``masks``."""
        judgement = self._judge(masks, batch)
        with self._lock:
            if judgement.error is not None:
                self.last_error = judgement.error
            outcome = self._writer.write(batch, judgement, batch_id)
            if outcome.write_error is not None:
                self.last_error = outcome.write_error
        return outcome

    def status(self) -> dict[str, Any]:
        with self._lock:
            return self._writer.status() | {"last_error": self.last_error}

    def close(self) -> None:
        """Close the open file, renaming it from ``.inprogress`` to ``.cxi``."""
        with self._lock:
            self._writer.close()
