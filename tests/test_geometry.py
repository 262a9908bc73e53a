"""CrystFEL geometry files in: the four LCLS detectors read, what cannot be honoured refused with
its line named, and the bad-pixel mask their bad regions and mask files give."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from pydantic import ValidationError

from peaknet_serve.config import load_service_config
from peaknet_serve.cxi import CXIConfig, CXIWriter
from peaknet_serve.cxi.geometry import parse_geometry, read_geometry, stack_index
from peaknet_serve.cxi.geometry_bad_pixels import bad_pixel_mask
from peaknet_serve.errors import ConfigError
from peaknet_serve.peaks import Peaks

GEOMETRY_DIR = Path(__file__).parent / "data" / "geometry"
#: file -> the frames LCLStreamer sends for that detector (psana's shapes)
DETECTORS = {
    "epix10k2m-mfx.geom": (16, 352, 384),
    "jungfrau4m-cxi.geom": (8, 512, 1024),
    "cspad-cxi.geom": (32, 185, 388),
    "rayonix-mfx.geom": (1920, 1920),
}


def _peaks(panel: int) -> Peaks:
    return Peaks(np.array([10.0]), np.array([5.0]), np.array([100.0]), np.array([4], np.int32),
                 np.array([9.0]), np.array([6.0]), np.array([panel], np.int32))


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_the_lcls_detector_geometries_place_every_stack_panel(name: str, tmp_path: Path) -> None:
    shape = DETECTORS[name]
    geometry = read_geometry(GEOMETRY_DIR / name)
    assert len(geometry.panels) == (64 if len(shape) == 3 else 1)
    extra = {"clen_field": "EncoderValue"} if name.startswith("cspad") else {}
    config = CXIConfig(output_dir=str(tmp_path), geometry_file=str(GEOMETRY_DIR / name), **extra)
    frame = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    last = shape[0] - 1 if len(shape) == 3 else 0
    with CXIWriter(config, writer_id="w") as writer:
        writer.write(frame, _peaks(last), {}, hit=True)
    with h5py.File(writer.files_written[0]) as handle:
        stored = handle["/entry_1/data_1/data"][0]
        x = handle["/entry_1/result_1/peakXPosRaw"][0, 0]
        y = handle["/entry_1/result_1/peakYPosRaw"][0, 0]
    # the peak's pixel in the written array holds the value of its pixel in the frame
    expected = frame[last, 5, 10] if len(shape) == 3 else frame[5, 10]
    assert stored[int(y), int(x)] == expected
    # every pixel of the frame is written once, where the geometry puts it
    assert np.isin(frame.ravel()[:: 9973], stored).all()


def test_cspad_asic_pairs_are_the_psana_panels() -> None:
    assert [stack_index(n) for n in ("q0a0", "q0a1", "q0a2", "q1a0", "q3a15")] == [0, 0, 1, 8, 31]
    assert [stack_index(n) for n in ("p0", "p7a7", "p15a3", "rayonix")] == [0, 7, 15, None]
    geometry = read_geometry(GEOMETRY_DIR / "cspad-cxi.geom")
    from peaknet_serve.cxi.layout import PanelLayout

    layout = PanelLayout.for_frames(geometry, (32, 185, 388))
    assert layout.stored_shape == (1480, 1552)
    assert layout.offsets[9].tolist() == [185, 388]  # quadrant 1, module 1


def test_bad_pixel_mask_from_bad_regions_and_the_mask_file() -> None:
    epix = read_geometry(GEOMETRY_DIR / "epix10k2m-mfx.geom")
    bad = bad_pixel_mask(epix, (16, 352, 384))
    assert bad.shape == (16, 352, 384) and bad.dtype == bool
    assert bad[0, :3].all() and not bad[0, 3:, :].all()  # the mask file's first rows
    assert bad[11, 4000 - 11 * 352, 17]  # a single pixel of the mask file
    assert bad[3, 1232 - 3 * 352 :, 100:102].all()  # bad_p3a2col, fs/ss, panel p3a2
    assert not bad[3, 1232 - 3 * 352 :, 102].any()
    assert 0 < bad.mean() < 0.05
    rayonix = read_geometry(GEOMETRY_DIR / "rayonix-mfx.geom")
    bad = bad_pixel_mask(rayonix, (1920, 1920))
    # the beam stop in lab x/y: corner (-962.31, -955.87), so x = 0 at fs 962.31
    assert bad[960, 962] and bad[955 + 300, 962] and not bad[955 - 40, 962]
    assert not bad[960, 962 + 30]
    jungfrau = bad_pixel_mask(read_geometry(GEOMETRY_DIR / "jungfrau4m-cxi.geom"), (8, 512, 1024))
    assert jungfrau[5, :256, 768:].all() and jungfrau.sum() == 256 * 256


def test_an_unreadable_mask_file_is_left_out_with_a_log_line(tmp_path, caplog) -> None:
    text = (GEOMETRY_DIR / "epix10k2m-mfx.geom").read_text()
    geom = tmp_path / "epix.geom"
    geom.write_text(text)  # epix10k2m-mask.h5 is not beside it: refused at start
    with pytest.raises(ConfigError, match="line 17: 'mask_file = epix10k2m-mask.h5'.*no such"):
        read_geometry(geom)
    # the geometry kept in a CXI file read elsewhere (geom): the mask is left out
    bad = bad_pixel_mask(parse_geometry(text, source=str(geom)), (16, 352, 384))
    assert not bad[0, :3].all() and bad[3, 1232 - 3 * 352, 100]
    assert "mask" in caplog.text and "not used" in caplog.text


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("dim2 = fs", "dim1 = 0\ndim2 = ss\ndim3 = fs"), "line 15: 'dim1 = 0'.*2-D array"),
        (("res = 10000", "res 10000"), "line 10: 'res 10000 .* is not 'key = value'"),
        (("p0a0/fs = ", "p0a0/fast = "), "'fast' is not a CrystFEL 0.11 property"),
        (("p0a0/corner_x = ", "p0a0/corner_x = x"), "p0a0/corner_x = x19.510': not a number"),
        (("p0a1/fs = +", "p0a1/fs = sideways +"), "not a direction"),
        (("bad_p3a2col/min_ss = 1232", "bad_p3a2col/min_ss = 100"), "not inside panel p3a2"),
        (("bad_p3a2col/panel = p3a2", "bad_p3a2col/panel = p99"), "no panel 'p99'"),
        (("p1a0/corner_y", "p1a0/clen = 0.1\np1a0/corner_y"), "clen is a top-level property"),
        (("mask_file = epix10k2m-mask.h5", ";"), "line 18: 'mask = /data/data'.*mask_file"),
        (("p0a0/max_fs = 191", "p0a0/max_fs = 0\np0a0/min_fs = 10"), "min_fs is above"),
        (("p0a0/max_ss = 175", "p0a0/max_ss = -1"), "min_ss is above"),
        (("res = 10000", "res = -5"), "line 10: 'res = -5 .*above 0"),
        (("res = 10000", "res = 1e4x"), "line 10: 'res = 1e4x .*not a number"),
        (("adu_per_eV = 0.001", "adu_per_eV = one"), "line 9: 'adu_per_eV = one.*not a number"),
        (("p0a0/max_ss = 175", "p0a0/max_ss = 175\np0a0/coffset = -0.2m"), "not a number"),
        (("p0a1/min_fs = 192", "p0a1/min_fs = 191"), "p0a1/min_fs = 191'.*overlaps panel p0a0"),
        (("p0a1/min_fs = 192", "p0a1/min_fs = 192\nclen = 0.1.5"), "'clen = 0.1.5'.*not a num"),
        (("mask_file = epix10k2m-mask.h5", "mask_file = /nonexistent/mask.h5"),
         "line 17: 'mask_file = /nonexistent/mask.h5'.*cannot be read"),
        (("mask_file = epix10k2m-mask.h5", f"mask_file = {GEOMETRY_DIR}/rayonix-mfx.geom"),
         "line 17: 'mask_file = .*rayonix-mfx.geom'.*not an HDF5 file"),
    ],
)
def test_a_geometry_the_writer_cannot_honour_is_refused_naming_the_line(
    tmp_path, edit: tuple[str, str], message: str
) -> None:
    text = (GEOMETRY_DIR / "epix10k2m-mfx.geom").read_text()
    assert edit[0] in text
    geom = tmp_path / "bad.geom"
    geom.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(ConfigError, match=message):
        read_geometry(geom)
    with pytest.raises(ValidationError, match="geometry_file") as error:
        CXIConfig(geometry_file=str(geom))
    assert str(geom) in str(error.value)


def test_clen_read_from_the_files_needs_the_stream_field(tmp_path) -> None:
    with pytest.raises(ValidationError, match=r"line 6: 'clen = /LCLS/detector_1/EncoderValue'"):
        CXIConfig(geometry_file=str(GEOMETRY_DIR / "cspad-cxi.geom"))
    CXIConfig(geometry_file=str(GEOMETRY_DIR / "cspad-cxi.geom"), clen_field="EncoderValue")


def test_a_stack_that_does_not_fit_the_geometry_is_refused_at_the_first_frame(tmp_path) -> None:
    config = CXIConfig(output_dir=str(tmp_path),
                       geometry_file=str(GEOMETRY_DIR / "jungfrau4m-cxi.geom"))
    with CXIWriter(config, writer_id="w") as writer:
        with pytest.raises(ConfigError, match=r"spans 512x1024 pixels but the frames' panels"):
            writer.write(np.zeros((8, 256, 1024)), _peaks(0), {}, hit=True)
        with pytest.raises(ConfigError, match=r"no panels \[8\]"):
            writer.write(np.zeros((9, 512, 1024)), _peaks(0), {}, hit=True)


def test_a_geometry_that_misfits_the_warmup_shapes_is_refused_at_config_load() -> None:
    service = {"model": {"weights": "builtin:peaknet-demo"},
               "output": {"geometry_file": str(GEOMETRY_DIR / "jungfrau4m-cxi.geom")}}
    load_service_config({**service, "warmup": {"frame_shapes": [[8, 512, 1024]]}})
    with pytest.raises(ConfigError, match=r"output.*does not fit warmup.frame_shapes "
                       r"\[8, 256, 1024\].*spans 512x1024 pixels"):
        load_service_config({**service, "warmup": {"frame_shapes": [[8, 256, 1024]]}})


def test_two_d_frames_larger_than_the_geometry_are_a_misfit(tmp_path) -> None:
    geom = tmp_path / "small.geom"
    geom.write_text("clen = 0.1\nres = 10000\nadu_per_photon = 1\np0/min_fs = 0\n"
                    "p0/max_fs = 511\np0/min_ss = 0\np0/max_ss = 511\np0/corner_x = -256\n"
                    "p0/corner_y = -256\np0/fs = +1x\np0/ss = +1y\n")
    assert bad_pixel_mask(read_geometry(geom), (512, 512)).shape == (512, 512)
    with pytest.raises(ConfigError, match=r"do not cover the 1024x1024 frames \(786432 pixels"):
        bad_pixel_mask(read_geometry(geom), (1024, 1024))
    config = CXIConfig(output_dir=str(tmp_path / "out"), geometry_file=str(geom))
    with CXIWriter(config, writer_id="w") as writer, pytest.raises(ConfigError, match="cover"):
        writer.write(np.zeros((1024, 1024)), _peaks(0), {}, hit=True)
