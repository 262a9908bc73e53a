"""Turn one LCLStreamer message (in-memory HDF5 or NPZ bytes) into a ``FrameBatch``.

One message is one batch of B events. The image field becomes ``FrameBatch.images``
((B, H, W), or (B, P, H, W) for panel stacks; a (B, 1, H, W) channel axis is squeezed) in the
dtype it was sent in; every other field is per-event metadata carried through untouched, plus
``photon_energy_ev`` derived from the wavelength. Uncompressed payloads are decoded zero-copy:
the image is then a read-only view into the message buffer.

Every failure raises ``DecodeError`` with a stable ``reason`` label; no other exception escapes
``decode_message``, so the caller can count, quarantine and move on.
"""

from __future__ import annotations

import io
import logging
import struct
import zipfile
from dataclasses import dataclass
from typing import Any

import h5py
import hdf5plugin  # noqa: F401  (registers the bitshuffle/lz4/zstd/zfp filters with h5py)
import numpy as np

from peaknet_serve.errors import DecodeError
from peaknet_serve.wire.chunk_streams import check_chunk_streams, read_deflated
from peaknet_serve.wire.config import DecodeConfig
from peaknet_serve.wire.guard import (
    DecodedBudget,
    check_chunk_count,
    check_count,
    check_local_storage,
)
from peaknet_serve.wire.metadata import TIMESTAMP_KEY, WAVELENGTH_KEY, derive

logger = logging.getLogger(__name__)

Payload = bytes | bytearray | memoryview

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")

#: Image dtypes accepted; anything else raises DecodeError(reason="unsupported_dtype").
IMAGE_DTYPES = frozenset(
    np.dtype(t) for t in ("uint8", "uint16", "int16", "uint32", "int32", "float32", "float64")
)

#: h*c in eV*m, eV*nm and eV*Angstrom: E[eV] = HC[unit] / lambda[unit].
_HC_EV = {"m": 1.23984198e-6, "nm": 1239.84198, "angstrom": 12398.4198}

ORIGINAL_SHAPE_SUFFIX = "_original_shape"


@dataclass(frozen=True, slots=True)
class FrameBatch:
    """A decoded message: B frames and their per-event metadata.

    Attributes:
        images: (B, H, W) or (B, P, H, W), original dtype; may be a read-only view of the message.
        metadata: field name -> array of length B. Always holds ``photon_energy_ev`` (float64,
            NaN where unknown) and ``photon_energy_source``; ``wavelength`` when sent,
            ``timestamp`` (uint64 ``(sec << 32) | ns``, see ``wire.metadata``) when sent; every
            other field under its name (the last component of its HDF5 path, or its NPZ key).
        original_shape: the NPZ ``<image>_original_shape`` ([B, C, H_orig, W_orig]) when sent.
    """

    images: np.ndarray
    metadata: dict[str, np.ndarray]
    original_shape: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])


def decode_message(payload: Payload, config: DecodeConfig | None = None) -> FrameBatch:
    """Decode one message; raises ``DecodeError`` (and only that) when it cannot.

    The size limits of ``config`` are checked against every array's declared shape and dtype
    before it is read; ``None`` means LCLStreamer's defaults.
    """
    cfg = config or DecodeConfig()
    try:
        buf = memoryview(payload).cast("B")
    except TypeError as exc:
        raise DecodeError(
            f"message is a {type(payload).__name__}, not a bytes-like buffer", reason="not_bytes"
        ) from exc
    size = buf.nbytes
    if size > cfg.max_message_bytes:
        raise DecodeError(
            f"message of {size} bytes exceeds max_message_bytes={cfg.max_message_bytes}; "
            "raise decode.max_message_bytes if such batches are expected",
            reason="too_large",
        )
    if size == 0:
        raise DecodeError("empty message (0 bytes)", reason="empty")
    fmt = _detect_format(buf, cfg.format)
    try:
        if fmt == "hdf5":
            arrays, original_shape = _read_hdf5(buf, cfg), None
        else:
            arrays, original_shape = _read_npz(buf, cfg)
        return _assemble(arrays, original_shape, cfg)
    except DecodeError:
        raise
    except Exception as exc:  # the decode boundary: nothing but DecodeError may escape
        raise DecodeError(
            f"{fmt} message of {size} bytes could not be decoded: {type(exc).__name__}: {exc}",
            reason="corrupt",
        ) from exc


def _detect_format(buf: memoryview, wanted: str) -> str:
    head = bytes(buf[:8])
    found = (
        "hdf5"
        if head.startswith(HDF5_SIGNATURE)
        else "npz"
        if head.startswith(ZIP_SIGNATURES)
        else None
    )
    if wanted != "auto" and found != wanted:
        raise DecodeError(
            f"message is not {wanted.upper()} (first bytes {head!r}); "
            "check the pusher's serializer or set decode.format",
            reason=f"not_{wanted}",
        )
    if found is None:
        raise DecodeError(
            f"message is neither HDF5 nor NPZ (first bytes {head!r})", reason="unknown_format"
        )
    return found


class _BufferFile(io.RawIOBase):
    """A read-only, seekable file over a memoryview, so h5py reads a message without a copy."""

    def __init__(self, buf: memoryview) -> None:
        super().__init__()
        self._buf = buf
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._buf)}[whence]
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, out: Any) -> int:
        n = max(0, min(len(out), len(self._buf) - self._pos))
        out[:n] = self._buf[self._pos : self._pos + n]
        self._pos += n
        return n


# --- HDF5 ------------------------------------------------------------------------------------


def _read_hdf5(buf: memoryview, cfg: DecodeConfig) -> dict[str, np.ndarray]:
    """Read every dataset of an in-memory HDF5 file; keys are the decoder's field names."""
    try:
        fh = h5py.File(_BufferFile(buf), "r")
    except Exception as exc:
        text = str(exc)
        reason = "truncated" if "truncated" in text or "eof" in text.lower() else "corrupt"
        raise DecodeError(
            f"HDF5 message of {buf.nbytes} bytes cannot be opened ({reason}): {text}",
            reason=reason,
        ) from exc
    with fh:
        datasets = _datasets(fh, cfg.max_fields)
        budget = DecodedBudget(cfg.max_decoded_bytes)
        for path, dset in datasets.items():
            check_local_storage(path, dset.external, dset.is_virtual)
            budget.take(path, dset.shape, dset.dtype)
        for path, dset in datasets.items():
            budget.take_chunk(path, dset.shape, dset.chunks, dset.dtype)
            check_chunk_count(path, dset.shape, dset.chunks, cfg.max_chunks)
        image_path = _resolve(cfg.fields.image, datasets)
        if image_path is None:
            raise DecodeError(
                f"no image dataset at {cfg.fields.image!r} (datasets: {sorted(datasets)}); "
                "set decode.fields.image to the pusher's image path",
                reason="missing_image",
            )
        special = {
            image_path: "__image__",
            _resolve(cfg.fields.wavelength, datasets): WAVELENGTH_KEY,
            _resolve(cfg.fields.timestamp, datasets): TIMESTAMP_KEY,
        }
        names = _field_names([p for p in datasets if p not in special], special.values())
        _check_lengths(datasets, image_path, names)
        out: dict[str, np.ndarray] = {}
        for path, dset in datasets.items():
            key = special.get(path) or names[path]
            if key == "__image__":
                out[key] = _read_image(dset, buf)
            else:
                check_chunk_streams(path, dset)
                out[key] = _read_small(dset, budget, buf.nbytes)
        return out


def _datasets(fh: h5py.File, max_fields: int) -> dict[str, h5py.Dataset]:
    """Every dataset by path, reached through hard links only (h5py's ``visititems`` follows
    no soft or external link); stops at ``max_fields`` objects (groups count too)."""
    datasets: dict[str, h5py.Dataset] = {}
    visited = 0

    def visit(name: str, obj: Any) -> bool | None:
        nonlocal visited
        visited += 1
        if visited > max_fields:
            return True  # stops the visit
        if isinstance(obj, h5py.Dataset):
            datasets["/" + name] = obj
        return None

    fh.visititems(visit)
    check_count("datasets and groups", visited, max_fields)
    return datasets


def _resolve(path: str, available: Any) -> str | None:
    """The configured path if present, else its last component at the root."""
    candidates = ["/" + path.strip("/"), "/" + path.strip("/").rsplit("/", 1)[-1]]
    return next((c for c in candidates if c in available), None)


def _field_names(paths: list[str], reserved: Any) -> dict[str, str]:
    """Metadata name per dataset: its last path component, or the full path when ambiguous."""
    taken = set(reserved)
    short = [p.rsplit("/", 1)[-1] for p in paths]
    return {
        p: s if short.count(s) == 1 and s not in taken else p.strip("/")
        for p, s in zip(paths, short, strict=True)
    }


def _check_lengths(
    datasets: dict[str, h5py.Dataset], image_path: str, names: dict[str, str]
) -> None:
    """Refuse a field whose declared length is not the image's event count, before any is read."""
    image_shape = datasets[image_path].shape
    if not image_shape:
        return  # a rank-0 or null image is refused by _shape_images
    for path, dset in datasets.items():
        if path != image_path and (not dset.shape or dset.shape[0] != image_shape[0]):
            raise DecodeError(
                f"metadata field {names.get(path, path)!r} has shape {dset.shape}, expected "
                f"{image_shape[0]} events like the image {image_shape}",
                reason="length_mismatch",
            )


def _read_image(dset: h5py.Dataset, buf: memoryview) -> np.ndarray:
    """The image dataset, as a view of the message when it is stored raw and in event order."""
    view = _raw_view(dset, buf)
    if view is not None:
        return view
    dtype = _native(dset.dtype)
    if dtype not in IMAGE_DTYPES:
        raise DecodeError(
            f"image dtype {dset.dtype} is not supported (use one of "
            f"{sorted(str(d) for d in IMAGE_DTYPES)})",
            reason="unsupported_dtype",
        )
    deflated = read_deflated(dset, dtype) if dset.size else None
    if deflated is not None:
        return deflated
    check_chunk_streams(dset.name, dset)
    out = np.empty(dset.shape, dtype=dtype)  # HDF5 converts a big-endian image as it reads
    if out.size:
        dset.read_direct(out)
    return out


def _native(dtype: np.dtype) -> np.dtype:
    """``dtype`` in this byte order (a big-endian ``>f4`` image is read as ``float32``)."""
    return dtype.newbyteorder("=") if dtype.byteorder in "<>" else dtype


def _raw_view(dset: h5py.Dataset, buf: memoryview) -> np.ndarray | None:
    if dset.dtype not in IMAGE_DTYPES or dset.compression or dset._filters or dset.size == 0:
        return None
    nbytes = dset.size * dset.dtype.itemsize
    chunks = dset.chunks
    if chunks is None:
        start = dset.id.get_offset()
    else:
        if tuple(chunks[1:]) != tuple(dset.shape[1:]) or chunks[0] != 1:
            return None
        if dset.id.get_num_chunks() != dset.shape[0]:
            return None
        per = nbytes // dset.shape[0]
        infos = [dset.id.get_chunk_info(i) for i in range(dset.shape[0])]
        start = infos[0].byte_offset
        for i, info in enumerate(infos):
            if (
                info.chunk_offset[0] != i
                or info.filter_mask
                or info.size != per
                or info.byte_offset != start + i * per
            ):
                return None
    if start is None or start + nbytes > buf.nbytes:
        return None
    return np.frombuffer(buf, dtype=dset.dtype, count=dset.size, offset=start).reshape(dset.shape)


def _read_small(dset: h5py.Dataset, budget: DecodedBudget, message_bytes: int) -> np.ndarray:
    if dset.dtype.kind == "O" or h5py.check_string_dtype(dset.dtype) is not None:
        return _read_strings(dset, budget, message_bytes)
    if dset.dtype.kind == "V":
        raise DecodeError(
            f"dataset {dset.name} has compound/opaque dtype {dset.dtype}", reason="bad_metadata"
        )
    return np.asarray(dset[()])


def _read_strings(dset: h5py.Dataset, budget: DecodedBudget, message_bytes: int) -> np.ndarray:
    """A string dataset as a fixed-width ``str`` array, its text charged to ``budget`` as read.

    A variable-length string's text lives in the file's heap, so the declared shape does not size
    it, and many elements may point at one long string: rows are read in blocks of at most
    64 MiB / message size elements (each element is at most the message long), their text charged
    as each block arrives, and the fixed-width array (elements x longest x 4 bytes) charged before
    it is built. Called with rank >= 1 (``_check_lengths`` refused rank 0). Raises
    ``DecodeError(reason="too_large_decoded")``.
    """
    row = int(np.prod(dset.shape[1:], dtype=np.int64))
    string = h5py.check_string_dtype(dset.dtype)
    if string is not None and string.length is not None:  # fixed width: its declared size holds
        step = max(dset.shape[0], 1)
    else:
        step = max(1, (64 << 20) // max(message_bytes * max(row, 1), 1))
    texts: list[str] = []
    for start in range(0, dset.shape[0], step):
        block = np.asarray(dset.asstr()[start : start + step], dtype=object).ravel().tolist()
        budget.take(f"{dset.name} (text)", (sum(len(t) for t in block),), "u1")
        texts.extend(block)
    longest = max((len(t) for t in texts), default=0)
    budget.take(f"{dset.name} (as str)", (len(texts), max(longest, 1)), "U1")
    return np.asarray(texts, dtype=str).reshape(dset.shape)


# --- NPZ -------------------------------------------------------------------------------------

_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")


def _read_npz(
    buf: memoryview, cfg: DecodeConfig
) -> tuple[dict[str, np.ndarray], tuple[int, ...] | None]:
    """Read every array of an NPZ archive; stored (uncompressed) members zero-copy."""
    try:
        zf = zipfile.ZipFile(_BufferFile(buf))
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


# --- assembly --------------------------------------------------------------------------------


def _assemble(
    arrays: dict[str, np.ndarray], original_shape: tuple[int, ...] | None, cfg: DecodeConfig
) -> FrameBatch:
    images = _shape_images(arrays.pop("__image__"), original_shape)
    batch = images.shape[0]
    for key, value in arrays.items():
        if value.ndim == 0 or value.shape[0] != batch:
            raise DecodeError(
                f"metadata field {key!r} has shape {value.shape}, expected {batch} events "
                f"like the image {images.shape}",
                reason="length_mismatch",
            )
    metadata = dict(arrays)
    energy = photon_energy_ev(arrays.get(WAVELENGTH_KEY), unit=cfg.wavelength_unit, batch=batch)
    derive(metadata, energy, cfg)
    return FrameBatch(images=images, metadata=metadata, original_shape=original_shape)


def _shape_images(images: np.ndarray, original_shape: tuple[int, ...] | None) -> np.ndarray:
    if images.dtype != _native(images.dtype) and _native(images.dtype) in IMAGE_DTYPES:
        images = images.astype(_native(images.dtype))  # a big-endian NPZ image: one copy
    if images.dtype not in IMAGE_DTYPES:
        raise DecodeError(
            f"image dtype {images.dtype} is not supported (use one of "
            f"{sorted(str(d) for d in IMAGE_DTYPES)})",
            reason="unsupported_dtype",
        )
    if original_shape is not None and images.ndim == 4 and images.shape[1] == 1:
        if len(original_shape) != 4 or original_shape[0] * original_shape[1] != images.shape[0]:
            raise DecodeError(
                f"original_shape {original_shape} does not match the image {images.shape}: "
                "expected [B, C, H, W] with B*C images",
                reason="bad_shape",
            )
        images = images.reshape(original_shape[:2] + images.shape[2:])
    if images.ndim == 4 and images.shape[1] == 1:
        images = images[:, 0]
    if images.ndim not in (3, 4):
        raise DecodeError(
            f"image has shape {images.shape}; expected (B, H, W), (B, 1, H, W) or (B, P, H, W)",
            reason="bad_rank",
        )
    if images.shape[0] == 0 or 0 in images.shape[-2:]:
        raise DecodeError(f"image batch {images.shape} holds no pixels", reason="empty_batch")
    return images


def photon_energy_ev(wavelength: np.ndarray | None, *, unit: str, batch: int) -> np.ndarray:
    """E[eV] = hc / lambda, float64, NaN where lambda is missing, non-finite or <= 0."""
    if wavelength is None:
        return np.full(batch, np.nan)
    try:
        lam = np.asarray(wavelength, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DecodeError(
            f"wavelength field of dtype {wavelength.dtype} is not numeric", reason="bad_metadata"
        ) from exc
    if lam.ndim != 1:
        raise DecodeError(
            f"wavelength has shape {lam.shape}, expected ({batch},)", reason="length_mismatch"
        )
    good = np.isfinite(lam) & (lam > 0)
    return np.where(good, _HC_EV[unit] / np.where(good, lam, 1.0), np.nan)
