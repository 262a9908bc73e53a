"""Which batches the CXI files of a directory hold, read from the files alone.

Every writer records each batch it acknowledges in its own open file (``CXIWriter.commit``
keeps a ``BatchTable``):
its id, the rows it wrote, and its outcome. So whether a batch was committed, and by whom, is
read from the files: by a writer given a batch that Ray Serve sent again, and by an ingress
settling a dead ingress's open batches. No writer ever writes another's file, so this needs no
lock; a file that cannot be read right now (its writer is mid-flush) is skipped and counted.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py

from peaknet_serve.cxi.format import (
    BATCHES_PATH,
    COMMITTED_BATCHES,
    COMMITTED_EVENTS,
    INPROGRESS_SUFFIX,
    RECOVERING_SUFFIX,
    SUFFIX,
    WRITER_ID,
    WRITING_BATCH,
    open_cxi,
)

logger = logging.getLogger(__name__)

LOOKUP_WINDOW_S = 600.0
"""Files last changed longer ago than this are not searched: Ray Serve resends a batch within
seconds, and a dead ingress is settled within a minute."""
_PATTERNS = ("*" + SUFFIX, "*" + INPROGRESS_SUFFIX, "*" + RECOVERING_SUFFIX)


@dataclass(frozen=True)
class FileBatches:
    """What one file says of its batches: committed rows and the batch being written."""

    path: Path
    writer_id: str
    records: tuple[dict[str, Any], ...]
    writing: str = ""


@dataclass(frozen=True)
class BatchRecord:
    """Where a batch stands: the committed record holding its outcome (None when no file has
    one), the writer that committed it, and the writers naming it as being written now."""

    committed: dict[str, Any] | None = None
    writer_id: str = ""
    writing: tuple[str, ...] = ()
    unreadable: tuple[str, ...] = ()


@dataclass
class BatchIndex:
    """Looks batches up in the CXI files of ``directory``; closed files are read once."""

    directory: Path
    window_s: float = LOOKUP_WINDOW_S
    _cache: dict[str, tuple[tuple[int, int], FileBatches]] = field(default_factory=dict)

    def files(self) -> Iterator[FileBatches | Path]:
        """Each recent file's batches, or its path when it cannot be read now."""
        now = time.time()
        seen: set[str] = set()
        for pattern in _PATTERNS:
            for path in self.directory.glob(pattern):
                try:
                    stat = path.stat()
                except FileNotFoundError:  # renamed meanwhile: found under its new name
                    continue
                if now - stat.st_mtime > self.window_s:
                    continue
                seen.add(path.name)
                key = (stat.st_mtime_ns, stat.st_size)
                cached = self._cache.get(path.name)
                if cached is not None and cached[0] == key:
                    yield cached[1]
                    continue
                try:
                    found = read_batches(path, known=cached[1] if cached else None)
                except (OSError, ValueError, KeyError, RuntimeError) as exc:
                    logger.debug("cannot read the batches of %s now: %s", path, exc)
                    yield path
                    continue
                self._cache[path.name] = (key, found)
                yield found
        for name in set(self._cache) - seen:
            del self._cache[name]

    def find(self, batch_id: str) -> BatchRecord:
        """Where ``batch_id`` stands in the files of the directory."""
        writing: list[str] = []
        unreadable: list[str] = []
        for found in self.files():
            if isinstance(found, Path):
                unreadable.append(found.name)
                continue
            for record in found.records:
                if record["batch"] == batch_id and "hits" in record:
                    return BatchRecord(committed=record, writer_id=found.writer_id)
            if found.writing == batch_id and not found.path.name.endswith(SUFFIX):
                writing.append(found.writer_id)
        return BatchRecord(writing=tuple(writing), unreadable=tuple(unreadable))


@dataclass
class BatchTable:
    """The batch table of the file a writer has open (``format.batch_records`` reads it): rows
    up to ``committed`` are on disk and never change; the last ones grow with the batch."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    committed: int = 0

    def row(self, batch_id: str, *, first: int) -> dict[str, Any]:
        """The uncommitted row of ``batch_id``, added (its first event ``first``) when new."""
        last = self.rows[-1] if len(self.rows) > self.committed else None
        if last is None or last["batch"] != batch_id:
            last = {"batch": batch_id, "first": first, "events": 0, "offered": 0}
            self.rows.append(last)
        return last

    def save(self, handle: h5py.File) -> None:
        """Write the rows not yet committed into ``handle``'s table."""
        table = handle[BATCHES_PATH]
        if table.shape[0] != len(self.rows):
            table.resize(len(self.rows), axis=0)
        for row in range(self.committed, len(self.rows)):
            table[row] = json.dumps(self.rows[row])

    def commit(self, handle: h5py.File, *, events: int) -> None:
        """Save, and mark every row and the file's first ``events`` events committed."""
        self.save(handle)
        handle.attrs[COMMITTED_EVENTS] = events
        handle.attrs[COMMITTED_BATCHES] = len(self.rows)
        self.committed = len(self.rows)


def read_batches(path: Path, *, known: FileBatches | None = None) -> FileBatches:
    """The committed batch table and the batch being written of the CXI file ``path``.

    ``known``: what an earlier read of the same file found; committed rows never change in an
    open file, so only rows committed since are read (a file being written is read at every
    lookup, and its table grows by a row a batch).
    """
    with open_cxi(path) as handle:
        committed = int(handle.attrs.get(COMMITTED_BATCHES, 0))
        records: tuple[dict[str, Any], ...] = ()
        if known is not None and len(known.records) <= committed:
            records = known.records
        if len(records) < committed:
            rows = handle[BATCHES_PATH].asstr()[len(records) : committed]
            records += tuple(json.loads(row) for row in rows)
        return FileBatches(
            path=path,
            writer_id=str(handle.attrs.get(WRITER_ID, "")),
            records=records,
            writing=str(handle.attrs.get(WRITING_BATCH, "")),
        )


def written_elsewhere(
    directory: Path, path: Path, batch_ids: set[str], *, writer_id: str
) -> dict[str, str]:
    """Batch id -> the closed file of a writer other than ``writer_id`` in ``directory`` that
    holds its events, for every id of ``batch_ids`` written there too (``path`` is the file
    asking; see ``peaknet_serve.cxi.recovery``)."""
    found: dict[str, str] = {}
    if not batch_ids:
        return found
    for other in BatchIndex(directory).files():
        if isinstance(other, Path) or other.path.name == path.name or other.writer_id == writer_id:
            continue
        if not other.path.name.endswith(SUFFIX):
            continue
        for record in other.records:
            if record["batch"] in batch_ids and record["events"] and not record.get(
                "duplicate_of"
            ):
                found.setdefault(record["batch"], other.path.name)
    return found
