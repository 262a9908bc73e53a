"""HDF5 storage of the CXI writer: the compression filters of ``output.compression``, and
errors that name the file and say what to do."""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import hdf5plugin

from peaknet_serve.cxi.config import CXIConfig
from peaknet_serve.errors import WriterError

logger = logging.getLogger(__name__)

#: The build-from-source command that gives hdf5plugin's filters AVX2 (hdf5plugin's docs,
#: "Installation": HDF5PLUGIN_AVX2).
AVX2_BUILD = "HDF5PLUGIN_AVX2=True pip install --no-binary hdf5plugin --force-reinstall hdf5plugin"


def filters(config: CXIConfig) -> dict[str, Any]:
    if config.compression.startswith("bitshuffle"):
        _note_bitshuffle_build()
    if config.compression == "gzip":
        return {"compression": "gzip", "compression_opts": config.compression_level}
    if config.compression == "bitshuffle_lz4":
        return dict(hdf5plugin.Bitshuffle(cname="lz4"))
    if config.compression == "bitshuffle_zstd":
        return dict(hdf5plugin.Bitshuffle(cname="zstd", clevel=config.compression_level))
    return {}


def slow_bitshuffle(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether hdf5plugin's bitshuffle lacks AVX2 on a CPU that has it.

    Why: PyPI's hdf5plugin wheels are built for SSE2 only, and bitshuffle is then most of what a
    writer spends per frame (docs/perf-notes.md, runs 23-27). False where the CPU cannot be read.
    """
    if hdf5plugin.get_config().build_config.avx2:
        return False
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    return re.search(r"^flags\s*:.*\bavx2\b", text, re.MULTILINE) is not None


@functools.cache
def _note_bitshuffle_build() -> None:
    """Say once per process how to make bitshuffle writes cheaper, where they can be."""
    if slow_bitshuffle():
        logger.info(
            "hdf5plugin's bitshuffle is built without AVX2 on a CPU that has it: each write "
            "costs about twice what it could (docs/operations.md, \"Slow downstream\"); build it "
            "with AVX2: %s",
            AVX2_BUILD,
        )


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
