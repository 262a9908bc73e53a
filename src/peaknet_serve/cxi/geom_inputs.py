"""What ``geom`` needs from a CXI file we wrote: shapes, panel offsets, the geometry kept in it,
photon energy, clen and its unit, and whether its image needs an HDF5 plugin filter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import hdf5plugin
import numpy as np

from peaknet_serve.cxi.format import (
    CLEN_KEY,
    DATA_PATH,
    GEOMETRY,
    GEOMETRY_PATH,
    METADATA_GROUP,
    PANEL_OFFSETS,
    PANEL_SHAPE,
    PHOTON_ENERGY_KEY,
    STORED_SHAPE,
    open_cxi,
)

CLEN_PATH = f"{METADATA_GROUP}/{CLEN_KEY}"
_BITSHUFFLE_ZSTD = 3


def read_geom_inputs(path: Path) -> dict[str, Any]:
    """The facts of CXI file ``path`` (``.cxi`` or ``.cxi.inprogress``) that geom writes from.

    Raises:
        OSError, KeyError, ValueError: the file cannot be read as a CXI file of ours.
    """
    with open_cxi(path) as handle:
        attrs = handle.attrs
        has_data = DATA_PATH in handle
        if has_data:
            stored = tuple(int(v) for v in handle[DATA_PATH].shape[1:])
        else:
            stored = tuple(int(v) for v in attrs[STORED_SHAPE])
        energy_path = f"{METADATA_GROUP}/{PHOTON_ENERGY_KEY}"
        clen_units = clen_values = None
        if CLEN_PATH in handle:
            clen_values = np.asarray(handle[CLEN_PATH][()], dtype=float).ravel()
            clen_values = clen_values[np.isfinite(clen_values)]
            clen_units = handle[CLEN_PATH].attrs.get("units", "mm")
            clen_units = clen_units.decode() if isinstance(clen_units, bytes) else str(clen_units)
        return {
            "has_data": has_data,
            "stored": stored,
            "offsets": np.asarray(attrs.get(PANEL_OFFSETS, [[0, 0]]), dtype=int),
            "panel_shape": tuple(int(v) for v in attrs.get(PANEL_SHAPE, stored)),
            "geometry": attrs.get(GEOMETRY),
            "geometry_path": attrs.get(GEOMETRY_PATH, "geometry kept in the file"),
            "has_energy": energy_path in handle
            and bool(np.isfinite(handle[energy_path][()]).any()),
            "clen_units": clen_units,
            "clen_values": clen_values,
            "plugin_filter": _uses_plugin(handle[DATA_PATH]) if has_data else None,
        }


def _uses_plugin(dataset: h5py.Dataset) -> str | None:
    """None for built-in filters only; "zstd" for bitshuffle+zstd; else "plugin"."""
    plist = dataset.id.get_create_plist()
    builtin = {h5py.h5z.FILTER_DEFLATE, h5py.h5z.FILTER_SHUFFLE, h5py.h5z.FILTER_FLETCHER32,
               h5py.h5z.FILTER_SZIP, h5py.h5z.FILTER_NBIT, h5py.h5z.FILTER_SCALEOFFSET}
    filters = [plist.get_filter(i) for i in range(plist.get_nfilters())]
    for filter_id, _, values, _ in filters:
        if filter_id == hdf5plugin.Bitshuffle.filter_id and values[4:5] == (_BITSHUFFLE_ZSTD,):
            return "zstd"
    return "plugin" if {f[0] for f in filters} - builtin else None
