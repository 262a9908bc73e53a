"""The CXI files peaknet-serve writes, in one place: dataset and attribute names, file names,
and a reader for closed and in-progress files (``inspect``, ``geom``, ``evaluate``, recovery).

Layout (per file, N events; every per-event dataset resizable along axis 0):

- ``/entry_1/data_1/data`` (N, rows, cols) float32, one frame per chunk (not in "peaks" mode)
- ``/entry_1/result_1/nPeaks`` (N,) int32 and ``peak{XPosRaw,YPosRaw,TotalIntensity,NPixels,
  MaximumValue,SNR}`` (N, max_peaks) float32, unused slots 0 (CrystFEL's ``--peaks=cxi``)
- ``/entry_1/result_1/hit`` (N,) uint8, the hit decision (all 1 unless write_mode is "all")
- ``/LCLS/photon_energy_eV`` (N,) float64 and ``/LCLS/{key}`` for every metadata field;
  ``/LCLS/timestamp`` (N,) uint64 ``(sec << 32) | ns`` and ``/LCLS/timestamp_original`` (as
  sent) say their convention in attributes (``TIMESTAMP_ATTRS``)
- ``/entry_1/peaknet/event_batch`` (N,) str: the id of the batch each event came in
- ``/entry_1/peaknet/batches`` (M,) str: one JSON record per batch with a part in the file (see
  ``batch_records``); only its first ``peaknet_committed_batches`` rows are committed
- root attributes ``peaknet_*``: writer id, host and pid, write mode, events offered, panel
  layout, source geometry text, and the commit (``peaknet_committed_events``: events the writer
  acknowledged, written and flushed before the acknowledgement)

The file is ``NAME.cxi.inprogress`` until it is finished, then ``NAME.cxi``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401  (registers the filters a file may use)
import numpy as np

from peaknet_serve.peaks.find import Peaks

DATA_PATH = "/entry_1/data_1/data"
RESULT_PATH = "/entry_1/result_1"
N_PEAKS_PATH = f"{RESULT_PATH}/nPeaks"
HIT_PATH = f"{RESULT_PATH}/hit"
METADATA_GROUP = "/LCLS"
PHOTON_ENERGY_KEY = "photon_energy_eV"
CLEN_KEY = "detector_1/EncoderValue"
"""Where ``output.clen_field`` is stored under ``/LCLS`` (Cheetah's place; ``units`` attribute)."""
TIMESTAMP_KEY = "timestamp"
TIMESTAMP_ORIGINAL_KEY = "timestamp_original"
#: ``/LCLS`` dataset name -> its attributes: the timestamp convention (``wire.timestamps``).
TIMESTAMP_ATTRS = {
    TIMESTAMP_KEY: {
        "convention": "(sec << 32) | ns",
        "description": (
            "uint64 event time, psana's packing: seconds in the upper 32 bits, nanoseconds in "
            "the lower 32. Converted from what LCLStreamer sent (decode.timestamp_format): "
            "int64 nanoseconds and psana1 '<sec>.<ns>' strings (ns an integer count) exactly, "
            "float64 seconds or psana2's packed value cast to float64 to what float64 holds; 0 "
            "where unreadable. Seconds count from the pusher's epoch (psana2: 1990-01-01 UTC). "
            "The value as sent is in timestamp_original when it was not already packed."
        ),
    },
    TIMESTAMP_ORIGINAL_KEY: {
        "convention": "as sent",
        "description": (
            "the timestamp as LCLStreamer sent it (int64 nanoseconds, float64 seconds or a "
            "psana1 '<sec>.<ns>' string); timestamp holds it as (sec << 32) | ns."
        ),
    },
}
#: CXI peak dataset name -> Peaks attribute (positions handled apart: they move with the layout).
PEAK_FIELDS = {
    "peakXPosRaw": "x",
    "peakYPosRaw": "y",
    "peakTotalIntensity": "total_intensity",
    "peakNPixels": "n_pixels",
    "peakMaximumValue": "max_value",
    "peakSNR": "snr",
}
SERVICE_GROUP = "/entry_1/peaknet"
EVENT_BATCH_PATH = f"{SERVICE_GROUP}/event_batch"
BATCHES_PATH = f"{SERVICE_GROUP}/batches"

WRITER_ID = "peaknet_writer_id"
WRITER_HOST = "peaknet_writer_host"
WRITER_PID = "peaknet_writer_pid"
EVENTS_OFFERED = "peaknet_events_offered"
COMMITTED_EVENTS = "peaknet_committed_events"
COMMITTED_BATCHES = "peaknet_committed_batches"
WRITING_BATCH = "peaknet_writing_batch"
"""The batch the writer is writing now ("" between batches): a dead ingress's batch named here
is settled later, once its writer committed it or died."""
RECOVERED = "peaknet_recovered"
SERVICE_VERSION = "peaknet_serve_version"
WRITE_MODE = "peaknet_write_mode"
FRAME_SHAPE = "peaknet_frame_shape"
"""The frame shape as sent: (H, W) or (P, H, W)."""
PANEL_SHAPE = "peaknet_panel_shape"
STORED_SHAPE = "peaknet_stored_shape"
"""(rows, cols) of one stored frame: the panels laid out in one 2-D image."""
PANEL_OFFSETS = "peaknet_panel_offsets"
"""(P, 2) int64: each panel's (ss, fs) corner in the stored frame."""
GEOMETRY = "peaknet_geometry"
"""The text of ``output.geometry_file`` (absent without one)."""
GEOMETRY_PATH = "peaknet_geometry_path"

SUFFIX = ".cxi"
INPROGRESS_SUFFIX = ".cxi.inprogress"
CREATING_SUFFIX = ".cxi.creating"
"""A file being created (for milliseconds), before it names its writer and becomes
``.inprogress``; one left behind held no row and is removed by recovery."""
RECOVERING_SUFFIX = ".cxi.recovering"
ORPHANED_SUFFIX = ".cxi.orphaned"
UNREADABLE_SUFFIX = ".cxi.unreadable"


def file_stem(prefix: str, writer_id: str, seq: int) -> str:
    """``{prefix}-{writer_id}-{seq:05d}``: one writer's files, numbered in order."""
    return f"{prefix}-{writer_id}-{seq:05d}"


def renamed(path: Path, suffix: str) -> Path:
    """``path`` (any of this module's suffixes) with ``suffix`` in place of its own."""
    for old in (
        INPROGRESS_SUFFIX,
        CREATING_SUFFIX,
        RECOVERING_SUFFIX,
        ORPHANED_SUFFIX,
        UNREADABLE_SUFFIX,
        SUFFIX,
    ):
        if path.name.endswith(old):
            return path.with_name(path.name.removesuffix(old) + suffix)
    raise ValueError(f"{path} is not a CXI file name")


def writer_of(name: str, prefix: str) -> str | None:
    """The writer id in the file name ``name`` (see ``file_stem``), None when not one of ours."""
    stem = name.split(SUFFIX, 1)[0]
    if not stem.startswith(prefix + "-") or "-" not in stem[len(prefix) + 1 :]:
        return None
    return stem[len(prefix) + 1 :].rsplit("-", 1)[0]


@contextmanager
def open_cxi(path: Path, mode: str = "r") -> Iterator[h5py.File]:
    """Open a peaknet-serve CXI file, closed or in progress, without HDF5 file locking (a live
    writer holds its file open; it flushes after every batch).

    Raises:
        OSError: HDF5 cannot open it. ValueError: it is not a peaknet-serve CXI file.
    """
    with h5py.File(path, mode, locking=False) as handle:
        if N_PEAKS_PATH not in handle:
            raise ValueError(f"not a peaknet-serve CXI file (no {N_PEAKS_PATH})")
        yield handle


def event_datasets(handle: h5py.File) -> list[h5py.Dataset]:
    """Every dataset with one row per event (resizable along axis 0), the batch table aside."""
    found: list[h5py.Dataset] = []

    def visit(name: str, obj: object) -> None:
        if (
            isinstance(obj, h5py.Dataset)
            and "/" + name != BATCHES_PATH
            and obj.maxshape
            and obj.maxshape[0] is None
        ):
            found.append(obj)

    handle.visititems(visit)
    return found


def batch_records(handle: h5py.File, *, committed_only: bool = True) -> list[dict[str, Any]]:
    """The batch table: per batch with a part in the file, ``batch`` (its id), ``first`` (its
    first event row), ``events``, ``offered`` (frames offered while the file was current), and,
    in the file open when the batch was acknowledged, its outcome (``hits``, ``non_hits``,
    ``failed``); ``duplicate_of`` names the file that kept the events of a batch written twice.
    """
    if BATCHES_PATH not in handle:
        return []
    rows = handle[BATCHES_PATH].asstr()[()]
    if committed_only:
        rows = rows[: int(handle.attrs.get(COMMITTED_BATCHES, 0))]
    return [json.loads(row) for row in rows]


def read_peaks(handle: h5py.File) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``nPeaks`` (N,) and every ``PEAK_FIELDS`` dataset (N, max_peaks), by CXI name."""
    result = handle[RESULT_PATH]
    counts = np.asarray(result["nPeaks"][()])
    return counts, {name: np.asarray(result[name][()]) for name in PEAK_FIELDS}


def read_event_peaks(handle: h5py.File) -> list[Peaks]:
    """Each event's ``Peaks`` (positions as stored: ``peakXPosRaw``/``peakYPosRaw`` of the file's
    layout, panel 0), in event order."""
    counts, columns = read_peaks(handle)
    events = []
    for row, count in enumerate(counts):
        n = int(count)
        values = {PEAK_FIELDS[name]: column[row, :n] for name, column in columns.items()}
        floats = {key: v.astype(np.float64) for key, v in values.items() if key != "n_pixels"}
        events.append(
            Peaks(
                **floats,
                n_pixels=values["n_pixels"].astype(np.int32),
                panel=np.zeros(n, np.int32),
                n_found=n,
            )
        )
    return events


def written_files(directory: Path) -> list[Path]:
    """The CXI files under ``directory``, finished (``.cxi``) and still being written
    (``.cxi.inprogress``)."""
    return [p for suffix in (SUFFIX, INPROGRESS_SUFFIX) for p in directory.glob(f"*{suffix}")]
