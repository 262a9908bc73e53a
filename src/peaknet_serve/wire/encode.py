"""Serialize a batch the way LCLStreamer does, for the synthetic pusher, tests and benchmarks.

HDF5: an in-memory file, one dataset per field, chunked one event per chunk, with the
compressions LCLStreamer's ``HDF5BinarySerializer`` offers (level 3 by default). NPZ:
``numpy.savez`` or ``numpy.savez_compressed`` into memory, like ``NumpyBinarySerializer``.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import h5py
import hdf5plugin
import numpy as np

from peaknet_serve.errors import ConfigError

HDF5_COMPRESSIONS = (
    "none",
    "gzip",
    "gzip_with_shuffle",
    "bitshuffle_with_lz4",
    "bitshuffle_with_zstd",
    "zfp",
)
NPZ_COMPRESSIONS = ("none", "deflate")
#: Compressions that return the data bit-identical (zfp's default mode is lossy).
LOSSLESS = frozenset(HDF5_COMPRESSIONS + NPZ_COMPRESSIONS) - {"zfp"}
_ZFP_DTYPES = frozenset(np.dtype(t) for t in ("int32", "int64", "float32", "float64"))


def hdf5_filter_options(compression: str, *, level: int = 3) -> dict[str, Any]:
    """The ``create_dataset`` keyword arguments LCLStreamer uses for ``compression``."""
    if compression == "none":
        return {}
    if compression in ("gzip", "gzip_with_shuffle"):
        return {
            "compression": "gzip",
            "compression_opts": level,
            "shuffle": compression == "gzip_with_shuffle",
        }
    if compression in ("bitshuffle_with_lz4", "bitshuffle_with_zstd"):
        cname = compression.rsplit("_", 1)[-1]
        return {"compression": hdf5plugin.Bitshuffle(cname=cname, clevel=level)}
    if compression == "zfp":
        return {"compression": hdf5plugin.Zfp()}
    raise ConfigError(
        f"unknown HDF5 compression {compression!r}; choose one of {', '.join(HDF5_COMPRESSIONS)}"
    )


def encode_hdf5(
    fields: Mapping[str, np.ndarray], *, compression: str = "none", level: int = 3
) -> bytes:
    """The bytes of an in-memory HDF5 file holding ``fields`` ({path: (B, ...) array}).

    Compression applies to every numeric dataset (as in LCLStreamer); string fields are stored
    uncompressed. zfp only takes int32/int64/float32/float64 data: other numeric fields are
    stored uncompressed rather than failing.
    """
    options = hdf5_filter_options(compression, level=level)
    depths = {np.shape(v)[0] for v in fields.values()}
    if len(depths) > 1:
        raise ValueError(f"fields have different batch sizes {sorted(depths)}")
    with io.BytesIO() as out:
        with h5py.File(out, "w") as fh:
            for path, value in fields.items():
                array = np.asarray(value)
                is_text = array.dtype.kind in "US"
                if is_text:
                    array = array.astype(h5py.string_dtype()) if array.dtype.kind == "U" else array
                use = options
                if is_text or (compression == "zfp" and array.dtype not in _ZFP_DTYPES):
                    use = {}
                fh.create_dataset(
                    path, data=array, shape=array.shape, chunks=(1,) + array.shape[1:], **use
                )
        return out.getvalue()


def encode_npz(fields: Mapping[str, np.ndarray], *, compression: str = "deflate") -> bytes:
    """The bytes of an NPZ archive holding ``fields`` ({key: array}); ``"none"`` = ``savez``."""
    if compression not in NPZ_COMPRESSIONS:
        raise ConfigError(
            f"unknown NPZ compression {compression!r}; choose one of {', '.join(NPZ_COMPRESSIONS)}"
        )
    arrays = {key.strip("/"): np.asarray(value) for key, value in fields.items()}
    with io.BytesIO() as out:
        save = np.savez_compressed if compression == "deflate" else np.savez
        save(out, **arrays)
        return out.getvalue()


def encode_batch(
    fields: Mapping[str, np.ndarray], *, fmt: str, compression: str = "none", level: int = 3
) -> bytes:
    """Encode ``fields`` as ``fmt`` ("hdf5" or "npz"); NPZ keys are the paths' last component."""
    if fmt == "hdf5":
        return encode_hdf5(fields, compression=compression, level=level)
    if fmt == "npz":
        return encode_npz(
            {path.rsplit("/", 1)[-1]: value for path, value in fields.items()},
            compression=compression,
        )
    raise ConfigError(f"unknown payload format {fmt!r}; choose 'hdf5' or 'npz'")
