"""The ``/LCLS`` metadata datasets of a CXI file: which fields are written, under which
names, with which dtype and fill value (LCLStreamer's conventions)."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from peaknet_serve.cxi.config import CXIConfig
from peaknet_serve.cxi.format import (
    CLEN_KEY,
    METADATA_GROUP,
    PHOTON_ENERGY_KEY,
    TIMESTAMP_ATTRS,
)

logger = logging.getLogger(__name__)

DECODED_ENERGY_KEY = "photon_energy_ev"
"""The photon-energy key of ``peaknet_serve.wire.FrameBatch.metadata``."""
SCALAR_CHUNK_ROWS = 1024
_METADATA_CHUNK_BYTES = 1 << 20


@dataclass
class FileDatasets:
    """The open file, its datasets by path, and the rows it holds (before this batch)."""

    handle: h5py.File
    datasets: dict[str, h5py.Dataset]
    rows: int


class MetadataFields:
    """Writes per-event metadata under ``/LCLS``; a field that cannot be written is logged once.

    Args:
        config: the ``output`` section (``copy_large_fields``, ``clen_field``, ``clen_unit``).
    """

    def __init__(self, config: CXIConfig) -> None:
        self._config = config
        self._warned: set[str] = set()

    def arrays(
        self, metadata: Mapping[str, Any], batch: int, frame_shape: tuple[int, ...]
    ) -> dict[str, np.ndarray]:
        """The fields to write, under their ``/LCLS`` names; a field that cannot be is logged."""
        config = self._config
        panel_pixels = int(np.prod(frame_shape[-2:]))
        arrays = {}
        for key, values in metadata.items():
            try:
                array = np.asarray(values)
            except ValueError:  # ragged per-event values
                array = np.asarray([as_str(value) for value in values], dtype=object)
            if array.ndim == 0 or len(array) != batch:
                self.warn_once(key, "metadata %r has shape %s for %d events: not written",
                                key, array.shape, batch)
                continue
            per_event = int(np.prod(array.shape[1:]))
            if (array.ndim >= 3 and per_event >= panel_pixels
                    and key not in config.copy_large_fields and key != config.clen_field):
                self.warn_once(
                    key, "metadata %r holds a %s image per event, as big as a panel: not copied "
                    "(name it in output.copy_large_fields to keep it)", key, array.shape[1:])
                continue
            name = CLEN_KEY if key == config.clen_field else dataset_key(key)
            if name != CLEN_KEY and (flat := flat_name(name)) != name:
                self.warn_once(key, "metadata %r stored as %s/%s: a name with '/' or '..' "
                                "would make nested groups", key, METADATA_GROUP, flat)
                name = flat
            if name in arrays:
                self.warn_once(key, "metadata %r: not written, %s/%s is taken by another field",
                                key, METADATA_GROUP, name)
                continue
            arrays[name] = array
        return arrays

    def write(
        self,
        file: FileDatasets,
        key: str,
        values: np.ndarray,
        part: np.ndarray,
        start: int,
        stop: int,
    ) -> None:
        """Write the events ``part`` of ``values`` into rows ``start:stop`` of ``key``'s
        dataset; values that do not fit are logged once and written as fill values."""
        chosen = values[part]
        dataset = self.dataset(file, key, chosen)
        if dataset is None:
            return
        if dataset.shape[0] < stop:
            dataset.resize(stop, axis=0)
        try:
            if h5py.check_string_dtype(dataset.dtype) is not None:
                converted: Any = as_str_array(chosen)
            else:
                converted = np.asarray(chosen).astype(dataset.dtype)
            if converted.shape[1:] != dataset.shape[1:]:
                raise ValueError(f"shape {converted.shape[1:]} per event, not {dataset.shape[1:]}")
        except (TypeError, ValueError) as exc:
            self.warn_once(
                key, "metadata %r: values %r do not fit %s%s (%s); writing fill values",
                key, chosen[:1], dataset.dtype, dataset.shape[1:], exc,
            )
            converted = fill_value(dataset)
        dataset[start:stop] = converted

    def dataset(self, file: FileDatasets, key: str, example: np.ndarray) -> h5py.Dataset:
        """``/LCLS/{key}`` of the open file, created (rows so far filled) like ``example``."""
        name = key.strip("/")
        path = f"{METADATA_GROUP}/{name}"
        dataset = file.datasets.get(path)
        if dataset is not None:
            return dataset
        if example.dtype.kind in "biuf":
            dtype: Any = example.dtype
        else:
            if example.dtype.kind not in "USO":
                self.warn_once(key, "metadata %r of dtype %s is stored as strings", key,
                                example.dtype)
            dtype = h5py.string_dtype()
        event_shape = example.shape[1:]
        itemsize = example.dtype.itemsize if dtype is example.dtype else 8  # 8: str pointer
        event_bytes = max(1, int(np.prod(event_shape)) * itemsize)
        rows = max(1, min(SCALAR_CHUNK_ROWS, _METADATA_CHUNK_BYTES // event_bytes))
        dataset = file.handle.create_dataset(
            path,
            shape=(file.rows, *event_shape),
            maxshape=(None, *event_shape),
            chunks=(rows, *event_shape),
            dtype=dtype,
        )
        if file.rows:
            dataset[:] = fill_value(dataset)
        if name == CLEN_KEY:
            dataset.attrs["units"] = self._config.clen_unit
        dataset.attrs.update(TIMESTAMP_ATTRS.get(name, {}))
        file.datasets[path] = dataset
        return dataset

    def fill_missing(
        self,
        datasets: Mapping[str, h5py.Dataset],
        written: Mapping[str, Any],
        start: int,
        stop: int,
    ) -> None:
        """Fill rows ``start:stop`` of every ``/LCLS`` dataset the batch had no field for."""
        for path, dataset in datasets.items():
            if path.startswith(METADATA_GROUP + "/") and _key_of(path) not in written:
                dataset[start:stop] = fill_value(dataset)

    def warn_once(self, key: str, message: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(message, *args)


def fill_value(dataset: h5py.Dataset) -> Any:
    """LCLStreamer's fill values: NaN for floats, -999 for signed ints, 0 unsigned, "None"."""
    if h5py.check_string_dtype(dataset.dtype) is not None:
        return "None"
    kind = dataset.dtype.kind
    return np.nan if kind == "f" else -999 if kind == "i" else 0


def dataset_key(metadata_key: str) -> str:
    """The ``/LCLS/`` name of a metadata field: the decoder's photon energy goes to the name
    CrystFEL and OM read, every other key keeps its own name."""
    key = metadata_key.strip("/")
    return PHOTON_ENERGY_KEY if key == DECODED_ENERGY_KEY else key


def flat_name(name: str) -> str:
    """``name`` as one HDF5 link name: '/' and anything but letters, digits, '_', '.', '-' become
    '_', and so does every run of dots of two or more."""
    flat = re.sub(r"\.{2,}", "_", re.sub(r"[^A-Za-z0-9_.-]", "_", name.strip("/")))
    return flat if flat not in ("", ".") else "_"


def _key_of(path: str) -> str:
    return path[len(METADATA_GROUP) + 1 :]


def as_str(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def as_str_array(values: np.ndarray) -> np.ndarray:
    """Every element as str, the shape kept: (B, 4) strings stay (B, 4), one string a cell."""
    values = np.asarray(values)
    out = np.empty(values.shape, dtype=object)
    for index, value in np.ndenumerate(values):
        out[index] = as_str(value)
    return out
