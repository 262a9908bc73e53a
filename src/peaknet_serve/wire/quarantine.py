"""Keep the raw bytes of messages that failed to decode, so a person can look at them later."""

from __future__ import annotations

import itertools
import json
import logging
import os
import time
from pathlib import Path

from peaknet_serve.errors import DecodeError

logger = logging.getLogger(__name__)


def on_disk(directory: Path, suffix: str) -> tuple[int, int]:
    """How many ``*suffix`` files ``directory`` holds, and their bytes (0, 0 when it is absent).

    The quarantines' bounds count what is on disk, not what this process saved, so they hold
    across replicas, restarts and replicas that share one directory.
    """
    files = size = 0
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.name.endswith(suffix):
                    try:
                        size += entry.stat().st_size
                    except OSError:  # removed meanwhile
                        continue
                    files += 1
    except FileNotFoundError:
        pass
    return files, size


class Quarantine:
    """Writes ``<stamp>-<n>.bin`` (the message) and ``.json`` (why) into one directory.

    Bounded by ``max_files`` messages and ``max_bytes`` bytes of them on disk (whoever saved
    them) so a pusher sending garbage cannot fill the disk; past it, messages are only counted.
    Writing never raises: a quarantine that fails is logged and skipped.
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

    def save(self, payload: bytes | memoryview, error: DecodeError | str) -> Path | None:
        """Store ``payload`` with its reason; returns the ``.bin`` path, or None when skipped."""
        files, size = on_disk(self.directory, ".bin")
        if files >= self.max_files or size + memoryview(payload).nbytes > self.max_bytes:
            self.skipped += 1
            return None
        reason = error.reason if isinstance(error, DecodeError) else "unspecified"
        stem = (
            f"{time.strftime('%Y%m%dT%H%M%S')}-{time.time_ns() % 10**9:09d}"
            f"-{os.getpid()}-{next(self._counter):06d}"
        )
        data_path = self.directory / f"{stem}.bin"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            data_path.write_bytes(payload)
            record = {
                "reason": reason,
                "message": str(error),
                "bytes": memoryview(payload).nbytes,
                "time": time.time(),
            }
            (self.directory / f"{stem}.json").write_text(json.dumps(record) + "\n")
        except OSError as exc:
            logger.warning("could not quarantine a bad message in %s: %s", self.directory, exc)
            self.skipped += 1
            return None
        self.saved += 1
        logger.info("quarantined a bad message (%s) as %s", reason, data_path)
        return data_path
