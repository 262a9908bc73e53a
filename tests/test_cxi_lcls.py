"""What LCLS streams bring to the writer: run info strings, encoder values, assembled images,
odd types, live files read while written, and a bitshuffle filter shadowed by HDF5_PLUGIN_PATH."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from peaknet_serve import cli
from peaknet_serve.crystfel import DEBIAN_PLUGIN_PATH
from peaknet_serve.cxi import CXIConfig, CXIWriter
from peaknet_serve.cxi.geom_text import geometry_text
from peaknet_serve.peaks import Peaks

GEOMETRY_DIR = Path(__file__).parent / "data" / "geometry"


@pytest.fixture(autouse=True)
def _subcommands(monkeypatch) -> None:
    monkeypatch.setitem(cli.SUBCOMMANDS, "geom", "peaknet_serve.cli.geom")
    monkeypatch.setitem(cli.SUBCOMMANDS, "inspect", "peaknet_serve.cli.inspect")


def _peaks(n: int) -> Peaks:
    return Peaks(np.arange(n, dtype=float), np.arange(n, dtype=float), np.ones(n),
                 np.full(n, 3, np.int32), np.ones(n), np.ones(n), np.zeros(n, np.int32))


def test_per_event_strings_and_arrays_are_stored_element_wise(tmp_path, caplog) -> None:
    run_info = np.array([["mfxp1001", "r0012", "epix10k2M", "2026-11-30"],
                         ["mfxp1001", "r0012", "epix10k2M", "2026-11-30T01"]])
    metadata = {
        "run_info": run_info,
        "EncoderValue": np.array([-450.5, -450.25]),
        "ebeam": np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]),
        "assembled": np.ones((2, 40, 40)),  # an image: not copied by default
        "phase": np.array([1 + 2j, 3 - 1j]),  # no HDF5 numeric type of ours: kept as strings
    }
    config = CXIConfig(output_dir=str(tmp_path), clen_field="EncoderValue")
    with caplog.at_level(logging.WARNING), CXIWriter(config, writer_id="w") as writer:
        assert writer.write_batch(np.zeros((2, 8, 8)), [_peaks(1)] * 2, metadata, [True] * 2) == 2
    with h5py.File(writer.files_written[0]) as handle:
        lcls = handle["/LCLS"]
        assert lcls["run_info"].shape == (2, 4)
        assert lcls["run_info"].asstr()[()].tolist() == run_info.tolist()
        assert lcls["ebeam"].shape == (2, 3) and lcls["ebeam"][1, 2] == 6.0
        encoder = lcls["detector_1/EncoderValue"]
        assert encoder[()].tolist() == [-450.5, -450.25] and encoder.attrs["units"] == "mm"
        assert "EncoderValue" not in lcls and "assembled" not in lcls
        assert lcls["phase"].asstr()[()].tolist() == ["(1+2j)", "(3-1j)"]
    assert "'assembled'" in caplog.text and "copy_large_fields" in caplog.text
    assert "'phase' of dtype complex128 is stored as strings" in caplog.text

    config = CXIConfig(output_dir=str(tmp_path / "all"), copy_large_fields=["assembled"])
    with CXIWriter(config, writer_id="w") as writer:
        writer.write_batch(np.zeros((2, 8, 8)), [_peaks(1)] * 2, metadata, [True] * 2)
    with h5py.File(writer.files_written[0]) as handle:
        assert handle["/LCLS/assembled"].shape == (2, 40, 40)
        assert handle["/LCLS/EncoderValue"].shape == (2,)  # no clen_field: its own name


def test_inspect_and_geom_read_a_file_still_being_written(tmp_path) -> None:
    config = CXIConfig(output_dir=str(tmp_path), events_per_file=100)
    command = str(Path(sys.executable).with_name("peaknet-serve"))
    with CXIWriter(config, writer_id="w") as writer:
        writer.write_batch(np.zeros((3, 2, 8, 8)), [_peaks(2)] * 3,
                           {"photon_energy_eV": np.full(3, 9500.0)}, [True] * 3)
        writer.flush()
        live = writer.current_path
        assert live is not None and live.name.endswith(".cxi.inprogress")
        # another process, as an operator's shell is, while the writer holds the file open
        inspect = subprocess.run([command, "inspect", str(live)], capture_output=True,
                                 text=True, check=False, timeout=120)
        assert inspect.returncode == 0, inspect.stderr
        assert "(still being written)" in inspect.stdout and "events 3" in inspect.stdout
        geom = subprocess.run([command, "geom", "--cxi", str(live)], capture_output=True,
                              text=True, check=False, timeout=120)
        assert geom.returncode == 0, geom.stderr
        assert "still being written" in geom.stderr
        assert "HDF5_USE_FILE_LOCKING=FALSE" in geom.stderr  # or indexamajig fails on the lock
        assert ";   HDF5_USE_FILE_LOCKING=FALSE" in geom.stdout
        assert "; NOTE: the file is still being written (.cxi.inprogress)" in geom.stdout
        assert "p1/min_ss = 8" in geom.stdout


def test_geom_says_how_crystfel_reads_bitshuffle(tmp_path) -> None:
    frames = np.zeros((1, 8, 8))
    for compression in ("bitshuffle_lz4", "gzip"):
        config = CXIConfig(output_dir=str(tmp_path / compression), compression=compression)
        with CXIWriter(config, writer_id="w") as writer:
            writer.write_batch(frames, [_peaks(1)], {}, [True])
        text = geometry_text(writer.files_written[0])
        assert ("HDF5_PLUGIN_PATH=" in text) == (compression == "bitshuffle_lz4")
        assert ("apt-get install bitshuffle" in text) == (compression == "bitshuffle_lz4")


def test_geom_takes_clen_from_the_option_the_geometry_or_the_encoder(tmp_path) -> None:
    stack = np.zeros((1, 32, 185, 388), np.float32)
    energy = {"photon_energy_eV": np.array([9500.0]), "EncoderValue": np.array([-0.45])}
    config = CXIConfig(output_dir=str(tmp_path / "cspad"), clen_field="EncoderValue",
                       clen_unit="m", geometry_file=str(GEOMETRY_DIR / "cspad-cxi.geom"))
    with CXIWriter(config, writer_id="w") as writer:
        writer.write_batch(stack, [_peaks(1)], energy, [True])
    cspad = writer.files_written[0]
    assert "clen = /LCLS/detector_1/EncoderValue m" in geometry_text(cspad).splitlines()
    assert "clen = 0.2" in geometry_text(cspad, clen=0.2).splitlines()
    assert "q2a7/coffset = 0.573224" in geometry_text(cspad).splitlines()

    config = CXIConfig(output_dir=str(tmp_path / "jf"),
                       geometry_file=str(GEOMETRY_DIR / "jungfrau4m-cxi.geom"))
    with CXIWriter(config, writer_id="w") as writer:
        writer.write_batch(np.zeros((1, 8, 512, 1024)), [_peaks(1)], energy, [True])
    lines = geometry_text(writer.files_written[0]).splitlines()
    assert "clen = 0.0875" in lines  # the geometry's, before the stream's encoder

    config = CXIConfig(output_dir=str(tmp_path / "epix"),
                       geometry_file=str(GEOMETRY_DIR / "epix10k2m-mfx.geom"))
    with CXIWriter(config, writer_id="w") as writer:
        writer.write_batch(np.zeros((1, 16, 352, 384)), [_peaks(1)], energy, [True])
    lines = geometry_text(writer.files_written[0]).splitlines()
    clen = [line for line in lines if line.startswith("clen")]
    assert clen == ["clen = 0.1 ; FIXME: the detector distance in metres (or geom --clen)"]
    mask = str((GEOMETRY_DIR / "epix10k2m-mask.h5").resolve())
    assert f"p15a3/mask0_file = {mask}" in lines and "p15a3/mask0_goodbits = 0x1" in lines
    assert "p15a3/adu_per_eV = 0.001" in lines and "p15a3/res = 10000" in lines


_SHADOWED_WRITE = """
import numpy as np
from peaknet_serve.cxi import CXIConfig, CXIWriter
from peaknet_serve.errors import WriterError
from peaknet_serve.peaks import Peaks
peaks = Peaks(*(np.zeros(1),) * 6, np.zeros(1, np.int32))
writer = CXIWriter(CXIConfig(output_dir={out!r}), writer_id="w")
try:
    writer.write(np.zeros((8, 8)), peaks, {{}}, hit=True)
except WriterError as exc:
    print("WriterError:", exc)
"""


def test_a_shadowed_bitshuffle_filter_is_a_write_error_naming_the_fix(tmp_path) -> None:
    if not (Path(DEBIAN_PLUGIN_PATH) / "libh5bshuf.so").exists():
        message = "Debian's bitshuffle HDF5 plugin is not installed (../shared/crystfel/build.sh)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    env = dict(os.environ, HDF5_PLUGIN_PATH=DEBIAN_PLUGIN_PATH)
    result = subprocess.run(
        [sys.executable, "-c", _SHADOWED_WRITE.format(out=str(tmp_path))],
        env=env, capture_output=True, text=True, check=False, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "WriterError: cannot create" in result.stdout
    assert f"HDF5_PLUGIN_PATH={DEBIAN_PLUGIN_PATH}" in result.stdout
    assert "unset HDF5_PLUGIN_PATH" in result.stdout and "compression: gzip" in result.stdout
    assert not list(tmp_path.iterdir())  # no empty file left behind


def _epix_file(tmp_path: Path, coffset: float) -> Path:
    """A CXI file written with the ePix10k2M geometry, every panel at ``coffset`` (OM's MFX file
    has clen commented out and coffset = -0.215382)."""
    text = (GEOMETRY_DIR / "epix10k2m-mfx.geom").read_text()
    geom = tmp_path / "epix.geom"
    geom.write_text(text.replace(";coffset = 0.0", f"coffset = {coffset}"))
    (tmp_path / "epix10k2m-mask.h5").symlink_to(GEOMETRY_DIR / "epix10k2m-mask.h5")
    config = CXIConfig(output_dir=str(tmp_path / "out"), geometry_file=str(geom))
    with CXIWriter(config, writer_id="w") as writer:
        writer.write_batch(np.zeros((1, 16, 352, 384)), [_peaks(1)], {}, [True])
    return writer.files_written[0]


def test_geom_says_the_camera_length_and_refuses_one_not_above_zero(tmp_path, capsys) -> None:
    cxi = _epix_file(tmp_path, -0.215382)
    out = tmp_path / "epix.geom.out"
    # the placeholder clen gives a camera length of 0.1 m, not clen + coffset = -0.115 m
    assert cli.main(["geom", "--cxi", str(cxi), "-o", str(out)]) == 0
    clen = [line for line in out.read_text().splitlines() if line.startswith("clen")]
    assert clen[0].startswith("clen = 0.315382 ; FIXME")
    err = capsys.readouterr().err
    assert "camera length (clen + coffset -0.215382) = 0.1 m for p0a0..p15a3 (64 panels)" in err
    # --clen 0.25 is clen, not the distance: the camera length is said, 0.034618 m
    assert cli.main(["geom", "--cxi", str(cxi), "--clen", "0.25", "-o", str(out)]) == 0
    assert "= 0.034618 m for p0a0..p15a3" in capsys.readouterr().err
    # --clen 0.2 gives -0.015 m: refused, nothing written
    out.unlink()
    assert cli.main(["geom", "--cxi", str(cxi), "--clen", "0.2", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "camera length (clen + coffset) would be <= 0" in err and "-0.015382 m" in err
    assert not out.exists()
    with pytest.raises(SystemExit):
        cli.main(["geom", "--cxi", str(cxi), "--clen", "-0.1"])
    assert "must be above 0 m" in capsys.readouterr().err


def test_geom_summarises_fixme_values_and_hints_on_stderr(tmp_path, capsys) -> None:
    config = CXIConfig(output_dir=str(tmp_path / "z"), compression="bitshuffle_zstd")
    with CXIWriter(config, writer_id="w") as writer:
        writer.write_batch(np.zeros((1, 2, 8, 8)), [_peaks(1)], {}, [True])
    cxi = writer.files_written[0]
    assert cli.main(["geom", "--cxi", str(cxi), "-o", str(tmp_path / "g.geom"),
                     "--res", "5000"]) == 0
    err = capsys.readouterr().err
    assert "FIXME adu_per_photon = 1 (2 panels)" in err
    assert "FIXME clen = 0.1" in err and "FIXME photon_energy = 9500" in err
    assert "FIXME panels laid flat" in err
    assert "bitshuffle 0.3.5" in err and "hdf5plugin.PLUGIN_PATH" in err
    text = (tmp_path / "g.geom").read_text()
    assert "hdf5plugin.PLUGIN_PATH" in text and "p0/res = 5000" in text
    # --res with a geometry in the file: said to be ignored
    cxi = _epix_file(tmp_path, 0.0)
    assert cli.main(["geom", "--cxi", str(cxi), "--res", "5000", "-o", str(tmp_path / "e")]) == 0
    assert "--res 5000 ignored" in capsys.readouterr().err


def test_geom_and_inspect_say_a_file_is_not_ours(tmp_path, capsys) -> None:
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as handle:
        handle["data"] = np.zeros(3)
    assert cli.main(["geom", "--cxi", str(other)]) == 1
    assert "not a peaknet-serve CXI file" in capsys.readouterr().err
    assert cli.main(["inspect", str(other)]) == 1
    assert "not a peaknet-serve CXI file" in capsys.readouterr().err


def test_metadata_names_with_slashes_or_dots_stay_flat_under_lcls(tmp_path, caplog) -> None:
    config = CXIConfig(output_dir=str(tmp_path))
    fields = {"a/b": np.array([1.0]), "../../escape": np.array([2.0]), "..": np.array([3.0]),
              "plain": np.array([4.0])}
    with caplog.at_level(logging.WARNING), CXIWriter(config, writer_id="w") as writer:
        writer.write_batch(np.zeros((1, 8, 8)), [_peaks(1)], fields, [True])
    with h5py.File(writer.files_written[0], "r") as handle:
        lcls = handle["/LCLS"]
        stored = {name: float(lcls[name][0]) for name in lcls
                  if isinstance(lcls[name], h5py.Dataset) and name != "photon_energy_eV"}
        groups = [name for name in lcls if isinstance(lcls[name], h5py.Group)]
        top = set(handle)
    assert stored == {"a_b": 1.0, "____escape": 2.0, "_": 3.0, "plain": 4.0}
    assert groups == []
    assert top == {"entry_1", "LCLS", "cxi_version"}
    assert "'a/b' stored as /LCLS/a_b" in caplog.text


def test_geom_refuses_an_encoder_clen_whose_camera_length_is_not_above_zero(tmp_path) -> None:
    from peaknet_serve.cxi.geom_text import CameraLengthError, build

    config = CXIConfig(output_dir=str(tmp_path), clen_field="EncoderValue", clen_unit="mm",
                       geometry_file=str(GEOMETRY_DIR / "cspad-cxi.geom"))
    with CXIWriter(config, writer_id="w") as writer:
        writer.write_batch(np.zeros((2, 32, 185, 388), np.float32), [_peaks(1)] * 2,
                           {"EncoderValue": np.array([-450.0, -600.0])}, [True, True])
    # coffset 0.573224 m: -450 mm gives 0.123 m, -600 mm gives -0.027 m
    with pytest.raises(CameraLengthError, match=r"clen -0.6 \+ coffset 0.573224 = -0.026776 m"):
        build(writer.files_written[0])
    notes = build(writer.files_written[0], clen=0.3).notes
    assert "camera length (clen + coffset 0.573224) = 0.873224 m for q0a0..q3a15 (64 panels)" \
        in notes
