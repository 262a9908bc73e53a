"""What a new CXI file holds before its first event: its panel layout, the resizable datasets
of ``format``'s layout, and the attributes that name its writer (what recovery reads)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import h5py
import numpy as np

from peaknet_serve import __version__
from peaknet_serve.cxi.config import CXIConfig
from peaknet_serve.cxi.format import (
    BATCHES_PATH,
    COMMITTED_BATCHES,
    COMMITTED_EVENTS,
    DATA_PATH,
    EVENT_BATCH_PATH,
    EVENTS_OFFERED,
    FRAME_SHAPE,
    GEOMETRY,
    GEOMETRY_PATH,
    HIT_PATH,
    N_PEAKS_PATH,
    PANEL_OFFSETS,
    PANEL_SHAPE,
    PEAK_FIELDS,
    PHOTON_ENERGY_KEY,
    RESULT_PATH,
    SERVICE_VERSION,
    STORED_SHAPE,
    WRITE_MODE,
    WRITER_HOST,
    WRITER_ID,
    WRITER_PID,
    WRITING_BATCH,
)
from peaknet_serve.cxi.geometry import read_geometry
from peaknet_serve.cxi.layout import PanelLayout
from peaknet_serve.cxi.metadata import SCALAR_CHUNK_ROWS, FileDatasets, MetadataFields
from peaknet_serve.cxi.storage import filters

_PEAK_CHUNK_ROWS = 16


def layout_for(config: CXIConfig, frame_shape: tuple[int, ...]) -> PanelLayout:
    """How frames of ``frame_shape`` are stored: by ``config.geometry_file`` when set, else a
    (H, W) frame as it is and a (P, H, W) stack as panels one above the other."""
    if config.geometry_file is not None:
        return PanelLayout.for_frames(read_geometry(config.geometry_file), frame_shape)
    if len(frame_shape) == 2:
        return PanelLayout(frame_shape, np.zeros((1, 2), int), frame_shape, is_2d=True)
    n_panels, height, width = frame_shape
    return PanelLayout.slab(n_panels, (height, width))


def create_datasets(
    handle: h5py.File,
    *,
    config: CXIConfig,
    layout: PanelLayout,
    frame_shape: tuple[int, ...],
    metadata: MetadataFields,
    writer_id: str,
    batch_id: str,
) -> dict[str, h5py.Dataset]:
    """Create the empty per-event datasets and the file attributes in ``handle``; returns the
    datasets that grow by one row per event, by path.

    Raises:
        ValueError, RuntimeError, OSError: from h5py (e.g. a compression filter not available).
    """
    compression = filters(config)
    handle.create_dataset("/cxi_version", data=140)
    datasets: dict[str, h5py.Dataset] = {}
    if config.write_mode != "peaks":
        datasets[DATA_PATH] = handle.create_dataset(
            DATA_PATH,
            shape=(0, *layout.stored_shape),
            maxshape=(None, *layout.stored_shape),
            chunks=(1, *layout.stored_shape),
            dtype=np.float32,
            **compression,
        )
    for name in PEAK_FIELDS:
        datasets[f"{RESULT_PATH}/{name}"] = handle.create_dataset(
            f"{RESULT_PATH}/{name}",
            shape=(0, config.max_peaks),
            maxshape=(None, config.max_peaks),
            chunks=(_PEAK_CHUNK_ROWS, config.max_peaks),
            dtype=np.float32,
            **compression,
        )
    for path, dtype in (
        (N_PEAKS_PATH, np.int32),
        (HIT_PATH, np.uint8),
        (EVENT_BATCH_PATH, h5py.string_dtype()),
    ):
        datasets[path] = handle.create_dataset(
            path, shape=(0,), maxshape=(None,), chunks=(SCALAR_CHUNK_ROWS,), dtype=dtype
        )
    handle.create_dataset(
        BATCHES_PATH, shape=(0,), maxshape=(None,), chunks=(64,), dtype=h5py.string_dtype()
    )
    metadata.dataset(FileDatasets(handle, datasets, 0), PHOTON_ENERGY_KEY, np.zeros(1, np.float64))
    attrs = handle.attrs
    attrs[SERVICE_VERSION] = __version__
    attrs[WRITER_ID] = writer_id
    attrs[WRITER_HOST] = socket.gethostname()
    attrs[WRITER_PID] = os.getpid()
    attrs[WRITING_BATCH] = batch_id
    attrs[COMMITTED_EVENTS] = 0
    attrs[COMMITTED_BATCHES] = 0
    attrs[WRITE_MODE] = config.write_mode
    attrs[FRAME_SHAPE] = np.asarray(frame_shape, dtype=np.int64)
    attrs[PANEL_SHAPE] = np.asarray(layout.panel_shape, dtype=np.int64)
    attrs[STORED_SHAPE] = np.asarray(layout.stored_shape, dtype=np.int64)
    attrs[PANEL_OFFSETS] = np.asarray(layout.offsets, dtype=np.int64)
    attrs[EVENTS_OFFERED] = 0
    if layout.geometry_text is not None:
        attrs[GEOMETRY] = layout.geometry_text
        attrs[GEOMETRY_PATH] = str(Path(config.geometry_file or "").resolve())
    return datasets
