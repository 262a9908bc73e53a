"""Keep what could not be processed, raw and with its reason, so a person can look at it later."""

from __future__ import annotations

import itertools
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

from peaknet_serve.errors import DecodeError
from peaknet_serve.wire.decode import FrameBatch

logger = logging.getLogger(__name__)


def on_disk(directory: Path, suffix: str | tuple[str, ...]) -> tuple[int, int]:
    """How many files ending in ``suffix`` (one, or any of several) ``directory`` holds, and
    their bytes (0, 0 when it is absent).

    The quarantine's bounds count what is on disk, not what this process saved, so they hold
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


DATA_SUFFIXES = (".bin", ".npz")
"""A kept message's bytes (``.bin``) and a kept batch's arrays (``.npz``): what the bounds count."""


class Quarantine:
    """Keeps undecodable messages and batches that failed downstream in one directory.

    A message becomes ``<stem>.bin`` (its bytes as received); a batch ``<stem>.npz`` (arrays
    ``images`` and ``metadata/<key>``); each has ``<stem>.json`` beside it with ``reason``,
    ``message`` and ``time``. Stems sort by time. Bounded by ``max_files`` items and
    ``max_bytes`` bytes of them on disk (whoever saved them) so a pusher sending garbage or an
    outage cannot fill the disk; past the bounds, items are only counted in ``skipped``.
    Saving never raises: a quarantine that fails is logged and skipped.
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
        """Store the message ``payload`` with its reason; returns the ``.bin`` path, or None
        when skipped."""
        reason = error.reason if isinstance(error, DecodeError) else "unspecified"
        size = memoryview(payload).nbytes
        record = {"reason": reason, "message": str(error), "bytes": size}
        return self._keep(".bin", size, lambda fh: fh.write(payload), record, "a bad message")

    def save_batch(self, batch: FrameBatch, *, reason: str, message: str) -> Path | None:
        """Store the frames of ``batch`` raw with ``reason``; returns the ``.npz`` path, or None
        when skipped."""
        images = np.asarray(batch.images)
        arrays = {"images": images}
        arrays.update({f"metadata/{key}": np.asarray(v) for key, v in batch.metadata.items()})
        record = {
            "reason": reason,
            "message": message,
            "frames": len(batch),
            "shape": list(images.shape),
        }
        what = f"{len(batch)} frames of a failed batch"
        return self._keep(".npz", images.nbytes, lambda fh: np.savez(fh, **arrays), record, what)

    def _keep(
        self,
        suffix: str,
        size: int,
        write: Callable[[IO[bytes]], Any],
        record: dict[str, Any],
        what: str,
    ) -> Path | None:
        """Write ``<stem><suffix>`` with ``write`` and ``<stem>.json`` with ``record``, within
        the bounds."""
        files, used = on_disk(self.directory, DATA_SUFFIXES)
        if files >= self.max_files or used + size > self.max_bytes:
            self.skipped += 1
            return None
        seconds, nanoseconds = divmod(time.time_ns(), 10**9)  # one reading: names sort by time
        stem = (
            f"{time.strftime('%Y%m%dT%H%M%S', time.localtime(seconds))}-{nanoseconds:09d}"
            f"-{os.getpid()}-{next(self._counter):06d}"
        )
        data_path = self.directory / f"{stem}{suffix}"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with data_path.open("wb") as fh:
                write(fh)
            record = record | {"time": time.time()}
            (self.directory / f"{stem}.json").write_text(json.dumps(record) + "\n")
        except OSError as exc:
            logger.warning("could not quarantine %s in %s: %s", what, self.directory, exc)
            self.skipped += 1
            return None
        self.saved += 1
        logger.info("quarantined %s (%s) as %s", what, record["reason"], data_path)
        return data_path
