"""Messages built to make the decoder allocate, stall or read files: refused with a reason before
anything big is read; big-endian images, which are only unusual, decode."""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np
import pytest

from peaknet_serve.errors import DecodeError
from peaknet_serve.wire import crafted, decode_message
from peaknet_serve.wire.config import DecodeConfig
from peaknet_serve.wire.crafted import (
    chunk_bomb,
    good_message,
    long_strings,
    many_fields,
    raw_chunks,
    raw_hdf5,
    tiny_chunks,
    zero_itemsize_field,
)

CAP = DecodeConfig(max_decoded_bytes=1 << 20)  # 1 MiB: small bombs show the same thing


def zeros_bomb(chunk: tuple[int, ...]) -> bytes:
    """``chunk_bomb`` whose chunks are each one compressed block of zeros (decodable)."""
    return chunk_bomb(chunk, zlib.compress(bytes(int(np.prod(chunk)) * 4), 1))


def reason(message: bytes, config: DecodeConfig | None = None) -> str:
    with pytest.raises(DecodeError) as err:
        decode_message(message, config)
    return err.value.reason


def test_a_dataset_in_chunks_bigger_than_the_cap_is_refused_before_it_is_inflated() -> None:
    bomb = zeros_bomb((1, 1, 1024, 1024))  # 4 MiB per chunk, 32 kB declared
    assert len(bomb) < 64 << 10
    assert reason(bomb, CAP) == "too_large_chunk"
    batch = decode_message(zeros_bomb((1, 1, 64, 64)), CAP)  # one event per chunk: fine
    assert batch.images.shape == (2, 64, 64)


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


def test_a_dataset_in_a_million_tiny_chunks_is_refused_before_it_is_read() -> None:
    bomb = tiny_chunks((16, 1, 256, 256), (1, 1, 1, 1))  # 1M chunks: HDF5 took 4 GB to read it
    assert len(bomb) < 16 << 10
    assert reason(bomb) == "too_many_chunks"
    assert reason(tiny_chunks((2, 1, 64, 64), (1, 1, 8, 8)), DecodeConfig(max_chunks=64)) == (
        "too_many_chunks"
    )
    batch = decode_message(tiny_chunks((2, 1, 64, 64), (1, 1, 8, 8)))  # 128 chunks: fine
    assert batch.images.shape == (2, 64, 64) and batch.images[0, 0, 0] == 7


def test_a_gzip_chunk_that_inflates_past_its_chunk_is_refused_before_hdf5_inflates_it() -> None:
    # 64 MiB of zeros in a 64 kB zlib stream, for a 16 kB chunk: HDF5's deflate filter grows its
    # buffer until the stream ends (1 GiB of it took 2.1 GB of RSS).
    stream = zlib.compress(bytes(64 << 20), 9)
    assert reason(raw_chunks({"compression": "gzip"}, stream)) == "overlong_chunk"
    assert (
        reason(raw_chunks({"compression": "gzip", "shuffle": True, "fletcher32": True}, stream))
        == "overlong_chunk"
    )
    honest = zlib.compress(np.full((64, 64), 2.5, np.float32).tobytes())
    batch = decode_message(raw_chunks({"compression": "gzip"}, honest))
    assert batch.images.shape == (2, 64, 64) and float(batch.images[1, 5, 5]) == 2.5


@pytest.mark.parametrize("name", ["lz4", "bitshuffle_lz4", "bitshuffle_zstd", "zstd", "blosc"])
def test_a_plugin_chunk_that_decodes_past_its_chunk_is_refused(name: str) -> None:
    # HDF5 does not check a filter's output against the chunk: these filters allocate the size in
    # the stream's header (a 256 MiB stream of each decoded, at 590 MB RSS, before the check).
    filters = {
        "lz4": hdf5plugin.LZ4(),
        "bitshuffle_lz4": hdf5plugin.Bitshuffle(),
        "bitshuffle_zstd": hdf5plugin.Bitshuffle(cname="zstd"),
        "zstd": hdf5plugin.Zstd(),
        "blosc": hdf5plugin.Blosc(),
    }[name]
    big = io.BytesIO()
    with h5py.File(big, "w") as handle:  # an honest 4 MiB chunk of zeros, its stream taken raw
        dset = handle.create_dataset(
            "x", data=np.zeros(1 << 20, "f4"), chunks=(1 << 20,), **filters
        )
        stream = dset.id.read_direct_chunk((0,))[1]
    assert reason(raw_chunks(dict(filters), stream)) == "overlong_chunk"
    honest = io.BytesIO()
    with h5py.File(honest, "w") as handle:
        image = np.random.default_rng(2).random((2, 1, 64, 64), dtype=np.float32)
        handle.create_dataset("/data/data", data=image, chunks=(1, 1, 64, 64), **filters)
    np.testing.assert_array_equal(decode_message(honest.getvalue()).images, image[:, 0])


def test_a_long_variable_length_string_is_charged_before_the_fixed_width_array_is_built() -> None:
    # 2,000 elements x 16 kB x 4 bytes = 128 MB of fixed-width str from a 30 kB message (a 1 MB
    # element took 7.7 GB).
    assert reason(long_strings(2000, 16 << 10), CAP) == "too_large_decoded"
    batch = decode_message(long_strings(4, 100), CAP)
    assert batch.metadata["note"][0] == "x" * 100 and batch.metadata["note"][1] == ""


def lclstreamer_image(filters: dict, every_field: bool = True) -> tuple[bytes, np.ndarray]:
    """A (2, 1, 64, 64) float32 image stored as LCLStreamer does (one event a chunk, the
    compression on every field unless not ``every_field``), and the image."""
    image = np.random.default_rng(5).random((2, 1, 64, 64), dtype=np.float32)
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        handle.create_dataset("/data/data", data=image, chunks=(1, 1, 64, 64), **filters)
        wavelength = filters if every_field else {}
        handle.create_dataset("/data/wavelength", data=np.full(2, 0.13), chunks=(1,), **wavelength)
    return buffer.getvalue(), image


def test_a_zfp_header_declaring_a_bigger_field_than_the_chunk_is_refused() -> None:
    # H5Z-ZFP allocates the field its header (in the filter's cd_values, in the message) declares:
    # 1 GiB for a 16 kB chunk, then read the stream past its end and crashed the process.
    assert reason(crafted.zfp_declared_field()) == "overlong_chunk"
    message, image = lclstreamer_image(dict(hdf5plugin.Zfp()))  # LCLStreamer's "zfp"
    batch = decode_message(message)
    np.testing.assert_allclose(batch.images, image[:, 0], atol=1e-3)
    np.testing.assert_allclose(batch.metadata["wavelength"], 0.13, rtol=1e-6)
    accurate, image = lclstreamer_image(dict(hdf5plugin.Zfp(reversible=True)))
    np.testing.assert_array_equal(decode_message(accurate).images, image[:, 0])


def test_an_szip_chunk_whose_header_says_more_than_its_chunk_is_refused() -> None:
    # HDF5's szip filter allocates the size in the stream's first 4 bytes (a 2.2 MB stream
    # decoded 64 MiB for a 16 kB chunk, 200 MB of RSS).
    assert reason(crafted.overlong_szip_chunks()) == "overlong_chunk"
    message, image = lclstreamer_image({"compression": "szip"}, every_field=False)  # 8+ pixels
    np.testing.assert_array_equal(decode_message(message).images, image[:, 0])


def test_filters_the_decoder_cannot_bound_are_refused_with_a_reason() -> None:
    # blosc2 allocates what a chunk inside its frame declares (a 6 kB message decoded 64 MiB);
    # bzip2 and lzf grow their buffer until the stream ends.
    with pytest.raises(DecodeError, match="blosc2 filter") as refused:
        decode_message(crafted.blosc2_chunks())
    assert refused.value.reason == "unbounded_filter"
    for filters in (dict(hdf5plugin.Blosc2()), dict(hdf5plugin.BZip2()), {"compression": "lzf"}):
        assert reason(lclstreamer_image(filters)[0]) == "unbounded_filter", filters


def test_a_stream_sized_filter_under_another_is_refused() -> None:
    """zstd's frame under deflate only exists once deflate has run: it cannot be checked."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_chunk((1, 1, 64, 64))
        dcpl.set_filter(32015, h5py.h5z.FLAG_MANDATORY, ())  # zstd first, on write
        dcpl.set_deflate(4)
        space = h5py.h5s.create_simple((2, 1, 64, 64))
        handle.create_group("data")
        h5py.h5d.create(handle.id, b"/data/data", h5py.h5t.NATIVE_FLOAT, space, dcpl)
        handle["/data/data"][...] = 1.0
    with pytest.raises(DecodeError, match="under another filter") as refused:
        decode_message(buffer.getvalue())
    assert refused.value.reason == "unbounded_filter"


def test_scaleoffset_parameters_declaring_more_than_the_chunk_are_refused() -> None:
    # HDF5's scaleoffset (and nbit) filters allocate elements x size from their cd_values.
    image = np.arange(2 * 64 * 64, dtype=np.int32).reshape(2, 1, 64, 64)
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        handle.create_dataset("/data/data", data=image, chunks=(1, 1, 64, 64), scaleoffset=0)
    honest = buffer.getvalue()
    np.testing.assert_array_equal(decode_message(honest).images, image[:, 0])
    declared = np.array([2, 0, 4096, 0, 4], "<u4").tobytes()  # scale type, factor, elements, ...
    assert honest.count(declared) == 1
    bomb = honest.replace(declared, np.array([2, 0, 1 << 26, 0, 4], "<u4").tobytes())
    assert reason(bomb) == "overlong_chunk"


def test_a_field_of_zero_bytes_per_element_is_refused_however_many_it_declares() -> None:
    """A 3 kB NPZ whose extra member declares 2**41 elements of ``|V0``: sized 0 bytes, it passed
    the decoded-size budget, and the writer's row indexing then walked every element, wedging
    the writer replica."""
    with pytest.raises(DecodeError) as refused:
        decode_message(zero_itemsize_field())
    assert refused.value.reason == "unsupported_dtype"
    assert "zero bytes per element" in str(refused.value)
