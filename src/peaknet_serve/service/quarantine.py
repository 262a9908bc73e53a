"""Keep the frames of batches that could not be processed, with the reason, for a person."""

from __future__ import annotations

import itertools
import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from peaknet_serve.wire import FrameBatch
from peaknet_serve.wire.quarantine import on_disk

logger = logging.getLogger(__name__)


class BatchQuarantine:
    """Writes ``<stamp>.npz`` (``images`` and ``metadata/<key>`` arrays) and ``<stamp>.json``.

    Bounded by ``max_files`` batches and ``max_bytes`` bytes of them on disk (whoever saved
    them) so an outage cannot fill the disk; past it, batches are only counted. Saving never
    raises: a quarantine that fails is logged and skipped.
    """

    def __init__(
        self, directory: str | os.PathLike[str], *, max_files: int = 100, max_bytes: int = 1024**3
    ) -> None:
        self.directory = Path(directory)
        self.max_files = max_files
        self.max_bytes = max_bytes
        self.saved = 0
        self.skipped = 0
        self._counter = itertools.count()

    def save(self, batch: FrameBatch, *, reason: str, message: str) -> Path | None:
        """Store ``batch`` raw with ``reason``; returns the ``.npz`` path, or None when skipped."""
        files, size = on_disk(self.directory, ".npz")
        if files >= self.max_files or size + np.asarray(batch.images).nbytes > self.max_bytes:
            self.skipped += 1
            return None
        seconds, nanoseconds = divmod(time.time_ns(), 10**9)  # one reading: names sort by time
        stem = (
            f"{time.strftime('%Y%m%dT%H%M%S', time.localtime(seconds))}-{nanoseconds:09d}"
            f"-{os.getpid()}-{next(self._counter):06d}"
        )
        data_path = self.directory / f"{stem}.npz"
        arrays = {"images": np.asarray(batch.images)}
        arrays.update({f"metadata/{key}": np.asarray(v) for key, v in batch.metadata.items()})
        record = {
            "reason": reason,
            "message": message,
            "frames": len(batch),
            "shape": list(batch.images.shape),
            "time": time.time(),
        }
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with data_path.open("wb") as fh:
                np.savez(fh, **arrays)
            (self.directory / f"{stem}.json").write_text(json.dumps(record) + "\n")
        except OSError as exc:
            logger.warning("could not quarantine a failed batch in %s: %s", self.directory, exc)
            self.skipped += 1
            return None
        self.saved += 1
        logger.info("quarantined %d frames (%s) as %s", len(batch), reason, data_path)
        return data_path
