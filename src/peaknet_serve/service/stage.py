"""The writer stage: peaks from each mask, the hit rule, and one CXI file series."""

from __future__ import annotations

import logging
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from peaknet_serve.config import ServiceConfig
from peaknet_serve.cxi import CXIWriter, geometry_bad_pixels
from peaknet_serve.errors import WriterError
from peaknet_serve.live import BatchSummarizer
from peaknet_serve.peaks import ExtraBadPixels, PeakFinder, Peaks, is_hit
from peaknet_serve.service.commits import (
    COMMITS_LOCK,
    CommitLog,
    WriterLock,
    directory_lock,
    find_batch,
    finish_file,
    recover_orphans,
    writer_alive,
)
from peaknet_serve.service.outcome import BatchOutcome
from peaknet_serve.wire import FrameBatch

logger = logging.getLogger(__name__)

RECOVERY_PERIOD_S = 5.0
CLAIM_WAIT_S = 10.0
"""How long a batch claimed by another live writer is waited for before it is handed back."""
CLAIM_POLL_S = 0.05


class PeakStage:
    """Judges and writes every frame of a batch; a frame that fails is counted, never raised.

    A batch that cannot be written (disk full, permissions, the directory gone) comes back with
    ``write_error`` set and nothing of it committed, so the caller can send it again. Every
    acknowledged batch is in this writer's commit log first, so the file of a writer that dies
    is finished by another one, and a batch sent twice is written once (``service.commits``).

    Config sections used: ``peaks``, ``hits``, ``output``.

    Args:
        config: the service configuration.
        writer_id: this writer's name in file names and the commit log.
        bad_pixels: extra bad pixels (True = bad), an array shaped like a frame or a function of
            the frame shape; by default those of ``output.geometry_file``. Combined with
            ``peaks.bad_pixel_mask``.
    """

    def __init__(
        self, config: ServiceConfig, *, writer_id: str, bad_pixels: ExtraBadPixels | None = None
    ) -> None:
        if bad_pixels is None:
            bad_pixels = geometry_bad_pixels(config.output.geometry_file)
        self._finder = PeakFinder(config.peaks, bad_pixels=bad_pixels)
        self._hits = config.hits
        self._output = config.output
        self._directory = Path(config.output.output_dir)
        self.writer_id = writer_id
        self._summarize = BatchSummarizer()
        self._writer = CXIWriter(config.output, writer_id=writer_id)
        self._lock = threading.Lock()
        self._dir_lock = WriterLock(self._directory, writer_id)
        self._log = CommitLog(self._directory, writer_id)
        self._file_events = 0
        self._closed_seen = 0
        self._stale: list[tuple[Path, int]] = []
        self._last_recovery = 0.0
        self.recovered_files: dict[str, int] = {}
        self.last_error: str | None = None
        self.write_error: str | None = None
        self.write_error_since: float | None = None
        self._recover()

    def process(
        self,
        masks: np.ndarray,
        batch: FrameBatch,
        *,
        batch_id: str | None = None,
    ) -> BatchOutcome:
        """Peaks, hit or not, and the CXI write, for each frame of ``batch`` and its ``masks``.

        A ``batch_id`` already committed (by any writer, live or dead) is not written again:
        its recorded outcome comes back. Safe to call from several threads (Serve runs sync
        methods in a thread pool): peaks are found concurrently, writes are serialised.
        """
        if masks.shape != batch.images.shape:
            raise ValueError(f"masks {masks.shape} do not match frames {batch.images.shape}")
        failed: Counter[str] = Counter()
        judged: list[tuple[int, Peaks, bool]] = []
        error: str | None = None
        for index in range(len(batch)):
            try:
                peaks = self._finder.find(masks[index], batch.images[index])
            except Exception as exc:
                error = self._frame_failed(failed, "peak_finding", exc)
                continue
            judged.append((index, peaks, is_hit(peaks.n_found, self._hits)))
        hits = sum(hit for _, _, hit in judged)
        rows = [index for index, _, _ in judged]
        outcome = BatchOutcome(
            hits=hits,
            non_hits=len(judged) - hits,
            failed=dict(failed),
            writer_id=self.writer_id,
            live=self._summarize(batch.images, judged, timestamps=batch.metadata.get("timestamp")),
            error=error,
        )
        with self._lock:
            self._recover()
            try:
                self._dir_lock.acquire()
                if batch_id is not None:
                    done = self._claim(batch_id)
                    if done is not None:
                        return done
                self._write(
                    batch.images[rows],
                    [peaks for _, peaks, _ in judged],
                    {key: values[rows] for key, values in batch.metadata.items()},
                    [hit for _, _, hit in judged],
                )
                self._writer.flush()
                self._log.record(
                    batch_id or uuid.uuid4().hex,
                    outcome,
                    current=self._writer.current_path,
                    events=self._file_events,
                )
            except (WriterError, OSError) as exc:
                self._write_failed(exc)
                return BatchOutcome(
                    failed=dict(failed),
                    write_error=self.write_error,
                    writer_id=self.writer_id,
                    error=error,
                )
            if self.write_error is not None:
                logger.warning("writer %s writes again", self.writer_id)
            self.write_error = self.write_error_since = None
        return outcome

    def _claim(self, batch_id: str) -> BatchOutcome | None:
        """Claim ``batch_id`` for this writer, or the outcome of a writer that committed it.

        A claim by another live writer is waited for (it commits or dies); one that outlives
        ``CLAIM_WAIT_S`` is handed back as a write error, for the caller to send again.
        """
        deadline = time.monotonic() + CLAIM_WAIT_S
        while True:
            with directory_lock(self._directory / COMMITS_LOCK, wait=True):
                found = find_batch(self._directory, batch_id)
                if found.committed is not None:
                    logger.warning(
                        "batch %s came again; writer %s committed it already",
                        batch_id,
                        found.committed.writer_id,
                    )
                    return found.committed
                claimants = [
                    writer_id
                    for writer_id in found.claimed_by
                    if writer_id != self.writer_id and writer_alive(self._directory, writer_id)
                ]
                if not claimants:
                    self._log.claim(batch_id)
                    return None
            if time.monotonic() > deadline:
                return BatchOutcome(
                    write_error=f"batch {batch_id} is still being written by {claimants[0]}",
                    writer_id=self.writer_id,
                )
            time.sleep(CLAIM_POLL_S)

    def _write(self, images, peaks, metadata, hits) -> None:
        """Append, then work out how many events the open file holds (for the commit log)."""
        before_total = self._writer.events_written
        self._writer.write_batch(images, peaks, metadata, hits)
        written = self._writer.events_written - before_total
        closed = self._writer.files_written[self._closed_seen :]
        self._closed_seen += len(closed)
        if not closed:
            self._file_events += written
            return
        into_closed = sum(_events_in(path) for path in closed) - self._file_events
        self._file_events = written - into_closed if self._writer.current_path else 0

    def _write_failed(self, exc: Exception) -> None:
        """Drop the writer whose state is now unknown; its file keeps the committed events."""
        message = f"{type(exc).__name__}: {exc}"
        logger.error("writer %s cannot write: %s", self.writer_id, message)
        self.last_error = self.write_error = message
        self.write_error_since = self.write_error_since or time.time()
        stale = self._writer.current_path
        try:
            self._writer.close()
        except WriterError as close_exc:
            logger.error("closing after the failure failed too: %s", close_exc)
            if stale is not None and stale.exists():
                self._stale.append((stale, self._file_events))
        self._writer = CXIWriter(self._output, writer_id=self.writer_id)
        self._closed_seen = 0
        self._file_events = 0
        try:
            self._log.unclaim()  # the batch goes back to the caller, free for any writer
        except OSError as log_exc:
            logger.error("cannot release this writer's claim: %s", log_exc)

    def _recover(self) -> None:
        """Finish files of dead writers (and our own that failed to close), now and then."""
        now = time.monotonic()
        if now - self._last_recovery < RECOVERY_PERIOD_S:
            return
        self._last_recovery = now
        try:
            result = recover_orphans(self._directory, file_prefix=self._output.file_prefix)
            for path, events in list(self._stale):
                result.recovered.update(finish_file(path, events).recovered)
                self._stale.remove((path, events))
        except (OSError, WriterError) as exc:
            logger.warning("recovery of unfinished files failed: %s", exc)
            return
        self.recovered_files.update(result.recovered)

    def _frame_failed(
        self, failed: Counter[str], reason: str, exc: Exception, *, count: int = 1
    ) -> str:
        """Count ``count`` frames failed for ``reason``; the message, for ``last_error``."""
        logger.error("%d frame(s) failed in %s: %s: %s", count, reason, type(exc).__name__, exc)
        failed[reason] += count
        self.last_error = f"{reason}: {type(exc).__name__}: {exc}"
        return self.last_error

    def writable(self) -> bool:
        """Whether a file can be created in the output directory right now."""
        try:
            self._directory.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self._directory, prefix=".probe-"):
                pass
        except OSError:
            return False
        return True

    def status(self) -> dict[str, Any]:
        with self._lock:
            self._recover()
        return {
            "writer_id": self.writer_id,
            "writable": self.writable(),
            "write_error": self.write_error,
            "write_error_since": self.write_error_since,
            "files_written": [str(p) for p in self._writer.files_written],
            "events_written": self._writer.events_written,
            "recovered_files": dict(self.recovered_files),
            "last_error": self.last_error,
        }

    def close(self) -> None:
        """Close the open file, renaming it from ``.inprogress`` to ``.cxi``; drop the lock."""
        with self._lock:
            self._last_recovery = 0.0
            self._recover()
            try:
                self._writer.close()
            except WriterError as exc:
                logger.error("writer %s could not close its file: %s", self.writer_id, exc)
                return  # keep the log and lock-free file: another writer finishes it
            self._log.remove()
            self._dir_lock.release()


def _events_in(path: Path) -> int:
    with h5py.File(path, "r") as handle:
        return int(handle["/entry_1/result_1/nPeaks"].shape[0])
