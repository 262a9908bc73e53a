"""Messages built to make the decoder allocate, stall or read files: refused with a reason before
anything big is read; big-endian images, which are only unusual, decode."""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest

from peaknet_serve.errors import DecodeError
from peaknet_serve.wire import decode_message
from peaknet_serve.wire.config import DecodeConfig
from peaknet_serve.wire.crafted import good_message, raw_hdf5

CAP = DecodeConfig(max_decoded_bytes=1 << 20)  # 1 MiB: small bombs show the same thing


def chunk_bomb(chunk: tuple[int, ...]) -> bytes:
    """A (2, 1, 64, 64) float32 image (32 kB declared) stored in gzip chunks of ``chunk``,
    each written as one compressed block of zeros: HDF5 inflates a whole chunk to read it."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        dset = handle.create_dataset(
            "/data/data",
            shape=(2, 1, 64, 64),
            maxshape=(None, 1, None, None),
            chunks=chunk,
            dtype="float32",
            compression="gzip",
        )
        blob = zlib.compress(bytes(int(np.prod(chunk)) * 4), 1)
        for i in range(2):
            dset.id.write_direct_chunk((i, 0, 0, 0), blob)
        handle.create_dataset("/data/timestamp", data=np.arange(2, dtype=np.uint64))
    return buffer.getvalue()


def reason(message: bytes, config: DecodeConfig | None = None) -> str:
    with pytest.raises(DecodeError) as err:
        decode_message(message, config)
    return err.value.reason


def test_a_dataset_in_chunks_bigger_than_the_cap_is_refused_before_it_is_inflated() -> None:
    bomb = chunk_bomb((1, 1, 1024, 1024))  # 4 MiB per chunk, 32 kB declared
    assert len(bomb) < 64 << 10
    assert reason(bomb, CAP) == "too_large_chunk"
    batch = decode_message(chunk_bomb((1, 1, 64, 64)), CAP)  # one event per chunk: fine
    assert batch.images.shape == (2, 64, 64)


def many_fields(n: int) -> bytes:
    fields = {"/data/data": np.zeros((2, 1, 16, 16), "f4")}
    fields |= {f"/m/{i}": np.zeros(2, "u1") for i in range(n)}
    return raw_hdf5(fields)


def test_a_message_with_too_many_datasets_is_refused_before_they_are_read() -> None:
    assert reason(many_fields(300)) == "too_many_fields"
    assert reason(many_fields(20), DecodeConfig(max_fields=10)) == "too_many_fields"
    assert len(decode_message(many_fields(20)).metadata) >= 20


def test_an_npz_with_too_many_members_is_refused() -> None:
    buffer = io.BytesIO()
    np.savez(buffer, data=np.zeros((2, 1, 4, 4), "f4"), **{f"m{i}": np.zeros(2) for i in range(20)})
    assert reason(buffer.getvalue(), DecodeConfig(max_fields=10)) == "too_many_fields"
    assert len(decode_message(buffer.getvalue()).metadata) >= 20


def test_external_storage_and_virtual_datasets_are_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"s3cret" * 64)
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        handle["/data/data"] = np.zeros((2, 1, 8, 8), "f4")
        handle.create_dataset(
            "/data/x", shape=(2, 64), dtype="u1", external=[(str(secret), 0, 128)]
        )
    assert reason(buffer.getvalue()) == "external_storage"

    source = tmp_path / "source.h5"
    with h5py.File(source, "w") as handle:
        handle["x"] = np.arange(2, dtype="f8")
    layout = h5py.VirtualLayout(shape=(2,), dtype="f8")
    layout[:] = h5py.VirtualSource(str(source), "x", shape=(2,))
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        handle["/data/data"] = np.zeros((2, 1, 8, 8), "f4")
        handle.create_virtual_dataset("/data/x", layout)
    assert reason(buffer.getvalue()) == "external_storage"


def test_soft_and_external_links_are_not_followed(tmp_path: Path) -> None:
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as handle:
        handle["secret"] = np.full(2, 42.0)
    buffer = io.BytesIO(good_message(np.random.default_rng(0)))
    with h5py.File(buffer, "a") as handle:
        handle["/data/linked"] = h5py.ExternalLink(str(other), "/secret")
        handle["/data/again"] = h5py.SoftLink("/data/timestamp")
    batch = decode_message(buffer.getvalue())
    assert "linked" not in batch.metadata and "again" not in batch.metadata
    assert not any(np.array_equal(v, np.full(2, 42.0)) for v in batch.metadata.values())


@pytest.mark.parametrize("fmt", ["hdf5", "npz"])
def test_a_big_endian_float32_image_decodes_to_native_values(fmt: str) -> None:
    images = np.random.default_rng(1).random((2, 1, 8, 8), dtype=np.float32)
    if fmt == "hdf5":
        message = raw_hdf5({"/data/data": images.astype(">f4")})
    else:
        buffer = io.BytesIO()
        np.savez(buffer, data=images.astype(">f4"))
        message = buffer.getvalue()
    batch = decode_message(message)
    assert batch.images.dtype == np.dtype("float32")
    np.testing.assert_array_equal(batch.images, images[:, 0])
