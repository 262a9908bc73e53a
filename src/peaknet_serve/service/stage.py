"""The writer stage: peaks from each mask, the hit rule, and one CXI file series."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from typing import Any

import numpy as np

from peaknet_serve.config import ServiceConfig
from peaknet_serve.cxi import CXIWriter
from peaknet_serve.errors import WriterError
from peaknet_serve.peaks import Peaks, find_peaks, is_hit
from peaknet_serve.service.outcome import BatchOutcome
from peaknet_serve.wire import FrameBatch

logger = logging.getLogger(__name__)


class PeakStage:
    """Judges and writes every frame of a batch; a frame that fails is counted, never raised.

    Config sections used: ``peaks``, ``hits``, ``output``.
    """

    def __init__(self, config: ServiceConfig, *, writer_id: str) -> None:
        self._peaks = config.peaks
        self._hits = config.hits
        self._writer = CXIWriter(config.output, writer_id=writer_id)
        self._lock = threading.Lock()
        self.last_error: str | None = None

    def process(self, masks: np.ndarray, batch: FrameBatch) -> BatchOutcome:
        """Peaks, hit or not, and the CXI write, for each frame of ``batch`` and its ``masks``.

        Safe to call from several threads (Serve runs sync methods in a thread pool): peaks are
        found concurrently, writes to the one open file are serialised.
        """
        if masks.shape != batch.images.shape:
            raise ValueError(f"masks {masks.shape} do not match frames {batch.images.shape}")
        failed: Counter[str] = Counter()
        judged: list[tuple[int, Peaks, bool]] = []
        for index in range(len(batch)):
            try:
                peaks = find_peaks(masks[index], batch.images[index], self._peaks)
            except Exception as exc:
                self._frame_failed(failed, "peak_finding", exc)
                continue
            judged.append((index, peaks, is_hit(peaks.n_found, self._hits)))
        hits = sum(hit for _, _, hit in judged)
        rows = [index for index, _, _ in judged]
        try:
            with self._lock:
                self._writer.write_batch(
                    batch.images[rows],
                    [peaks for _, peaks, _ in judged],
                    {key: values[rows] for key, values in batch.metadata.items()},
                    [hit for _, _, hit in judged],
                )
                self._writer.flush()
        except WriterError as exc:
            self._frame_failed(failed, "write", exc, count=len(judged))
            return BatchOutcome(failed=dict(failed))
        return BatchOutcome(hits=hits, non_hits=len(judged) - hits, failed=dict(failed))

    def _frame_failed(
        self, failed: Counter[str], reason: str, exc: Exception, *, count: int = 1
    ) -> None:
        logger.error("%d frame(s) failed in %s: %s: %s", count, reason, type(exc).__name__, exc)
        failed[reason] += count
        self.last_error = f"{reason}: {type(exc).__name__}: {exc}"

    def status(self) -> dict[str, Any]:
        return {
            "files_written": [str(p) for p in self._writer.files_written],
            "events_written": self._writer.events_written,
            "last_error": self.last_error,
        }

    def close(self) -> None:
        """Close the open file, renaming it from ``.inprogress`` to ``.cxi``."""
        with self._lock:
            self._writer.close()
