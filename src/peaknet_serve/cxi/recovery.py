"""Finishing CXI files: a dead writer's ``.cxi.inprogress`` trimmed to what it committed, and
the events of a batch written twice kept once.

A writer replica killed mid-file leaves ``NAME.cxi.inprogress`` holding the events it
acknowledged (``peaknet_committed_events``, flushed before each acknowledgement) and perhaps
rows of a batch it never acknowledged (that batch is sent again, to another writer). A live
writer that finds such a file of a dead writer renames it ``NAME.cxi.recovering`` (a rename is
atomic on POSIX, Lustre and NFS: of writers recovering at once, one wins the file, the others
find it gone), trims every per-event dataset to the committed count, and renames it ``.cxi``.

Whether a writer is dead is asked of ``alive`` (the deployment answers from Ray's actor
table); where it cannot say, the process named in the file's ``peaknet_writer_host`` and
``peaknet_writer_pid`` is checked on this host (a zombie counts as dead), and the file of a
writer on another host is left for a writer there. A file is created as ``.cxi.creating`` and
renamed ``.inprogress`` once it names its writer, so every ``.inprogress`` file does.

A batch can be written twice: Ray Serve resends a request whose replica died before its answer
arrived, and a replica reported dead may still finish its write. A writer asked for a batch
first looks it up (``peaknet_serve.cxi.batches``); what slips through (both writing at once) is
caught when a file is finished: the rows of a batch that a closed file already holds are
dropped, and its batch-table row says ``duplicate_of``. Two files finished at the same moment
can both keep theirs; ``peaknet-serve inspect`` lists batches held by more than one file.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h5py

from peaknet_serve.cxi.batches import written_elsewhere
from peaknet_serve.cxi.format import (
    BATCHES_PATH,
    COMMITTED_BATCHES,
    COMMITTED_EVENTS,
    CREATING_SUFFIX,
    EVENTS_OFFERED,
    INPROGRESS_SUFFIX,
    ORPHANED_SUFFIX,
    RECOVERED,
    RECOVERING_SUFFIX,
    SUFFIX,
    UNREADABLE_SUFFIX,
    WRITER_HOST,
    WRITER_ID,
    WRITER_PID,
    WRITING_BATCH,
    batch_records,
    event_datasets,
    open_cxi,
    renamed,
    writer_of,
)

logger = logging.getLogger(__name__)

Liveness = Callable[[str], bool | None]
"""Writer id -> whether that writer lives; None when it cannot tell."""
STALE_CREATING_S = 60.0
"""A ``.cxi.creating`` file this old was left by a writer that died creating it (it takes
milliseconds)."""
_MOVE_ROWS = 16
"""Rows moved at a time when rows are dropped (a row can be a whole detector frame)."""


@dataclass
class Recovery:
    """What recovery did: files renamed with their events, files set aside."""

    recovered: dict[str, int] = field(default_factory=dict)
    orphaned: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)


def process_alive(host: str, pid: int) -> bool | None:
    """Whether process ``pid`` of ``host`` runs; None for another host. A zombie is dead."""
    if host != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def recover_orphans(
    directory: Path, *, file_prefix: str, own_id: str, alive: Liveness | None = None
) -> Recovery:
    """Finish the ``.cxi.inprogress`` files of dead writers in ``directory`` (see the module
    docstring). Files named for ``own_id`` (the caller) are finished only when an earlier
    process of that id left them: their pid is checked."""
    result = Recovery()
    if not directory.is_dir():
        return result
    for creating in directory.glob("*" + CREATING_SUFFIX):
        try:
            if time.time() - creating.stat().st_mtime > STALE_CREATING_S:
                creating.unlink()  # its writer died creating it: it never held a row
        except FileNotFoundError:
            continue
    for inprogress in sorted(directory.glob("*" + INPROGRESS_SUFFIX)):
        writer_id = writer_of(inprogress.name, file_prefix)
        if writer_id is None:
            continue
        own = writer_id == own_id
        verdict = alive(writer_id) if alive is not None and not own else None
        if verdict is None:
            verdict = _owner_alive(inprogress, writer_id)
        if verdict is not False:
            continue
        recovering = renamed(inprogress, RECOVERING_SUFFIX)
        try:
            os.rename(inprogress, recovering)
        except FileNotFoundError:  # another writer won it
            continue
        finish_file(recovering, result)
    return result


def _owner_alive(path: Path, writer_id: str) -> bool | None:
    """Whether the process that wrote ``path`` runs, from its attributes, or when HDF5 cannot
    open it (killed mid-write), from those of the newest other file of ``writer_id``."""
    others = sorted(
        (p for p in path.parent.glob(f"*-{writer_id}-*.cxi*") if p != path),
        key=lambda p: p.name,
        reverse=True,
    )
    for candidate in (path, *others):
        try:
            with open_cxi(candidate) as handle:
                host, pid = str(handle.attrs[WRITER_HOST]), int(handle.attrs[WRITER_PID])
        except (OSError, KeyError, ValueError, RuntimeError):
            continue
        return process_alive(host, pid)
    return None


def finish_file(path: Path, result: Recovery | None = None) -> Recovery:
    """Trim ``path`` (``.cxi.inprogress`` or ``.cxi.recovering``) to its committed events,
    drop batches a closed file holds already, and rename it ``.cxi``. A file with nothing
    committed becomes ``.cxi.orphaned``, one HDF5 cannot open ``.cxi.unreadable``: both are
    kept for a person and logged, never deleted."""
    result = result if result is not None else Recovery()
    try:
        with open_cxi(path, "r+") as handle:
            events = int(handle.attrs.get(COMMITTED_EVENTS, 0))
            batches = int(handle.attrs.get(COMMITTED_BATCHES, 0))
            if events or batches:
                _trim(handle, events, batches)
                events = drop_duplicates(handle, path)
                handle.attrs[RECOVERED] = True
                handle.attrs[WRITING_BATCH] = ""
    except (OSError, RuntimeError, KeyError, ValueError) as exc:
        kept = _set_aside(path, UNREADABLE_SUFFIX, result.unreadable)
        logger.error(
            "%s of a dead writer cannot be recovered (%s): its committed events are only in the "
            "damaged file %s",
            path,
            exc,
            kept,
        )
        return result
    if not (events or batches):
        kept = _set_aside(path, ORPHANED_SUFFIX, result.orphaned)
        logger.error(
            "%s: its writer died and committed nothing in it; kept as %s (any event in it was "
            "retried elsewhere)",
            path,
            kept,
        )
        return result
    final = renamed(path, SUFFIX)
    os.replace(path, final)
    result.recovered[final.name] = events
    logger.warning("recovered %s of a dead writer: %d committed events", final, events)
    return result


def _set_aside(path: Path, suffix: str, names: list[str]) -> Path:
    """Rename ``path`` with ``suffix``, for a person to look at; its name goes to ``names``."""
    kept = renamed(path, suffix)
    os.replace(path, kept)
    names.append(kept.name)
    return kept


def _trim(handle: h5py.File, events: int, batches: int) -> None:
    for dataset in event_datasets(handle):
        if dataset.shape[0] > events:
            dataset.resize(events, axis=0)
    if BATCHES_PATH in handle and handle[BATCHES_PATH].shape[0] > batches:
        handle[BATCHES_PATH].resize(batches, axis=0)


def drop_duplicates(handle: h5py.File, path: Path) -> int:
    """Drop the rows of every batch of ``handle`` (the file at ``path``, being finished) that a
    closed file of another writer holds already; returns the events left. Call it on a file
    whose every row is committed (a batch split over two files of one writer is no duplicate:
    one writer never writes a batch twice, it looks its own files up first)."""
    records = batch_records(handle)
    events = int(handle.attrs.get(COMMITTED_EVENTS, 0))
    ids = {r["batch"] for r in records if r["events"] and not r.get("duplicate_of")}
    writer_id = str(handle.attrs.get(WRITER_ID, ""))
    elsewhere = written_elsewhere(path.parent, path, ids, writer_id=writer_id)
    if not elsewhere:
        return events
    datasets = event_datasets(handle)
    table = handle[BATCHES_PATH]
    for row in reversed(range(len(records))):  # last first: earlier rows keep their place
        record = records[row]
        other = elsewhere.get(record["batch"])
        if other is None or not record["events"]:
            continue
        first, count = int(record["first"]), int(record["events"])
        for dataset in datasets:
            _drop_rows(dataset, first, count, events)
        events -= count
        for later in records[row + 1 :]:
            later["first"] -= count
        offered = int(handle.attrs.get(EVENTS_OFFERED, 0)) - int(record["offered"])
        handle.attrs[EVENTS_OFFERED] = max(offered, events)
        record.update(events=0, offered=0, duplicate_of=other)
        logger.warning(
            "%s: batch %s was written by %s too; its %d events here are dropped",
            path.name,
            record["batch"],
            other,
            count,
        )
    for row, record in enumerate(records):
        table[row] = json.dumps(record)
    handle.attrs[COMMITTED_EVENTS] = events
    return events


def _drop_rows(dataset: h5py.Dataset, first: int, count: int, total: int) -> None:
    """Remove rows ``first:first+count`` of the ``total`` rows of ``dataset``, in place."""
    for start in range(first + count, total, _MOVE_ROWS):
        stop = min(start + _MOVE_ROWS, total)
        dataset[start - count : stop - count] = dataset[start:stop]
    dataset.resize(total - count, axis=0)
