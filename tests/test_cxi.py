"""CXI files written by CXIWriter, read back with h5py the way CrystFEL and OM read them."""

from __future__ import annotations

from pathlib import Path

import h5py
import hdf5plugin
import numpy as np
import pytest
from pydantic import ValidationError

import peaknet_serve.cxi as cxi_pkg
from peaknet_serve.cxi import CXIConfig, CXIWriter, PanelLayout
from peaknet_serve.errors import ConfigError, WriterError
from peaknet_serve.peaks import Peaks, PeaksConfig, find_peaks

RESULT = "/entry_1/result_1"
DATA = "/entry_1/data_1/data"


def _peaks(n: int, *, panel: int = 0, seed: int = 0) -> Peaks:
    rng = np.random.default_rng(seed)
    return Peaks(
        x=rng.uniform(0, 9, n),
        y=rng.uniform(0, 7, n),
        total_intensity=rng.uniform(10, 100, n),
        n_pixels=rng.integers(2, 9, n).astype(np.int32),
        max_value=rng.uniform(5, 50, n),
        snr=rng.uniform(3, 30, n),
        panel=np.full(n, panel, dtype=np.int32),
    )


def _read_peaks_like_crystfel(path: Path, event: int) -> tuple[np.ndarray, ...]:
    with h5py.File(path, "r") as handle:
        result = handle[RESULT]
        n = int(result["nPeaks"][event])
        for name in ("peakXPosRaw", "peakYPosRaw", "peakTotalIntensity"):
            assert result[name].ndim == 2 and result[name].shape[1] >= n
        return (
            result["peakXPosRaw"][event, :n],
            result["peakYPosRaw"][event, :n],
            result["peakTotalIntensity"][event, :n],
        )


def test_public_names_are_exported() -> None:
    for name in cxi_pkg.__all__:
        assert hasattr(cxi_pkg, name), name


def test_hits_are_written_with_every_dataset(tmp_path) -> None:
    config = CXIConfig(output_dir=str(tmp_path), max_peaks=16)
    frames = np.arange(3 * 8 * 10, dtype=np.float64).reshape(3, 8, 10)
    peak_lists = [_peaks(5, seed=0), _peaks(1, seed=1), _peaks(12, seed=2)]
    with CXIWriter(config, writer_id="w0") as writer:
        assert writer.write(frames[0], peak_lists[0], {"photon_energy_eV": 9500.0}, hit=True)
        assert not writer.write(frames[1], peak_lists[1], {"photon_energy_eV": 9501.0}, hit=False)
        assert writer.write(frames[2], peak_lists[2], {"photon_energy_eV": 9502.0}, hit=True)
        assert writer.events_written == 2
    (path,) = writer.files_written
    assert path == tmp_path / "peaknet-w0-00000.cxi"
    with h5py.File(path, "r") as handle:
        data = handle[DATA]
        assert data.shape == (2, 8, 10) and data.dtype == np.float32
        assert data.chunks == (1, 8, 10) and data.maxshape == (None, 8, 10)
        assert data.id.get_create_plist().get_filter(0)[0] == hdf5plugin.Bitshuffle.filter_id
        np.testing.assert_array_equal(data[1], frames[2].astype(np.float32))
        result = handle[RESULT]
        assert result["nPeaks"][()].tolist() == [5, 12]
        for name in (
            "peakXPosRaw",
            "peakYPosRaw",
            "peakTotalIntensity",
            "peakNPixels",
            "peakMaximumValue",
            "peakSNR",
        ):
            assert result[name].shape == (2, 16) and result[name].dtype == np.float32
            assert result[name].maxshape == (None, 16)
        assert result["hit"][()].tolist() == [1, 1]
        np.testing.assert_allclose(result["peakNPixels"][1, :12], peak_lists[2].n_pixels)
        np.testing.assert_allclose(result["peakSNR"][0, :5], peak_lists[0].snr, rtol=1e-6)
        np.testing.assert_allclose(
            result["peakMaximumValue"][0, :5], peak_lists[0].max_value, rtol=1e-6
        )
        assert not result["peakXPosRaw"][0, 5:].any()
        assert handle["/LCLS/photon_energy_eV"][()].tolist() == [9500.0, 9502.0]
        assert handle["/cxi_version"][()] == 140
        assert handle.attrs["peaknet_events_offered"] == 3
        assert handle.attrs["peaknet_writer_id"] == "w0"
    x, y, intensity = _read_peaks_like_crystfel(path, 1)
    np.testing.assert_allclose(x, peak_lists[2].x, rtol=1e-6)
    np.testing.assert_allclose(y, peak_lists[2].y, rtol=1e-6)
    np.testing.assert_allclose(intensity, peak_lists[2].total_intensity, rtol=1e-6)


def test_no_cxi_exists_until_the_file_is_closed(tmp_path) -> None:
    writer = CXIWriter(CXIConfig(output_dir=str(tmp_path)), writer_id="w0")
    assert list(tmp_path.iterdir()) == []  # nothing before the first event
    writer.write(np.ones((4, 4)), _peaks(1), {}, hit=True)
    writer.flush()
    assert [p.name for p in tmp_path.iterdir()] == ["peaknet-w0-00000.cxi.inprogress"]
    assert writer.current_path == tmp_path / "peaknet-w0-00000.cxi.inprogress"
    assert list(tmp_path.glob("*.cxi")) == []
    writer.close()
    writer.close()
    assert [p.name for p in tmp_path.iterdir()] == ["peaknet-w0-00000.cxi"]
    assert writer.current_path is None
    with h5py.File(tmp_path / "peaknet-w0-00000.cxi", "r") as handle:
        assert handle[f"{RESULT}/nPeaks"].shape == (1,)


def test_rotation_names_and_existing_files(tmp_path) -> None:
    (tmp_path / "run-w1-00000.cxi").write_bytes(b"an earlier run's file")
    config = CXIConfig(
        output_dir=str(tmp_path), file_prefix="run", events_per_file=3, compression="none"
    )
    frames = np.zeros((7, 4, 4), dtype=np.uint16)
    with CXIWriter(config, writer_id="w1") as writer:
        written = writer.write_batch(
            frames, [_peaks(2)] * 7, {"timestamp": np.arange(7, dtype=np.uint64)}, [True] * 7
        )
        assert written == 7
        assert len(writer.files_written) == 2
    names = [p.name for p in writer.files_written]
    assert names == ["run-w1-00001.cxi", "run-w1-00002.cxi", "run-w1-00003.cxi"]
    assert writer.events_written == 7
    timestamps = []
    for path in writer.files_written:
        with h5py.File(path, "r") as handle:
            timestamps += handle["/LCLS/timestamp"][()].tolist()
            assert handle["/LCLS/timestamp"].dtype == np.uint64
    assert timestamps == list(range(7))
    assert (tmp_path / "run-w1-00000.cxi").read_bytes() == b"an earlier run's file"


def test_batch_with_non_hits_counts_offered_events_per_file(tmp_path) -> None:
    config = CXIConfig(output_dir=str(tmp_path), events_per_file=2)
    hits = [False, True, False, True, True, False]
    with CXIWriter(config, writer_id="w") as writer:
        assert writer.write_batch(np.zeros((6, 4, 4)), [_peaks(1)] * 6, {}, hits) == 3
    offered = []
    for path in writer.files_written:
        with h5py.File(path, "r") as handle:
            offered.append(int(handle.attrs["peaknet_events_offered"]))
    assert offered == [4, 2]


def test_metadata_types_missing_and_late_keys(tmp_path) -> None:
    config = CXIConfig(output_dir=str(tmp_path))
    with CXIWriter(config, writer_id="w") as writer:
        writer.write(
            np.zeros((4, 4)),
            _peaks(1),
            {
                "photon_energy_eV": 9000.0,
                "/timestamp": np.uint64(2**40 + 1),
                "run": "r0012",
                "detector_1/EncoderValue": 95.5,
                "count": np.int32(7),
                "flag": b"yes",
            },
            hit=True,
        )
        writer.write(
            np.zeros((4, 4)), _peaks(2), {"late": 1.5, "spectrum": np.ones(300000)}, hit=True
        )
    with h5py.File(writer.files_written[0], "r") as handle:
        lcls = handle["/LCLS"]
        assert np.isnan(lcls["photon_energy_eV"][1])
        assert lcls["photon_energy_eV"][0] == 9000.0
        assert lcls["timestamp"][()].tolist() == [2**40 + 1, 0]
        assert lcls["run"].asstr()[()].tolist() == ["r0012", "None"]
        assert lcls["flag"].asstr()[0] == "yes"
        assert h5py.check_string_dtype(lcls["run"].dtype) is not None
        assert lcls["detector_1/EncoderValue"][0] == 95.5
        assert lcls["count"].dtype == np.int32 and lcls["count"][()].tolist() == [7, -999]
        assert np.isnan(lcls["late"][0]) and lcls["late"][1] == 1.5
        assert lcls["spectrum"].shape == (2, 300000) and lcls["spectrum"][1].sum() == 300000
        assert lcls["spectrum"].chunks == (1, 300000)
        for name in lcls:
            if isinstance(lcls[name], h5py.Dataset):
                assert lcls[name].maxshape[0] is None


def test_peaks_mode_writes_no_image_and_all_mode_every_event(tmp_path) -> None:
    frames = np.ones((3, 4, 4))
    with CXIWriter(
        CXIConfig(output_dir=str(tmp_path / "p"), write_mode="peaks"), writer_id="w"
    ) as writer:
        writer.write_batch(frames, [_peaks(3)] * 3, {}, [True, False, True])
    with h5py.File(writer.files_written[0], "r") as handle:
        assert DATA not in handle
        assert handle[f"{RESULT}/nPeaks"][()].tolist() == [3, 3]
    with CXIWriter(
        CXIConfig(output_dir=str(tmp_path / "a"), write_mode="all"), writer_id="w"
    ) as writer:
        writer.write_batch(frames, [_peaks(3)] * 3, {}, [True, False, True])
    with h5py.File(writer.files_written[0], "r") as handle:
        assert handle[DATA].shape == (3, 4, 4)
        assert handle[f"{RESULT}/hit"][()].tolist() == [1, 0, 1]


def test_panel_stack_goes_to_the_slab_with_matching_peak_positions(tmp_path) -> None:
    rng = np.random.default_rng(3)
    stack = rng.normal(10.0, 1.0, (4, 8, 10))
    mask = np.zeros(stack.shape, dtype=bool)
    mask[2, 4:6, 3:5] = True
    mask[3, 1:3, 7:9] = True
    stack[mask] += 50.0
    peaks = find_peaks(mask, stack, PeaksConfig(centroid="unweighted"))
    with CXIWriter(CXIConfig(output_dir=str(tmp_path)), writer_id="w") as writer:
        writer.write(stack, peaks, {}, hit=True)
    with h5py.File(writer.files_written[0], "r") as handle:
        data = handle[DATA][0]
        assert data.shape == (32, 10)
        np.testing.assert_array_equal(data[16:24], stack[2].astype(np.float32))
        n = handle[f"{RESULT}/nPeaks"][0]
        xs, ys = handle[f"{RESULT}/peakXPosRaw"][0, :n], handle[f"{RESULT}/peakYPosRaw"][0, :n]
        offsets = handle.attrs["peaknet_panel_offsets"]
    assert ys.tolist() == [2 * 8 + 4.5, 3 * 8 + 1.5]
    assert xs.tolist() == [3.5, 7.5]
    assert offsets[:, 0].tolist() == [0, 8, 16, 24]
    # The brightest pixels of the written slab are the peaks' pixels.
    for x, y in zip(xs, ys, strict=True):
        assert data[int(y), int(x)] > 40.0


GEOM = """; two panels side by side, each of two ASICs stacked in ss
clen = 0.2
res = 10000
corner_y = 0
fs = +1.0x
ss = +1.0y
p0a0/corner_x = -11
p0a1/corner_x = -11
p0a0/min_fs = 0
p0a0/max_fs = 9
p0a0/min_ss = 0
p0a0/max_ss = 3
p0a1/min_fs = 0
p0a1/max_fs = 9
p0a1/min_ss = 4
p0a1/max_ss = 7
p1a0/min_fs = 12
p1a0/max_fs = 21
p1a0/min_ss = 2
p1a0/max_ss = 9
p1a0/corner_x = 5
bad_beamstop/min_fs = 3
bad_beamstop/max_fs = 4
bad_beamstop/min_ss = 2
bad_beamstop/max_ss = 3
bad_beamstop/panel = p0a0
"""


def test_panel_stack_through_a_geometry_file(tmp_path) -> None:
    geom = tmp_path / "det.geom"
    geom.write_text(GEOM)
    stack = np.stack([np.full((8, 10), 1.0), np.full((8, 10), 2.0)])
    peaks = Peaks(
        np.array([3.0]),
        np.array([5.0]),
        np.array([9.0]),
        np.array([4], np.int32),
        np.array([2.0]),
        np.array([5.0]),
        np.array([1], np.int32),
    )
    config = CXIConfig(output_dir=str(tmp_path), geometry_file=str(geom))
    with CXIWriter(config, writer_id="w") as writer:
        writer.write(stack, peaks, {}, hit=True)
    with h5py.File(writer.files_written[0], "r") as handle:
        data = handle[DATA][0]
        assert data.shape == (10, 22)
        assert (data[0:8, 0:10] == 1.0).all() and (data[2:10, 12:22] == 2.0).all()
        assert (data[:, 10:12] == 0).all()
        assert handle[f"{RESULT}/peakXPosRaw"][0, 0] == 15.0
        assert handle[f"{RESULT}/peakYPosRaw"][0, 0] == 7.0
        assert "p1a0/corner_x = 5" in handle.attrs["peaknet_geometry"]


def test_geometry_errors_say_what_is_wrong(tmp_path) -> None:
    geom = tmp_path / "det.geom"
    geom.write_text(GEOM)
    with pytest.raises(ConfigError, match="spans"):
        PanelLayout.from_geometry(geom, 2, (8, 12))
    with pytest.raises(ConfigError, match=r"no panels \[2\]"):
        PanelLayout.from_geometry(geom, 3, (8, 10))
    (tmp_path / "overlap.geom").write_text(
        GEOM.replace("p1a0/min_fs = 12", "p1a0/min_fs = 5").replace(
            "p1a0/max_fs = 21", "p1a0/max_fs = 14"
        )
    )
    with pytest.raises(ConfigError, match="overlap"):
        PanelLayout.from_geometry(tmp_path / "overlap.geom", 2, (8, 10))
    (tmp_path / "names.geom").write_text(GEOM.replace("p1a0/", "module1/"))
    with pytest.raises(ConfigError, match="p\\{N\\}"):
        PanelLayout.from_geometry(tmp_path / "names.geom", 2, (8, 10))
    with pytest.raises(ValidationError, match="missing.geom' cannot be read"):
        CXIConfig(output_dir=str(tmp_path), geometry_file=str(tmp_path / "missing.geom"))


def test_read_only_float32_frames_are_written(tmp_path) -> None:
    frames = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4)
    frames.flags.writeable = False  # as numpy arrays arrive from Ray's object store
    with CXIWriter(CXIConfig(output_dir=str(tmp_path)), writer_id="w") as writer:
        writer.write_batch(frames, [_peaks(1)] * 2, {}, [True, True])
    with h5py.File(writer.files_written[0], "r") as handle:
        np.testing.assert_array_equal(handle[DATA][()], frames)


def test_shape_change_starts_a_new_file(tmp_path) -> None:
    with CXIWriter(CXIConfig(output_dir=str(tmp_path)), writer_id="w") as writer:
        writer.write(np.zeros((4, 4)), _peaks(1), {}, hit=True)
        writer.write(np.zeros((6, 4)), _peaks(1), {}, hit=True)
    shapes = []
    for path in writer.files_written:
        with h5py.File(path, "r") as handle:
            shapes.append(handle[DATA].shape)
    assert shapes == [(1, 4, 4), (1, 6, 4)]


def test_too_many_peaks_keep_the_strongest_slots(tmp_path) -> None:
    peaks = _peaks(10)
    with CXIWriter(CXIConfig(output_dir=str(tmp_path), max_peaks=4), writer_id="w") as writer:
        writer.write(np.zeros((4, 4)), peaks, {}, hit=True)
    with h5py.File(writer.files_written[0], "r") as handle:
        assert handle[f"{RESULT}/nPeaks"][0] == 4
        written = np.sort(handle[f"{RESULT}/peakTotalIntensity"][0])
    np.testing.assert_allclose(written, np.sort(peaks.total_intensity)[-4:], rtol=1e-6)


@pytest.mark.parametrize("compression", ["none", "gzip", "bitshuffle_zstd"])
def test_compression_choices_read_back(tmp_path, compression) -> None:
    frame = np.random.default_rng(4).poisson(3.0, (16, 16)).astype(np.float32)
    config = CXIConfig(output_dir=str(tmp_path), compression=compression, compression_level=2)
    with CXIWriter(config, writer_id="w") as writer:
        writer.write(frame, _peaks(2), {}, hit=True)
    with h5py.File(writer.files_written[0], "r") as handle:
        np.testing.assert_array_equal(handle[DATA][0], frame)
        assert (handle[DATA].compression == "gzip") == (compression == "gzip")


def test_bad_arguments_and_unwritable_directory(tmp_path) -> None:
    with pytest.raises(WriterError, match="writer_id"):
        CXIWriter(CXIConfig(output_dir=str(tmp_path)), writer_id="a/b")
    blocker = tmp_path / "file"
    blocker.write_text("")
    writer = CXIWriter(CXIConfig(output_dir=str(blocker)), writer_id="w")
    with pytest.raises(WriterError, match="output_dir"):
        writer.write(np.zeros((4, 4)), _peaks(1), {}, hit=True)
    with CXIWriter(CXIConfig(output_dir=str(tmp_path / "ok")), writer_id="w") as writer:
        with pytest.raises(ValueError, match="one of each"):
            writer.write_batch(np.zeros((2, 4, 4)), [_peaks(1)], {}, [True, True])
        # a field with the wrong number of values is logged and left out; the events are written
        frames = np.zeros((2, 4, 4))
        assert writer.write_batch(frames, [_peaks(1)] * 2, {"a": [1.0]}, [True] * 2) == 2
