"""Which events of a writer's open CXI file are committed, so a killed writer leaves no doubt.

A writer replica killed mid-file leaves ``NAME.cxi.inprogress`` behind, holding the events it
acknowledged and perhaps rows of a batch it never acknowledged (that batch is retried
elsewhere). So each writer keeps a commit log, ``.peaknet-writer-{id}.commits.json`` in the
output directory, replaced atomically after every batch it acknowledges: the open file, its
committed event count, and the last batches (id -> outcome). Another writer recovers the
orphan: it trims every dataset to the committed count and renames the file ``.cxi``.

A batch can reach a second writer after the first one wrote it: Ray Serve resends a request
whose replica died before its answer arrived, and Ray may report a replica dead while its
process still finishes a write. So a writer claims a batch before writing it
(``.peaknet-writer-{id}.claim`` holds its id), and first looks in every log and claim: a
committed batch is answered from the log, one claimed by a live writer is waited for. Looking
and claiming happen under ``.peaknet-commits.lock``, so two writers never both claim one batch.

A live writer holds an exclusive ``flock`` on ``.peaknet-writer-{id}.lock``; the kernel frees
it when the process goes, however it was killed, which is how orphans are told apart. One
writer at a time recovers orphans, under ``.peaknet-recovery.lock``.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py

from peaknet_serve.errors import WriterError
from peaknet_serve.service.outcome import BatchOutcome

logger = logging.getLogger(__name__)

INPROGRESS_SUFFIX = ".cxi.inprogress"
KEEP_BATCHES = 256
"""Batch ids remembered per writer: retries come within seconds, so this is plenty."""
KEEP_DEAD_LOGS_S = 600.0
"""How long the log of a dead writer whose files are finished is kept for resent batches."""
LOG_SUFFIX = ".commits.json"
CLAIM_SUFFIX = ".claim"
COMMITS_LOCK = ".peaknet-commits.lock"
RECOVERY_LOCK = ".peaknet-recovery.lock"


def lock_path(directory: Path, writer_id: str) -> Path:
    return directory / f".peaknet-writer-{writer_id}.lock"


def log_path(directory: Path, writer_id: str) -> Path:
    return directory / f".peaknet-writer-{writer_id}{LOG_SUFFIX}"


def claim_path(directory: Path, writer_id: str) -> Path:
    return directory / f".peaknet-writer-{writer_id}{CLAIM_SUFFIX}"


class WriterLock:
    """The exclusive lock a live writer holds on its lock file for its whole life."""

    def __init__(self, directory: Path, writer_id: str) -> None:
        self.path = lock_path(directory, writer_id)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock (creating the directory); ``WriterError`` says why it cannot be had.

        Taken again when the lock file went away (the directory was moved or removed under
        the writer): other writers look for it at its path to tell that this writer lives.
        """
        if self._fd is not None:
            if self._still_in_place(self._fd):
                return
            os.close(self._fd)
            self._fd = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise WriterError(f"cannot create the writer lock {self.path}: {exc}") from exc
        try:
            _flock(fd, self.path, wait=False)
        except BlockingIOError:
            os.close(fd)
            raise WriterError(
                f"writer lock {self.path} is held by another process: writer ids clash"
            ) from None
        except WriterError:
            os.close(fd)
            raise
        self._fd = fd

    def _still_in_place(self, fd: int) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def release(self) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = None


def _flock(fd: int, path: Path, *, wait: bool) -> None:
    """``flock`` ``fd`` exclusively; ``BlockingIOError`` when held elsewhere and not ``wait``."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise
    except OSError as exc:  # ENOSYS, EOPNOTSUPP, ENOLCK: the file system has no flock
        raise WriterError(
            f"cannot lock {path}: {exc}. Writers need flock in the output directory to tell "
            "live writers from dead ones: use a local disk, NFSv4, or Lustre mounted with "
            "-o flock (not localflock)"
        ) from exc


@contextmanager
def directory_lock(path: Path, *, wait: bool) -> Iterator[bool]:
    """Hold an exclusive ``flock`` on ``path`` for the block; yields False when ``wait`` is off
    and another process holds it. Raises ``OSError`` when the lock file cannot be created,
    ``WriterError`` when the file system cannot lock."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            _flock(fd, path, wait=wait)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def writer_alive(directory: Path, writer_id: str) -> bool:
    """Whether the writer ``writer_id`` holds its lock, that is, its process still runs."""
    path = lock_path(directory, writer_id)
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        _flock(fd, path, wait=False)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _writer_files(directory: Path, suffix: str) -> Iterator[tuple[str, Path]]:
    """``(writer id, path)`` of every ``.peaknet-writer-{id}{suffix}`` file in ``directory``."""
    for path in directory.glob(f".peaknet-writer-*{suffix}"):
        yield path.name.removeprefix(".peaknet-writer-").removesuffix(suffix), path


@dataclass
class CommitLog:
    """One writer's commit log (see the module docstring); ``record`` makes it durable."""

    directory: Path
    writer_id: str
    current: str | None = None
    events: int = 0
    batches: OrderedDict[str, dict[str, Any]] = field(default_factory=OrderedDict)

    def claim(self, batch_id: str) -> None:
        """Note that ``batch_id`` is being written (under the commits lock, see ``find_batch``)."""
        claim_path(self.directory, self.writer_id).write_text(batch_id)

    def unclaim(self) -> None:
        """Note that no batch is being written (the claimed one went back to the caller)."""
        claim_path(self.directory, self.writer_id).unlink(missing_ok=True)

    def record(self, batch_id: str, outcome: BatchOutcome, *, current: Path | None, events: int):
        """Note ``batch_id`` as committed with ``events`` in the open file ``current``."""
        self.current = current.name if current is not None else None
        self.events = events if current is not None else 0
        self.batches[batch_id] = outcome.to_record()
        while len(self.batches) > KEEP_BATCHES:
            self.batches.popitem(last=False)
        self._save()
        self.unclaim()

    def _save(self) -> None:
        path = log_path(self.directory, self.writer_id)
        tmp = path.with_name(path.name + ".tmp")
        body = {
            "writer_id": self.writer_id,
            "current": self.current,
            "events": self.events,
            "batches": self.batches,
        }
        tmp.write_text(json.dumps(body))
        os.replace(tmp, path)

    def remove(self) -> None:
        log_path(self.directory, self.writer_id).unlink(missing_ok=True)
        self.unclaim()


@dataclass(frozen=True)
class BatchRecord:
    """What the commit logs say of one batch: its committed outcome, and who claims it."""

    committed: BatchOutcome | None
    claimed_by: tuple[str, ...]


def find_batch(directory: Path, batch_id: str) -> BatchRecord:
    """Whether any writer (live or dead) committed ``batch_id``, and which writers claim it.

    Call it under the commits lock when a claim depends on the answer.
    """
    quoted = json.dumps(batch_id)
    for writer_id, path in _writer_files(directory, LOG_SUFFIX):
        record = _read_log(path, naming=quoted)
        if record is not None and batch_id in record.get("batches", {}):
            outcome = BatchOutcome.from_record(record["batches"][batch_id], writer_id=writer_id)
            return BatchRecord(committed=outcome, claimed_by=())
    claimed_by = []
    for writer_id, path in _writer_files(directory, CLAIM_SUFFIX):
        try:
            if path.read_text() == batch_id:
                claimed_by.append(writer_id)
        except FileNotFoundError:  # its writer finished the batch meanwhile
            continue
    return BatchRecord(committed=None, claimed_by=tuple(claimed_by))


def _read_log(path: Path, *, naming: str | None = None) -> dict[str, Any] | None:
    """The log at ``path``; None when it is gone, unreadable, or does not hold ``naming``
    (a cheap text test that spares parsing the logs a lookup does not need)."""
    try:
        text = path.read_text()
        if naming is not None and naming not in text:
            return None
        return json.loads(text)
    except FileNotFoundError:  # its writer closed cleanly, or it was pruned, meanwhile
        return None
    except (OSError, ValueError) as exc:
        logger.warning("unreadable commit log %s: %s", path, exc)
        return None


@dataclass
class Recovery:
    """What ``recover_orphans`` did: files renamed with their events, files set aside."""

    recovered: dict[str, int] = field(default_factory=dict)
    orphaned: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)


def recover_orphans(directory: Path, *, file_prefix: str) -> Recovery:
    """Finish the ``.cxi.inprogress`` files of writers that died (their lock is free).

    A file is trimmed to the events its writer committed and renamed ``.cxi``. A file with no
    commit on record is renamed ``.cxi.orphaned``, one HDF5 cannot open any more
    ``.cxi.unreadable``: both are kept for a person and logged, never deleted. Returns at once,
    doing nothing, while another writer recovers (two would open one file at a time).
    """
    if not directory.is_dir():
        return Recovery()
    with directory_lock(directory / RECOVERY_LOCK, wait=False) as held:
        return _recover_orphans(directory, file_prefix) if held else Recovery()


def _recover_orphans(directory: Path, file_prefix: str) -> Recovery:
    result = Recovery()
    committed: dict[str, int] = {}
    old_logs: list[tuple[Path, str | None]] = []
    dead: set[str] = set()
    for writer_id, path in _writer_files(directory, LOG_SUFFIX):
        if writer_alive(directory, writer_id):
            continue
        record = _read_log(path)
        if record and record.get("current"):
            committed[record["current"]] = int(record["events"])
        dead.add(writer_id)
        if _age_s(path) > KEEP_DEAD_LOGS_S:
            old_logs.append((path, (record or {}).get("current")))
    for inprogress in sorted(directory.glob("*" + INPROGRESS_SUFFIX)):
        writer_id = _writer_of(inprogress.name, file_prefix)
        if writer_id is None or writer_alive(directory, writer_id):
            continue
        _finish(inprogress, committed.get(inprogress.name), result)
    for writer_id, _ in _writer_files(directory, CLAIM_SUFFIX):
        if not writer_alive(directory, writer_id):
            dead.add(writer_id)  # its claim died with it
    for writer_id in dead:
        lock_path(directory, writer_id).unlink(missing_ok=True)
        claim_path(directory, writer_id).unlink(missing_ok=True)
    for path, current in old_logs:
        if not current or not (directory / current).exists():
            path.unlink(missing_ok=True)  # its files are finished; resends came long ago
    return result


def _age_s(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _writer_of(name: str, prefix: str) -> str | None:
    stem = name.removesuffix(INPROGRESS_SUFFIX)
    if not stem.startswith(prefix + "-") or "-" not in stem[len(prefix) + 1 :]:
        return None
    return stem[len(prefix) + 1 :].rsplit("-", 1)[0]


def finish_file(inprogress: Path, events: int) -> Recovery:
    """Trim one ``.cxi.inprogress`` to ``events`` and rename it (see ``recover_orphans``)."""
    result = Recovery()
    _finish(inprogress, events, result)
    return result


def _finish(inprogress: Path, events: int | None, result: Recovery) -> None:
    if not events:
        orphaned = inprogress.with_name(
            inprogress.name.removesuffix(INPROGRESS_SUFFIX) + ".cxi.orphaned"
        )
        os.replace(inprogress, orphaned)
        result.orphaned.append(orphaned.name)
        logger.error(
            "%s: its writer died and no commit of it is on record; kept as %s (any event in it "
            "was either retried elsewhere or is counted in the ledger of a run without logs)",
            inprogress,
            orphaned,
        )
        return
    final = inprogress.with_name(inprogress.name.removesuffix(INPROGRESS_SUFFIX) + ".cxi")
    try:
        with h5py.File(inprogress, "r+") as handle:
            _trim(handle, events)
            handle.attrs["peaknet_recovered"] = True
    except (OSError, RuntimeError, KeyError) as exc:
        unreadable = inprogress.with_name(final.name + ".unreadable")
        os.replace(inprogress, unreadable)
        result.unreadable.append(unreadable.name)
        logger.error(
            "%s of a dead writer cannot be recovered (%s): %d committed events are only in the "
            "damaged file %s",
            inprogress,
            exc,
            events,
            unreadable,
        )
        return
    os.replace(inprogress, final)
    result.recovered[final.name] = events
    logger.warning("recovered %s of a dead writer: %d committed events", final, events)


def _trim(handle: h5py.File, events: int) -> None:
    datasets: list[h5py.Dataset] = []
    handle.visititems(
        lambda _, obj: (
            datasets.append(obj)
            if isinstance(obj, h5py.Dataset) and obj.maxshape and obj.maxshape[0] is None
            else None
        )
    )
    for dataset in datasets:
        if dataset.shape[0] > events:
            dataset.resize(events, axis=0)
