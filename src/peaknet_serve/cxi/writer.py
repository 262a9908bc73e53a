"""Appends events to CXI files that CrystFEL (``indexamajig --peaks=cxi``) and OM read.

The layout and names are ``peaknet_serve.cxi.format``'s. Each event is written with the id of
its batch; ``commit`` records a batch's outcome in the open file and makes the events so far
the committed ones, flushed, before the batch is acknowledged (what recovery trims a dead
writer's file to). The file is ``NAME.cxi.inprogress`` until it closes, then renamed to
``NAME.cxi``, so a reader never sees a half-written ``.cxi``. One writer per process; not
thread-safe.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np

from peaknet_serve.cxi.batches import BatchTable
from peaknet_serve.cxi.config import NAME_PATTERN, CXIConfig
from peaknet_serve.cxi.format import (
    CREATING_SUFFIX,
    DATA_PATH,
    EVENT_BATCH_PATH,
    EVENTS_OFFERED,
    INPROGRESS_SUFFIX,
    RESULT_PATH,
    SUFFIX,
    WRITING_BATCH,
    file_stem,
    renamed,
)
from peaknet_serve.cxi.layout import PanelLayout
from peaknet_serve.cxi.metadata import FileDatasets, MetadataFields
from peaknet_serve.cxi.new_file import create_datasets, layout_for
from peaknet_serve.cxi.peak_rows import write_peak_rows
from peaknet_serve.cxi.recovery import drop_duplicates
from peaknet_serve.cxi.storage import as_writer_error, creation_failure
from peaknet_serve.errors import WriterError
from peaknet_serve.peaks.find import Peaks

logger = logging.getLogger(__name__)


class CXIWriter:
    """Writes events to a series of CXI files, one open at a time.

    Args:
        config: the ``output`` section (defaults if None).
        writer_id: part of every file name, unique among writers sharing ``output_dir``.
    """

    def __init__(self, config: CXIConfig | None = None, *, writer_id: str) -> None:
        if not re.match(NAME_PATTERN, writer_id):
            raise WriterError(
                f"writer_id {writer_id!r} must be letters, digits, '_', '.' or '-' (it is part "
                "of the file names)"
            )
        self._config = config or CXIConfig()
        self._writer_id = writer_id
        self._seq = 0
        self._files: list[Path] = []
        self._events = 0
        self._offered = 0
        self._file: h5py.File | None = None
        self._inprogress: Path | None = None
        self._n = 0
        self._frame_shape: tuple[int, ...] | None = None
        self._layout: PanelLayout | None = None
        self._datasets: dict[str, h5py.Dataset] = {}
        self._table = BatchTable()
        self._batch_id = ""
        self._metadata = MetadataFields(self._config)

    @property
    def files_written(self) -> tuple[Path, ...]:
        """The closed (renamed) ``.cxi`` files, oldest first."""
        return tuple(self._files)

    @property
    def events_written(self) -> int:
        """Events written over all files, the open one included."""
        return self._events

    @property
    def current_path(self) -> Path | None:
        """The ``.cxi.inprogress`` file being written, if any."""
        return self._inprogress

    @property
    def current_events(self) -> int:
        """Events in the open file (0 when none is open)."""
        return self._n

    def __enter__(self) -> CXIWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def write(
        self, image: np.ndarray, peaks: Peaks, metadata: Mapping[str, Any], *, hit: bool
    ) -> bool:
        """Offer one event; returns whether it was written (see ``write_mode``).

        Args:
            image: the frame, (H, W) or a (P, H, W) panel stack.
            peaks: its peaks, positions per panel.
            metadata: per-event scalars (or small arrays), written under ``/LCLS/{key}``.
            hit: the hit decision.
        """
        batch_metadata = {key: [value] for key, value in metadata.items()}
        return self.write_batch(np.asarray(image)[None], [peaks], batch_metadata, [hit]) == 1

    def write_batch(
        self,
        images: np.ndarray,
        peaks_list: Sequence[Peaks],
        metadata: Mapping[str, Any],
        hits: Sequence[bool] | np.ndarray,
        *,
        batch_id: str = "",
    ) -> int:
        """Offer a batch of events; returns how many were written.

        Args:
            images: (B, H, W) frames or (B, P, H, W) panel stacks.
            peaks_list: B ``Peaks``.
            metadata: ``{key: array-like of length B}``.
            hits: B hit decisions.
            batch_id: written with each event and in the batch table, so that a batch written
                twice can be found; named as being written (``peaknet_writing_batch``) until
                ``commit``. A batch with an id is never split over two files: when it does not
                fit in the open file, that file is finished first, and one larger than
                ``events_per_file`` gets a file of its own; so a file is only ever finished
                with every row of it acknowledged.
        """
        images = np.asarray(images)
        hits = np.asarray(hits, dtype=bool)
        batch = len(hits)
        if len(images) != batch or len(peaks_list) != batch:
            raise ValueError(
                f"{len(images)} images, {len(peaks_list)} peak lists and {batch} hit flags: "
                "give one of each per event"
            )
        frame_shape = tuple(images.shape[1:])
        arrays = self._metadata.arrays(metadata, batch, frame_shape)
        selected = np.arange(batch) if self._config.write_mode == "all" else np.flatnonzero(hits)
        if len(frame_shape) not in (2, 3):
            raise ValueError(f"images {images.shape}: expected (B, H, W) or (B, P, H, W)")
        if selected.size and self._file is not None and frame_shape != self._frame_shape:
            logger.warning(
                "frame shape changed from %s to %s: starting a new file",
                self._frame_shape,
                frame_shape,
            )
            self._close_file()
        self._batch_id = batch_id
        room = self._config.events_per_file - self._n
        if batch_id and self._file is not None and 0 < room < selected.size:
            self._close_file()  # every row of it is committed: the batch goes to a new file
        attributed = 0
        start = 0
        while start < selected.size:
            if self._file is None:
                self._open(frame_shape)
            room = self._config.events_per_file - self._n
            part = selected[start:] if batch_id else selected[start : start + room]
            offered = int(part[-1]) + 1 - attributed
            self._offered += offered
            attributed = int(part[-1]) + 1
            self._record(batch_id)["offered"] += offered
            self._append(images, peaks_list, arrays, hits, part)
            start += part.size
            if self._n >= self._config.events_per_file and not batch_id:
                self._close_file()  # with a batch id: at commit
        self._offered += batch - attributed
        return int(selected.size)

    def flush(self) -> None:
        """Push what was written to disk (the file stays ``.inprogress``)."""
        if self._file is not None:
            with as_writer_error(self._inprogress):
                self._table.save(self._file)
                self._file.attrs[EVENTS_OFFERED] = self._offered
                self._file.flush()

    def begin(self, batch_id: str) -> None:
        """Name ``batch_id`` as being written in the open file, flushed (see ``WRITING_BATCH``)."""
        self._batch_id = batch_id
        if self._file is not None:
            with as_writer_error(self._inprogress):
                self._file.attrs[WRITING_BATCH] = batch_id
                self._file.flush()

    def commit(self, batch_id: str, outcome: Mapping[str, Any], frame_shape: Sequence[int]) -> None:
        """Record ``batch_id``'s ``outcome`` (hits, non_hits, failed) in the open file and make
        every event in it committed, flushed to disk: call it before acknowledging the batch.

        A batch that wrote no event (all non-hits) opens a file for ``frame_shape`` frames when
        none is open, so that every committed batch is on record. A file the batch filled up
        is finished (renamed ``.cxi``) after the commit. Raises ``WriterError`` when the file
        cannot be written.
        """
        if self._file is None:
            self._open(tuple(frame_shape))
        self._record(batch_id).update(outcome)
        with as_writer_error(self._inprogress):
            self._mark_committed()
            self._file.attrs[WRITING_BATCH] = ""
            self._file.flush()
        self._batch_id = ""
        if self._n >= self._config.events_per_file:
            self._close_file()

    def abandon(self) -> Path | None:
        """Close the open file as it is, uncommitted rows and all, after a failed write; returns
        its path (still ``.inprogress``) for ``peaknet_serve.cxi.recovery.finish_file``, which
        trims it to what was committed. Never raises."""
        path, handle = self._inprogress, self._file
        self._file = self._inprogress = None
        self._datasets = {}
        self._n = 0
        if handle is not None:
            try:
                handle.close()
            except (OSError, RuntimeError) as exc:
                logger.error("closing %s after a failed write failed too: %s", path, exc)
        return path

    def _record(self, batch_id: str) -> dict[str, Any]:
        return self._table.row(batch_id, first=self._n)

    def _mark_committed(self) -> None:
        """Every event and batch row so far is committed (the attributes recovery trims to)."""
        assert self._file is not None
        self._file.attrs[EVENTS_OFFERED] = self._offered
        self._table.commit(self._file, events=self._n)

    def close(self) -> None:
        """Close the open file, if any, and rename it to ``.cxi``; a file with no event (only
        the record of non-hit batches) is removed instead. Safe to call twice."""
        if self._file is not None and self._n == 0:
            self._discard_new_file()
        elif self._file is not None:
            self._close_file()

    def _open(self, frame_shape: tuple[int, ...]) -> None:
        config = self._config
        self._layout = layout_for(config, frame_shape)
        self._frame_shape = frame_shape
        directory = Path(config.output_dir)
        with as_writer_error(directory):
            directory.mkdir(parents=True, exist_ok=True)
        while True:
            stem = file_stem(config.file_prefix, self._writer_id, self._seq)
            final = directory / (stem + SUFFIX)
            inprogress = directory / (stem + INPROGRESS_SUFFIX)
            creating = directory / (stem + CREATING_SUFFIX)
            if not any(path.exists() for path in (final, inprogress, creating)):
                break
            self._seq += 1
        self._n = 0
        self._table = BatchTable()
        # Made under a name of its own, then renamed: every .inprogress file names its writer.
        with as_writer_error(creating):
            # locking=False: no flock needed on the output file system
            self._file = h5py.File(creating, "w", locking=False)
            self._inprogress = creating
            try:
                self._datasets = create_datasets(
                    self._file,
                    config=config,
                    layout=self._layout,
                    frame_shape=frame_shape,
                    metadata=self._metadata,
                    writer_id=self._writer_id,
                    batch_id=self._batch_id,
                )
                self._file.flush()
            except (ValueError, RuntimeError, OSError) as exc:
                self._discard_new_file()
                raise WriterError(creation_failure(creating, config, exc)) from exc
        with as_writer_error(inprogress):
            os.rename(creating, inprogress)
            self._inprogress = inprogress
        logger.info("writing %s", inprogress)

    def _opened(self) -> FileDatasets:
        assert self._file is not None
        return FileDatasets(self._file, self._datasets, self._n)

    def _discard_new_file(self) -> None:
        """Drop a file that holds no event (its datasets could not be created, or it only
        recorded batches of non-hits)."""
        assert self._file is not None and self._inprogress is not None
        with as_writer_error(self._inprogress):
            self._file.close()
        self._inprogress.unlink(missing_ok=True)
        self._file = None
        self._inprogress = None
        self._datasets = {}

    def _append(
        self,
        images: np.ndarray,
        peaks_list: Sequence[Peaks],
        metadata: Mapping[str, np.ndarray],
        hits: np.ndarray,
        part: np.ndarray,
    ) -> None:
        layout = self._layout
        assert layout is not None
        start, stop = self._n, self._n + part.size
        with as_writer_error(self._inprogress):
            for dataset in self._datasets.values():
                dataset.resize(stop, axis=0)
            data = self._datasets.get(DATA_PATH)
            if data is not None:
                for row, event in enumerate(part, start):
                    frame = images[event]
                    stored = layout.assemble(frame[None] if frame.ndim == 3 else frame[None, None])
                    data.write_direct(stored, dest_sel=np.s_[row : row + 1])
            write_peak_rows(
                self._datasets, layout, self._config.max_peaks, peaks_list, part, start, stop
            )
            self._datasets[f"{RESULT_PATH}/hit"][start:stop] = hits[part].astype(np.uint8)
            self._datasets[EVENT_BATCH_PATH][start:stop] = self._batch_id
            self._record(self._batch_id)["events"] += part.size
            for key, values in metadata.items():
                self._metadata.write(self._opened(), key, values, part, start, stop)
            self._metadata.fill_missing(self._datasets, metadata, start, stop)
        self._n = stop
        self._events += part.size

    def _close_file(self) -> None:
        handle, inprogress = self._file, self._inprogress
        assert handle is not None and inprogress is not None
        final = renamed(inprogress, SUFFIX)
        with as_writer_error(inprogress):
            try:
                for dataset in self._datasets.values():
                    if dataset.shape[0] != self._n:
                        dataset.resize(self._n, axis=0)
                self._mark_committed()  # a closed file is final: what it holds is kept
                handle.attrs[WRITING_BATCH] = ""
                drop_duplicates(handle, inprogress)
            finally:
                handle.close()
                self._file = None
                self._inprogress = None
                self._datasets = {}
            os.replace(inprogress, final)
        logger.info("closed %s: %d events of %d offered", final, self._n, self._offered)
        self._files.append(final)
        self._offered = 0
        self._n = 0
        self._seq += 1
