"""Read an HDF5 message: every dataset by field name, the image zero-copy when stored raw.

Declared sizes and chunk counts are checked (``guard``) before any data is read, a dataset's
chunk streams (``chunk_streams``) before it is read; variable-length strings are charged to the
budget as they are read.
"""

from __future__ import annotations

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
from peaknet_serve.wire.images import IMAGE_DTYPES, native_dtype
from peaknet_serve.wire.memory_file import MemoryFile
from peaknet_serve.wire.metadata import TIMESTAMP_KEY, WAVELENGTH_KEY


def read_hdf5(buf: memoryview, cfg: DecodeConfig) -> dict[str, np.ndarray]:
    """Read every dataset of an in-memory HDF5 file; keys are the decoder's field names."""
    try:
        fh = h5py.File(MemoryFile(buf), "r")
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
        return  # a rank-0 or null image is refused by shape_images
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
    dtype = native_dtype(dset.dtype)
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
