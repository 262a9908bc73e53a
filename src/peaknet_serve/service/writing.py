"""Writing judged batches: one CXI file series per writer, each batch committed in its own file
before it is acknowledged, the files of dead writers finished (``peaknet_serve.cxi.recovery``).
"""

from __future__ import annotations

import logging
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from peaknet_serve.cxi import CXIConfig, CXIWriter
from peaknet_serve.cxi.batches import BatchIndex
from peaknet_serve.cxi.recovery import Liveness, finish_file, recover_orphans
from peaknet_serve.errors import WriterError
from peaknet_serve.service.judge import Judgement
from peaknet_serve.service.outcome import BatchOutcome
from peaknet_serve.wire import FrameBatch

logger = logging.getLogger(__name__)

RECOVERY_PERIOD_S = 5.0


class BatchWriter:
    """Appends the judged frames of each batch to this writer's CXI files; not thread-safe.

    A batch that cannot be written (disk full, permissions, the directory gone) comes back with
    ``write_error`` set and nothing of it committed, so the caller can send it again. A batch id
    already committed (by this writer or another, live or dead) is not written again: its
    recorded outcome comes back. No lock is shared with other writers: each touches only its
    own files, and those of writers known dead (``alive``, see ``recover_orphans``).

    Args:
        output: the ``output`` section.
        writer_id: this writer's name in its file names.
        alive: writer id -> whether it lives (None: cannot tell), for recovery.
    """

    def __init__(
        self, output: CXIConfig, *, writer_id: str, alive: Liveness | None = None
    ) -> None:
        self._output = output
        self._directory = Path(output.output_dir)
        self.writer_id = writer_id
        self._alive = alive
        self._writer = CXIWriter(output, writer_id=writer_id)
        self._index = BatchIndex(self._directory)
        self._stale: list[Path] = []
        self._last_recovery = 0.0
        self.recovered_files: dict[str, int] = {}
        self.write_error: str | None = None
        self.write_error_since: float | None = None
        self.recover()

    def write(self, batch: FrameBatch, judgement: Judgement, batch_id: str | None) -> BatchOutcome:
        """Write the judged frames of ``batch`` and commit them; the outcome to acknowledge."""
        self.recover()
        try:
            if batch_id is not None:
                found = self._index.find(batch_id)
                if found.committed is not None:
                    logger.warning(
                        "batch %s came again; writer %s committed it already",
                        batch_id,
                        found.writer_id,
                    )
                    return BatchOutcome.from_record(found.committed, writer_id=found.writer_id)
            batch_id = batch_id or uuid.uuid4().hex
            outcome = judgement.outcome(self.writer_id)
            rows = judgement.rows
            self._writer.begin(batch_id)
            # Every frame judged (the usual case): the batch's own images, not a copy of them.
            images = batch.images if len(rows) == len(batch) else batch.images[rows]
            self._writer.write_batch(
                images,
                [frame.peaks for frame in judgement.judged],
                {key: values[rows] for key, values in batch.metadata.items()},
                [frame.hit for frame in judgement.judged],
                batch_id=batch_id,
            )
            self._writer.commit(batch_id, outcome.to_record(), batch.images.shape[1:])
        except (WriterError, OSError) as exc:
            self._write_failed(exc)
            return BatchOutcome(
                failed=dict(judgement.failed),
                write_error=self.write_error,
                writer_id=self.writer_id,
                error=judgement.error,
            )
        if self.write_error is not None:
            logger.warning("writer %s writes again", self.writer_id)
        self.write_error = self.write_error_since = None
        return outcome

    def _write_failed(self, exc: Exception) -> None:
        """Drop the writer whose state is now unknown; its file keeps the committed events."""
        message = f"{type(exc).__name__}: {exc}"
        logger.error("writer %s cannot write: %s", self.writer_id, message)
        self.write_error = message
        self.write_error_since = self.write_error_since or time.time()
        stale = self._writer.abandon()
        if stale is not None:
            self._stale.append(stale)
        self._writer = CXIWriter(self._output, writer_id=self.writer_id)
        self._last_recovery = 0.0  # finish the abandoned file as soon as it can be

    def recover(self, *, now: bool = False) -> None:
        """Finish files of dead writers (and our own abandoned ones), every
        ``RECOVERY_PERIOD_S`` or ``now``."""
        clock = time.monotonic()
        if not now and clock - self._last_recovery < RECOVERY_PERIOD_S:
            return
        self._last_recovery = clock
        try:
            result = recover_orphans(
                self._directory,
                file_prefix=self._output.file_prefix,
                own_id=self.writer_id,
                alive=self._alive,
            )
            for path in list(self._stale):
                if path.exists():
                    finish_file(path, result)
                self._stale.remove(path)
        except OSError as exc:
            logger.warning("recovery of unfinished files failed: %s", exc)
            return
        self.recovered_files.update(result.recovered)

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
        self.recover()
        return {
            "writer_id": self.writer_id,
            "writable": self.writable(),
            "write_error": self.write_error,
            "write_error_since": self.write_error_since,
            "files_written": [str(p) for p in self._writer.files_written],
            "events_written": self._writer.events_written,
            "recovered_files": dict(self.recovered_files),
        }

    def close(self) -> None:
        """Close the open file, renaming it from ``.inprogress`` to ``.cxi``."""
        self.recover(now=True)
        try:
            self._writer.close()
        except WriterError as exc:
            logger.error("writer %s could not close its file: %s", self.writer_id, exc)
            stale = self._writer.abandon()  # for recovery once this process is gone
            if stale is not None:
                logger.error("%s is left for another writer to finish", stale)
