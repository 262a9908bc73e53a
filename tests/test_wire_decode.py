"""Decoding LCLStreamer messages: every format, compression, layout and bad input."""

from __future__ import annotations

import contextlib
import io
import json

import h5py
import numpy as np
import pytest

import peaknet_serve.wire as wire
from peaknet_serve.errors import DecodeError
from peaknet_serve.wire import (
    HDF5_COMPRESSIONS,
    LOSSLESS,
    NPZ_COMPRESSIONS,
    DecodeConfig,
    FieldMap,
    Quarantine,
    decode_message,
    encode_batch,
    encode_hdf5,
    encode_npz,
)

B, H, W = 5, 24, 40
RNG = np.random.default_rng(7)


def _fields(dtype: str = "float64", shape: tuple[int, ...] = (B, 1, H, W)) -> dict:
    image = (RNG.random(shape) * 1000).astype(dtype)
    return {
        "/data/data": image,
        "/data/wavelength": np.linspace(0.12, 0.14, shape[0]),
        "/data/timestamp": (np.arange(shape[0], dtype=np.uint64) << np.uint64(32)) + 7,
    }


def test_all_names_are_exported() -> None:
    assert sorted(wire.__all__) == sorted(set(wire.__all__))
    for name in wire.__all__:
        assert hasattr(wire, name), name


@pytest.mark.parametrize("compression", HDF5_COMPRESSIONS)
@pytest.mark.parametrize("dtype", ["float64", "float32", "uint16", "int32"])
def test_hdf5_roundtrip_every_compression_and_dtype(compression: str, dtype: str) -> None:
    fields = _fields(dtype)
    batch = decode_message(encode_hdf5(fields, compression=compression))
    assert len(batch) == B
    assert batch.images.shape == (B, H, W)
    assert batch.images.dtype == np.dtype(dtype)
    if compression in LOSSLESS:
        np.testing.assert_array_equal(batch.images, fields["/data/data"][:, 0])
    else:
        np.testing.assert_allclose(batch.images, fields["/data/data"][:, 0], atol=10)  # zfp: lossy
    np.testing.assert_array_equal(batch.metadata["timestamp"], fields["/data/timestamp"])
    assert batch.metadata["timestamp"].dtype == np.uint64
    np.testing.assert_array_equal(batch.metadata["wavelength"], fields["/data/wavelength"])
    np.testing.assert_allclose(
        batch.metadata["photon_energy_ev"], 1239.84198 / fields["/data/wavelength"]
    )


@pytest.mark.parametrize("compression", NPZ_COMPRESSIONS)
@pytest.mark.parametrize("dtype", ["float64", "float32", "uint16", "int32"])
def test_npz_roundtrip(compression: str, dtype: str) -> None:
    fields = _fields(dtype)
    batch = decode_message(encode_batch(fields, fmt="npz", compression=compression))
    np.testing.assert_array_equal(batch.images, fields["/data/data"][:, 0])
    np.testing.assert_array_equal(batch.metadata["timestamp"], fields["/data/timestamp"])
    assert set(batch.metadata) == {
        "timestamp",
        "wavelength",
        "photon_energy_ev",
        "photon_energy_source",
    }


def test_uncompressed_payloads_decode_zero_copy() -> None:
    fields = _fields("float32")
    for payload in (encode_hdf5(fields), encode_npz(fields, compression="none")):
        batch = decode_message(payload)
        assert not batch.images.flags.writeable
        assert np.shares_memory(batch.images, np.frombuffer(payload, dtype=np.uint8))
        np.testing.assert_array_equal(batch.images, fields["/data/data"][:, 0])


def test_memoryview_payload_is_accepted() -> None:
    fields = _fields()
    batch = decode_message(memoryview(encode_hdf5(fields, compression="gzip")))
    np.testing.assert_array_equal(batch.images, fields["/data/data"][:, 0])


@pytest.mark.parametrize("shape", [(B, H, W), (B, 1, H, W), (B, 4, H, W)])
def test_image_layouts(shape: tuple[int, ...]) -> None:
    fields = _fields("uint16", shape)
    batch = decode_message(encode_hdf5(fields, compression="bitshuffle_with_lz4"))
    expected = fields["/data/data"]
    expected = expected[:, 0] if expected.ndim == 4 and expected.shape[1] == 1 else expected
    assert batch.images.shape == expected.shape
    np.testing.assert_array_equal(batch.images, expected)


def test_partial_batch() -> None:
    fields = _fields(shape=(3, 1, H, W))
    assert len(decode_message(encode_hdf5(fields, compression="gzip"))) == 3


def test_root_level_paths_decode_with_default_config() -> None:
    fields = _fields()
    root = {"/data": fields["/data/data"], "/wavelength": fields["/data/wavelength"]}
    root["/timestamp"] = fields["/data/timestamp"]
    batch = decode_message(encode_hdf5(root))
    np.testing.assert_array_equal(batch.images, fields["/data/data"][:, 0])
    np.testing.assert_array_equal(batch.metadata["timestamp"], fields["/data/timestamp"])


def test_custom_field_map_and_passthrough_metadata() -> None:
    fields = _fields()
    payload = encode_hdf5(
        {
            "/det/img": fields["/data/data"],
            "/beam/lambda": fields["/data/wavelength"] * 10,
            "/evt/t": fields["/data/timestamp"],
            "/evt/encoder": np.arange(B, dtype=np.int64) * 3,
            "/evt/run": np.array(["r1"] * B),
            "/a/x": np.zeros(B),
            "/b/x": np.ones(B),
        }
    )
    config = DecodeConfig(
        fields=FieldMap(image="/det/img", wavelength="/beam/lambda", timestamp="/evt/t"),
        wavelength_unit="angstrom",
    )
    batch = decode_message(payload, config)
    meta = batch.metadata
    np.testing.assert_array_equal(meta["encoder"], np.arange(B) * 3)
    assert meta["encoder"].dtype == np.int64
    assert list(meta["run"]) == ["r1"] * B
    np.testing.assert_array_equal(meta["a/x"], np.zeros(B))  # ambiguous names keep their path
    np.testing.assert_array_equal(meta["b/x"], np.ones(B))
    np.testing.assert_allclose(
        meta["photon_energy_ev"], 12398.4198 / (fields["/data/wavelength"] * 10)
    )


def test_photon_energy_units_and_guards() -> None:
    fields = _fields()
    fields["/data/wavelength"] = np.array([0.1, 0.0, -1.0, np.nan, np.inf])
    energy = decode_message(encode_hdf5(fields)).metadata["photon_energy_ev"]
    assert energy.dtype == np.float64
    assert energy[0] == pytest.approx(12398.4198)
    assert np.isnan(energy[1:]).all()
    fields["/data/wavelength"] = np.full(B, 1.0e-10)
    config = DecodeConfig(wavelength_unit="m")
    energy = decode_message(encode_hdf5(fields), config).metadata["photon_energy_ev"]
    np.testing.assert_allclose(energy, 12398.4198)
    del fields["/data/wavelength"]
    assert np.isnan(decode_message(encode_hdf5(fields)).metadata["photon_energy_ev"]).all()


def test_npz_original_shape_regroups_panels() -> None:
    panels = (RNG.random((2 * 3, 1, H, W)) * 100).astype(np.float32)
    payload = encode_npz(
        {
            "data": panels,
            "data_original_shape": np.array([2, 3, H - 4, W - 2], dtype=np.int32),
            "timestamp": np.arange(2, dtype=np.uint64),
            "wavelength": np.full(2, 0.13),
        }
    )
    batch = decode_message(payload)
    assert batch.images.shape == (2, 3, H, W)
    assert batch.original_shape == (2, 3, H - 4, W - 2)
    np.testing.assert_array_equal(batch.images.reshape(6, 1, H, W), panels)
    assert "data_original_shape" not in batch.metadata


def _truncated_hdf5() -> bytes:
    return encode_hdf5(_fields())[:3000]


def _string_image() -> bytes:
    return encode_hdf5({"/data/data": np.array(["a", "b"]), "/data/timestamp": np.arange(2)})


BAD_INPUTS = {
    "empty": (b"", "empty"),
    "not a format": (b"hello world, not a payload", "unknown_format"),
    "truncated hdf5": (_truncated_hdf5(), "truncated"),
    "truncated npz": (encode_npz(_fields(), compression="none")[:-500], "truncated"),
    "zip header only": (b"PK\x03\x04" + b"\0" * 40, "truncated"),
    "hdf5 signature only": (b"\x89HDF\r\n\x1a\n" + b"\0" * 100, "corrupt"),
    "missing image": (encode_hdf5({"/data/timestamp": np.arange(3)}), "missing_image"),
    "npz missing image": (encode_npz({"timestamp": np.arange(3)}), "missing_image"),
    "rank 2": (encode_hdf5({"/data/data": np.zeros((4, 5))}), "bad_rank"),
    "rank 5": (encode_hdf5({"/data/data": np.zeros((2, 1, 1, 4, 5))}), "bad_rank"),
    "length mismatch": (
        encode_npz({"data": np.zeros((3, 4, 5)), "timestamp": np.arange(2)}),
        "length_mismatch",
    ),
    "scalar metadata": (
        encode_npz({"data": np.zeros((3, 4, 5)), "gain": np.float64(2.0)}),
        "length_mismatch",
    ),
    "complex image": (
        encode_hdf5({"/data/data": np.zeros((2, 4, 5), complex)}),
        "unsupported_dtype",
    ),
    "int64 npz image": (encode_npz({"data": np.zeros((2, 4, 5), np.int64)}), "unsupported_dtype"),
    "string image": (_string_image(), "unsupported_dtype"),
    "empty batch": (encode_npz({"data": np.zeros((0, 4, 5))}), "empty_batch"),
    "bad original shape": (
        encode_npz({"data": np.zeros((4, 1, 4, 5)), "data_original_shape": np.array([3, 2, 4, 5])}),
        "bad_shape",
    ),
    "object npz": (b"", "unsupported_dtype"),  # built below: needs pickling
}


def _object_npz() -> bytes:
    out = io.BytesIO()
    np.savez(out, data=np.zeros((2, 4, 5)), tags=np.array([{"a": 1}, None], dtype=object))
    return out.getvalue()


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_raises_decode_error_with_reason(case: str) -> None:
    payload, reason = BAD_INPUTS[case]
    if case == "object npz":
        payload = _object_npz()
    with pytest.raises(DecodeError) as info:
        decode_message(payload)
    assert info.value.reason == reason, str(info.value)
    assert str(info.value)


def test_oversize_and_wrong_format_and_non_bytes() -> None:
    payload = encode_hdf5(_fields())
    with pytest.raises(DecodeError) as info:
        decode_message(payload, DecodeConfig(max_message_bytes=len(payload) - 1))
    assert info.value.reason == "too_large"
    assert len(decode_message(payload, DecodeConfig(max_message_bytes=len(payload)))) == B
    with pytest.raises(DecodeError) as info:
        decode_message(payload, DecodeConfig(format="npz"))
    assert info.value.reason == "not_npz"
    with pytest.raises(DecodeError) as info:
        decode_message("a string")  # type: ignore[arg-type]
    assert info.value.reason == "not_bytes"


def test_random_garbage_never_raises_anything_else() -> None:
    good = encode_hdf5(_fields(), compression="gzip")
    rng = np.random.default_rng(3)
    for _ in range(30):
        corrupted = bytearray(good)
        idx = rng.integers(0, len(corrupted), 50)
        corrupted[idx[0] :: 97] = bytes(len(corrupted[idx[0] :: 97]))
        for i in idx:
            corrupted[i] = int(rng.integers(256))
        with contextlib.suppress(DecodeError):
            decode_message(bytes(corrupted))


def test_hdf5_file_with_compound_metadata_is_rejected() -> None:
    out = io.BytesIO()
    with h5py.File(out, "w") as fh:
        fh["/data/data"] = np.zeros((2, 4, 5), np.float32)
        fh["/data/pair"] = np.zeros(2, dtype=[("a", "i4"), ("b", "f4")])
    with pytest.raises(DecodeError) as info:
        decode_message(out.getvalue())
    assert info.value.reason == "bad_metadata"


def test_quarantine_saves_bytes_and_reason(tmp_path) -> None:
    quarantine = Quarantine(tmp_path / "q", max_files=2)
    payload = b"not a payload"
    try:
        decode_message(payload)
    except DecodeError as exc:
        saved = quarantine.save(payload, exc)
        quarantine.save(memoryview(payload), exc)
        assert quarantine.save(payload, exc) is None
    assert saved is not None
    assert saved.read_bytes() == payload
    record = json.loads(saved.with_suffix(".json").read_text())
    assert record["reason"] == "unknown_format"
    assert record["bytes"] == len(payload)
    assert (quarantine.saved, quarantine.skipped) == (2, 1)
    assert len(list((tmp_path / "q").glob("*.bin"))) == 2


@pytest.mark.parametrize("dtype", [">u2", "<f4", "u1", ">f8"])
@pytest.mark.parametrize("filters", [{}, {"shuffle": True}, {"fletcher32": True}])
def test_gzip_images_in_odd_chunks_decode_like_h5py_reads_them(dtype: str, filters: dict) -> None:
    """The decoder inflates deflate chunks itself (bounded): edge chunks, chunks never written
    (fill value), shuffle and byte order must come out as HDF5 gives them."""
    buffer = io.BytesIO()
    rng = np.random.default_rng(3)
    with h5py.File(buffer, "w") as handle:
        dset = handle.create_dataset(
            "/data/data",
            shape=(3, 1, 50, 70),
            chunks=(2, 1, 16, 32),
            dtype=dtype,
            compression="gzip",
            fillvalue=9,
            **filters,
        )
        dset[:, :, :40, :] = (rng.random((3, 1, 40, 70)) * 200).astype(dtype)
        expected = dset[()]
    batch = decode_message(buffer.getvalue())
    assert batch.images.dtype == expected.dtype.newbyteorder("=")
    np.testing.assert_array_equal(batch.images, expected[:, 0])
