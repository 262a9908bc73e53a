"""Timestamps in each of LCLStreamer's forms, and photon energy when the wavelength is missing:
through real encode/decode of HDF5 and NPZ messages, and into a real CXI file."""

from __future__ import annotations

import logging

import h5py
import numpy as np
import pytest

from peaknet_serve.cxi.config import CXIConfig
from peaknet_serve.cxi.writer import CXIWriter
from peaknet_serve.peaks.find import Peaks
from peaknet_serve.service.accounting import FrameLedger
from peaknet_serve.service.metadata_watch import MetadataCollector, MetadataWatch
from peaknet_serve.service.metrics import ledger_registry, render
from peaknet_serve.wire import DecodeConfig, FieldMap, decode_message, encode_hdf5, encode_npz
from peaknet_serve.wire.timestamps import to_packed

B = 4
SEC = np.array([1_700_000_000, 1_700_000_001, 1_700_000_001, 1_800_000_000], dtype=np.uint64)
NS = np.array([0, 5, 999_999_999, 123_456_789], dtype=np.uint64)
PACKED = (SEC << np.uint64(32)) | NS


def message(timestamp: np.ndarray | None, *, wavelength: bool = True, npz: bool = False) -> bytes:
    fields: dict[str, np.ndarray] = {"/data/data": np.ones((B, 8, 8), dtype=np.float32)}
    if wavelength:
        fields["/data/wavelength"] = np.full(B, 0.124)
    if timestamp is not None:
        fields["/data/timestamp"] = timestamp
    return encode_npz(fields) if npz else encode_hdf5(fields)


FORMS = {
    "packed uint64": PACKED,
    "int64 ns": (SEC * np.uint64(10**9) + NS).astype(np.int64),
    "psana1 string": np.array([f"{s}.{n}" for s, n in zip(SEC, NS, strict=True)]),
}


@pytest.mark.parametrize("npz", [False, True], ids=["hdf5", "npz"])
@pytest.mark.parametrize("form", sorted(FORMS))
def test_every_integer_and_string_form_becomes_the_same_packed_timestamp(
    form: str, npz: bool
) -> None:
    sent = FORMS[form]
    meta = decode_message(message(sent, npz=npz)).metadata
    assert meta["timestamp"].dtype == np.uint64
    np.testing.assert_array_equal(meta["timestamp"], PACKED)
    if form == "packed uint64":
        assert "timestamp_original" not in meta
    else:
        np.testing.assert_array_equal(meta["timestamp_original"], sent)


def test_psana1_string_nanoseconds_are_an_integer_not_a_decimal_fraction() -> None:
    packed, form = to_packed(np.array(["5.1234", "5.000001234"]))
    assert form == "psana1"
    assert [int(v) >> 32 for v in packed] == [5, 5]
    assert [int(v) & 0xFFFFFFFF for v in packed] == [1234, 1234]


def test_float_seconds_keep_what_float64_holds_and_the_original() -> None:
    seconds = np.array([1_700_000_000.25, 1_700_000_001.5, 0.0, np.nan])
    meta = decode_message(message(seconds)).metadata
    assert [int(v) >> 32 for v in meta["timestamp"]] == [1_700_000_000, 1_700_000_001, 0, 0]
    assert [int(v) & 0xFFFFFFFF for v in meta["timestamp"]] == [250_000_000, 500_000_000, 0, 0]
    np.testing.assert_array_equal(meta["timestamp_original"], seconds)


def test_unreadable_timestamps_become_zero_and_the_original_is_kept() -> None:
    sent = np.array(["None", "1700000000.5", "x.y", "1.2.3"])  # "None": LCLStreamer's fill
    meta = decode_message(message(sent)).metadata
    assert list(meta["timestamp"]) == [0, (1_700_000_000 << 32) | 5, 0, 0]
    assert list(meta["timestamp_original"]) == list(sent)


def test_a_forced_form_that_does_not_fit_the_dtype_is_a_counted_decode_error() -> None:
    from peaknet_serve.errors import DecodeError

    with pytest.raises(DecodeError) as err:
        decode_message(message(PACKED), DecodeConfig(timestamp_format="psana1"))
    assert err.value.reason == "bad_metadata"
    assert "decode.timestamp_format" in str(err.value)


def test_missing_wavelength_is_marked_and_the_fixed_energy_is_the_fallback() -> None:
    meta = decode_message(message(PACKED, wavelength=False)).metadata
    assert np.isnan(meta["photon_energy_ev"]).all()
    assert list(meta["photon_energy_source"]) == ["missing"] * B
    fixed = decode_message(message(PACKED, wavelength=False), DecodeConfig(photon_energy_ev=9500))
    np.testing.assert_array_equal(fixed.metadata["photon_energy_ev"], np.full(B, 9500.0))
    assert list(fixed.metadata["photon_energy_source"]) == ["fixed"] * B
    measured = decode_message(message(PACKED), DecodeConfig(photon_energy_ev=9500)).metadata
    np.testing.assert_allclose(measured["photon_energy_ev"], 1239.84198 / 0.124)
    assert list(measured["photon_energy_source"]) == ["wavelength"] * B


def test_batches_without_wavelength_are_counted_in_metrics_and_logged_once(caplog) -> None:
    config = DecodeConfig(fields=FieldMap(image="/data/data"))
    watch = MetadataWatch(config)
    registry = ledger_registry(FrameLedger())
    registry.register(MetadataCollector(watch))
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            watch.observe(decode_message(message(PACKED, wavelength=False), config))
        watch.observe(decode_message(message(PACKED), config))
    assert watch.snapshot() == {
        "batches_without_wavelength": 3,
        "frames_with_fixed_energy": 0,
        "frames_without_energy": 3 * B,
    }
    warnings = [r.getMessage() for r in caplog.records if "wavelength" in r.getMessage()]
    assert len(warnings) == 1
    assert "decode.photon_energy_ev" in warnings[0] and "decode.fields.wavelength" in warnings[0]
    text = render(registry).decode()
    assert "peaknet_batches_without_wavelength_total 3.0" in text
    assert 'peaknet_frames_energy_not_measured_total{energy="missing"} 12.0' in text


def test_cxi_says_why_an_energy_is_nan_and_keeps_both_timestamps(tmp_path) -> None:
    sent = FORMS["psana1 string"]
    batch = decode_message(message(sent, wavelength=False))
    with CXIWriter(CXIConfig(output_dir=str(tmp_path), write_mode="all"), writer_id="w") as writer:
        writer.write_batch(
            np.asarray(batch.images), [Peaks.empty()] * B, batch.metadata, [False] * B
        )
    (path,) = tmp_path.glob("*.cxi")
    with h5py.File(path) as f:
        assert np.isnan(f["/LCLS/photon_energy_eV"][()]).all()
        assert [s.decode() for s in f["/LCLS/photon_energy_source"][()]] == ["missing"] * B
        np.testing.assert_array_equal(f["/LCLS/timestamp"][()], PACKED)
        assert f["/LCLS/timestamp"].dtype == np.uint64
        assert [s.decode() for s in f["/LCLS/timestamp_original"][()]] == list(sent)


SECONDS = np.array([1_700_000_000.25, 1_700_000_001.5, 1_700_000_001.75, 1_800_000_000.0])
LCLSTREAMER_FORMS = {
    "int64 ns": (FORMS["int64 ns"], SEC, NS),
    "float64 seconds": (
        SECONDS,
        np.floor(SECONDS).astype(np.uint64),
        np.array([250_000_000, 500_000_000, 750_000_000, 0], dtype=np.uint64),
    ),
    "psana1 string": (FORMS["psana1 string"], SEC, NS),
}


@pytest.mark.parametrize("form", sorted(LCLSTREAMER_FORMS))
def test_cxi_timestamp_names_its_convention_and_reads_back_by_it(form: str, tmp_path) -> None:
    sent, sec, ns = LCLSTREAMER_FORMS[form]
    batch = decode_message(message(sent))
    with CXIWriter(CXIConfig(output_dir=str(tmp_path), write_mode="all"), writer_id="w") as writer:
        writer.write_batch(
            np.asarray(batch.images), [Peaks.empty()] * B, batch.metadata, [False] * B
        )
    (path,) = tmp_path.glob("*.cxi")
    with h5py.File(path) as f:
        stamp, original = f["/LCLS/timestamp"], f["/LCLS/timestamp_original"]
        assert stamp.attrs["convention"] == "(sec << 32) | ns"
        described = stamp.attrs["description"]
        for name in ("int64 nanoseconds", "float64 seconds", "psana1 '<sec>.<ns>'"):
            assert name in described
        values = stamp[()]
        assert original.attrs["convention"] == "as sent"
        assert "(sec << 32) | ns" in original.attrs["description"]
        kept = original[()]
    np.testing.assert_array_equal(values >> np.uint64(32), sec)  # read by the stated convention
    np.testing.assert_array_equal(values & np.uint64(0xFFFFFFFF), ns)
    if kept.dtype.kind == "O":
        kept = np.array([s.decode() for s in kept])
    np.testing.assert_array_equal(kept, sent)
