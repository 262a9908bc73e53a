"""HDF5 storage of the CXI writer: the compression filters of ``output.compression``, and
errors that name the file and say what to do."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import hdf5plugin

from peaknet_serve.cxi.config import CXIConfig
from peaknet_serve.errors import WriterError


def filters(config: CXIConfig) -> dict[str, Any]:
    if config.compression == "gzip":
        return {"compression": "gzip", "compression_opts": config.compression_level}
    if config.compression == "bitshuffle_lz4":
        return dict(hdf5plugin.Bitshuffle(cname="lz4"))
    if config.compression == "bitshuffle_zstd":
        return dict(hdf5plugin.Bitshuffle(cname="zstd", clevel=config.compression_level))
    return {}


def creation_failure(path: Path, config: CXIConfig, exc: BaseException) -> str:
    """Why the datasets of a new file could not be created, and what to do."""
    if config.compression.startswith("bitshuffle"):
        plugin_path = os.environ.get("HDF5_PLUGIN_PATH")
        shadow = (
            f"HDF5_PLUGIN_PATH={plugin_path} makes HDF5 load that directory's bitshuffle plugin "
            "(built for another HDF5 library) in place of hdf5plugin's; unset HDF5_PLUGIN_PATH in "
            "the service's environment (CrystFEL needs it, the service does not)"
            if plugin_path
            else "the bitshuffle filter is not available: install hdf5plugin in the service's "
            "environment, and leave HDF5_PLUGIN_PATH unset"
        )
        return (
            f"cannot create {path} with output.compression {config.compression}: {exc}. "
            f"{shadow}, or set output.compression: gzip"
        )
    return f"cannot create {path}: {exc} (check free space and permissions of output.output_dir)"


@contextmanager
def as_writer_error(path: Path | None) -> Iterator[None]:
    """Turns OSError and h5py's errors into a WriterError naming the file."""
    try:
        yield
    except (OSError, RuntimeError, KeyError) as exc:
        raise WriterError(
            f"cannot write {path}: {exc} (check free space and permissions of output.output_dir)"
        ) from exc
