"""The decoder under hostile input: a corpus of crafted kinds, and hypothesis over HDF5 and NPZ
structure and bytes. Whatever comes in, ``decode_message`` returns a well-formed batch or raises
``DecodeError``, and never allocates what a message only declares."""

from __future__ import annotations

import io
import tracemalloc
import zipfile

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peaknet_serve.errors import DecodeError
from peaknet_serve.wire import DecodeConfig, FrameBatch, decode_message
from peaknet_serve.wire.crafted import KINDS, good_message, hdf5_bomb, npz_bomb
from peaknet_serve.wire.decode import HDF5_SIGNATURE, ZIP_SIGNATURES

FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
LIMIT = 256 * 1024
"""A decoded-size cap small enough that hypothesis finds shapes on both sides of it."""
CONFIG = DecodeConfig(max_decoded_bytes=LIMIT)


def check(payload: bytes, config: DecodeConfig = CONFIG) -> FrameBatch | DecodeError:
    """Decode; the batch must be well-formed, and any failure a DecodeError."""
    try:
        batch = decode_message(payload, config)
    except DecodeError as exc:
        assert exc.reason and str(exc)
        return exc
    assert batch.images.ndim in (3, 4) and len(batch) > 0
    assert batch.images.nbytes <= config.max_decoded_bytes
    for key, value in batch.metadata.items():
        assert value.shape[0] == len(batch), key
    return batch


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_crafted_kind_is_rejected_with_its_reason(kind: str) -> None:
    build, reasons = KINDS[kind]
    with pytest.raises(DecodeError) as caught:
        decode_message(build())
    assert caught.value.reason in reasons


@pytest.mark.parametrize(
    "bomb", [hdf5_bomb, lambda: npz_bomb(compressed=False), lambda: npz_bomb(compressed=True)]
)
def test_a_declared_size_bomb_is_rejected_before_anything_is_allocated(bomb) -> None:
    message = bomb()
    assert len(message) < 4000  # a few kB that declare 4 GiB
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError) as caught:
            decode_message(message, DecodeConfig(max_decoded_bytes=1024**2))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.reason == "too_large_decoded"
    assert "max_decoded_bytes" in str(caught.value)
    assert peak < 16 * 1024**2


@pytest.mark.parametrize("fmt", ["hdf5", "npz"])
def test_the_cap_counts_every_array_of_a_message_and_lets_a_batch_under_it_through(
    fmt: str,
) -> None:
    message = good_message(np.random.default_rng(1), frames=4, shape=(32, 32), fmt=fmt)
    image_bytes = 4 * 32 * 32 * 4
    assert len(decode_message(message, DecodeConfig(max_decoded_bytes=image_bytes + 64))) == 4
    with pytest.raises(DecodeError) as caught:  # image fits, image + wavelength does not
        decode_message(message, DecodeConfig(max_decoded_bytes=image_bytes + 8))
    assert caught.value.reason == "too_large_decoded"


# --- hypothesis: structure -------------------------------------------------------------------

DTYPES = [
    "uint8", "int8", "uint16", "int16", "uint32", "int32", "int64", "uint64", "float16",
    "float32", "float64", "complex64", "bool",
]  # fmt: skip
PATHS = ["/data/data", "/data/wavelength", "/data/timestamp", "/data/extra", "/data", "/other/x"]

shapes = st.lists(st.integers(0, 6), min_size=0, max_size=5).map(tuple)
big_shapes = st.lists(st.integers(1, 10**6), min_size=1, max_size=5).map(tuple)
datasets = st.dictionaries(
    st.sampled_from(PATHS),
    st.tuples(st.one_of(shapes, big_shapes), st.sampled_from(DTYPES), st.booleans()),
    max_size=4,
)


def _declared(shape: tuple[int, ...], dtype: str) -> int:
    return int(np.prod(shape, dtype=object)) * np.dtype(dtype).itemsize


@FUZZ
@given(datasets)
def test_any_hdf5_structure_decodes_or_is_rejected(fields) -> None:
    buffer = io.BytesIO()
    declared = 0
    with h5py.File(buffer, "w") as handle:
        for path, (shape, dtype, compressed) in fields.items():
            if path == "/data" and any(p.startswith("/data/") for p in fields):
                continue  # a group and a dataset cannot share a path
            if (
                path.startswith("/data/")
                and "/data" in handle
                and not isinstance(handle["/data"], h5py.Group)
            ):
                continue
            declared += _declared(shape, dtype)
            if _declared(shape, dtype) <= 1024**2 and not compressed:
                handle.create_dataset(path, data=np.ones(shape, dtype))
            else:  # declared only: chunked fill value, a few bytes on the wire
                chunks = tuple(1 for _ in shape) if shape and all(shape) else None
                handle.create_dataset(
                    path, shape=shape, dtype=dtype, chunks=chunks,
                    compression="gzip" if chunks else None,
                )  # fmt: skip
    result = check(buffer.getvalue())
    if declared > LIMIT:
        assert isinstance(result, DecodeError)
        assert result.reason == "too_large_decoded"


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(["data", "wavelength", "timestamp", "data_original_shape", "x"]),
        st.tuples(shapes, st.sampled_from(DTYPES)),
        max_size=4,
    ),
    st.booleans(),
    st.one_of(st.none(), big_shapes),
)
def test_any_npz_structure_or_declared_header_decodes_or_is_rejected(
    fields, compressed: bool, declared_image: tuple[int, ...] | None
) -> None:
    out = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
    with zipfile.ZipFile(out, "w", compression=method) as zf:
        for key, (shape, dtype) in fields.items():
            npy = io.BytesIO()
            if key == "data" and declared_image is not None:  # a header that lies
                header = {"descr": np.dtype(dtype).str, "fortran_order": False,
                          "shape": declared_image}  # fmt: skip
                np.lib.format.write_array_header_1_0(npy, header)
                npy.write(bytes(64))
            else:
                np.lib.format.write_array(npy, np.ones(shape, dtype))
            zf.writestr(f"{key}.npy", npy.getvalue())
    result = check(out.getvalue())
    if declared_image is not None and "data" in fields:
        size = _declared(declared_image, fields["data"][1])
        if size > LIMIT:
            assert isinstance(result, DecodeError)
            assert result.reason == "too_large_decoded"
        elif size > 64:  # more than the 64 bytes behind the header
            assert isinstance(result, DecodeError)


# --- hypothesis: bytes -----------------------------------------------------------------------

GOOD = [
    good_message(np.random.default_rng(2), fmt=fmt, frames=frames)
    for fmt in ("hdf5", "npz")
    for frames in (1, 3)
]


@FUZZ
@given(st.sampled_from([b"", HDF5_SIGNATURE, *ZIP_SIGNATURES]), st.binary(max_size=2048))
def test_any_bytes_behind_any_signature_are_rejected_or_decoded(head: bytes, body: bytes) -> None:
    check(head + body)


@FUZZ
@given(
    st.sampled_from(range(len(GOOD))),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=8),
    st.one_of(st.none(), st.integers(0, 10**6)),
)
def test_a_real_message_with_flipped_bytes_or_cut_short_is_rejected_or_decoded(
    which: int, flips: list[tuple[int, int]], cut: int | None
) -> None:
    message = bytearray(GOOD[which])
    for offset, value in flips:
        message[offset % len(message)] = value
    if cut is not None:
        message = message[: cut % len(message)]
    check(bytes(message))
