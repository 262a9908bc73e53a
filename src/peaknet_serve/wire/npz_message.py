"""Read an NPZ message: every array by key, stored (uncompressed) members zero-copy."""

from __future__ import annotations

import io
import struct
import zipfile
from typing import Any

import numpy as np

from peaknet_serve.errors import DecodeError
from peaknet_serve.wire.config import DecodeConfig
from peaknet_serve.wire.guard import DecodedBudget, check_count
from peaknet_serve.wire.memory_file import MemoryFile
from peaknet_serve.wire.metadata import TIMESTAMP_KEY, WAVELENGTH_KEY

ORIGINAL_SHAPE_SUFFIX = "_original_shape"

_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")


def read_npz(
    buf: memoryview, cfg: DecodeConfig
) -> tuple[dict[str, np.ndarray], tuple[int, ...] | None]:
    """Read every array of an NPZ archive; stored (uncompressed) members zero-copy."""
    try:
        zf = zipfile.ZipFile(MemoryFile(buf))
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise DecodeError(
            f"NPZ message of {buf.nbytes} bytes is truncated or corrupt: {exc}",
            reason="truncated",
        ) from exc
    with zf:
        check_count("members", len(zf.filelist), cfg.max_fields)
        members = {
            info.filename[:-4] if info.filename.endswith(".npy") else info.filename: info
            for info in zf.infolist()
        }
        budget = DecodedBudget(cfg.max_decoded_bytes)
        for info in members.values():
            budget.take(info.filename, *_npy_header(zf, info))
        image_key = _resolve_key(cfg.fields.image, members)
        if image_key is None:
            raise DecodeError(
                f"no image array for {cfg.fields.image!r} (keys: {sorted(members)}); "
                "set decode.fields.image to the pusher's image key",
                reason="missing_image",
            )
        special = {
            image_key: "__image__",
            _resolve_key(cfg.fields.wavelength, members): WAVELENGTH_KEY,
            _resolve_key(cfg.fields.timestamp, members): TIMESTAMP_KEY,
        }
        shape_key = image_key + ORIGINAL_SHAPE_SUFFIX
        out: dict[str, np.ndarray] = {}
        original_shape = None
        for key, info in members.items():
            array = _npz_member(zf, info, buf)
            if key == shape_key:
                original_shape = tuple(int(v) for v in np.asarray(array).ravel())
            elif not key.endswith(ORIGINAL_SHAPE_SUFFIX):
                out[special.get(key) or key] = array
        return out, original_shape


def _resolve_key(path: str, available: Any) -> str | None:
    candidates = [path.strip("/"), path.strip("/").rsplit("/", 1)[-1]]
    return next((c for c in candidates if c in available), None)


def _npy_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype a member's .npy header declares, read without reading its data."""
    with zf.open(info) as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version in ((2, 0), (3, 0)):
            shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise DecodeError(
                f"NPZ member {info.filename} has .npy version {version}", reason="corrupt"
            )
    return shape, dtype


def _npz_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, buf: memoryview) -> np.ndarray:
    if info.compress_type == zipfile.ZIP_STORED:
        view = _stored_npy_view(info, buf)
        if view is not None:
            return view
    with zf.open(info) as fh:
        try:
            return np.lib.format.read_array(fh, allow_pickle=False)
        except ValueError as exc:
            if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
                raise DecodeError(
                    f"NPZ member {info.filename} holds Python objects; send numeric or "
                    "fixed-width string arrays",
                    reason="unsupported_dtype",
                ) from exc
            raise


def _stored_npy_view(info: zipfile.ZipInfo, buf: memoryview) -> np.ndarray | None:
    """A view of an uncompressed .npy member inside the zip, or None to take the slow path."""
    off = info.header_offset
    if off + _LOCAL_HEADER.size > buf.nbytes:
        return None
    fields = _LOCAL_HEADER.unpack_from(buf, off)
    if fields[0] != b"PK\x03\x04":
        return None
    start = off + _LOCAL_HEADER.size + fields[9] + fields[10]
    end = start + info.file_size
    if end > buf.nbytes:
        raise DecodeError(
            f"NPZ member {info.filename} runs past the end of the message", reason="truncated"
        )
    header = io.BytesIO(buf[start : min(end, start + 65536)])
    version = np.lib.format.read_magic(header)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(header)
    elif version in ((2, 0), (3, 0)):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(header)
    else:
        return None
    if dtype.hasobject:
        return None
    count = int(np.prod(shape, dtype=np.int64))
    data_start = start + header.tell()
    if data_start + count * dtype.itemsize > end:
        raise DecodeError(
            f"NPZ member {info.filename} is shorter than its header says", reason="truncated"
        )
    array = np.frombuffer(buf, dtype=dtype, count=count, offset=data_start)
    return array.reshape(shape, order="F" if fortran else "C")
