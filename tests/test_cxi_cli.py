"""The ``geom`` and ``inspect`` subcommands, invoked through the CLI on files the writer made."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from peaknet_serve import cli
from peaknet_serve.cxi import CXIConfig, CXIWriter, PanelLayout, panel_extents
from peaknet_serve.cxi.geometry import parse_geometry
from peaknet_serve.peaks import Peaks


@pytest.fixture(autouse=True)
def _subcommands(monkeypatch) -> None:
    monkeypatch.setitem(cli.SUBCOMMANDS, "geom", "peaknet_serve.cli.geom")
    monkeypatch.setitem(cli.SUBCOMMANDS, "inspect", "peaknet_serve.cli.inspect")


def _peaks(n: int, panel: int = 0) -> Peaks:
    return Peaks(
        np.arange(n, dtype=float),
        np.arange(n, dtype=float),
        np.ones(n),
        np.full(n, 3, np.int32),
        np.ones(n),
        np.ones(n),
        np.full(n, panel, np.int32),
    )


def _write(
    directory: Path,
    frames: np.ndarray,
    counts: list[int],
    hits: list[bool],
    energies: list[float],
    **config: object,
) -> Path:
    cfg = CXIConfig(output_dir=str(directory), **config)
    with CXIWriter(cfg, writer_id="w") as writer:
        writer.write_batch(
            frames, [_peaks(n) for n in counts], {"photon_energy_eV": np.asarray(energies)}, hits
        )
    (path,) = writer.files_written
    return path


def test_geom_for_a_panel_stack_round_trips_into_the_writer(tmp_path, capsys) -> None:
    path = _write(tmp_path, np.zeros((2, 3, 8, 10)), [1, 2], [True, True], [9000.0, 9001.0])
    assert cli.main(["geom", "--cxi", str(path), "--clen", "0.25"]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    for expected in (
        "data = /entry_1/data_1/data",
        "dim0 = %",
        "dim1 = ss",
        "dim2 = fs",
        "peak_list = /entry_1/result_1",
        "peak_list_type = cxi",
        "photon_energy = /LCLS/photon_energy_eV",
        "clen = 0.25",
        "p2/res = 10000",
        "p2/min_ss = 16",
        "p2/max_ss = 23",
        "p2/max_fs = 9",
        "p2/fs = +1.0x",
    ):
        assert expected in lines, expected
    assert "p2/adu_per_photon = 1 ; FIXME: ADU per photon of this detector" in lines
    assert panel_extents(parse_geometry(text)) == {
        0: (0, 9, 0, 7), 1: (0, 9, 8, 15), 2: (0, 9, 16, 23)
    }
    geom = tmp_path / "out.geom"
    assert cli.main(["geom", "--cxi", str(path), "-o", str(geom)]) == 0
    assert "FIXME" in geom.read_text()
    layout = PanelLayout.from_geometry(geom, 3, (8, 10))
    assert layout.is_plain_slab() and layout.stored_shape == (24, 10)


def test_geom_keeps_the_writers_geometry_and_flags_peaks_only_files(tmp_path, capsys) -> None:
    source = tmp_path / "src.geom"
    source.write_text(
        "data = /other\nclen = 0.3\np0/min_fs = 0\np0/max_fs = 9\np0/min_ss = 0\n"
        "p0/max_ss = 7\np0/corner_x = -4\np0/corner_y = -3\np0/fs = x\np0/ss = y\n"
        "p0/dim0 = %\n"
    )
    path = _write(
        tmp_path / "o",
        np.zeros((1, 1, 8, 10)),
        [1],
        [True],
        [float("nan")],
        geometry_file=str(source),
        write_mode="peaks",
    )
    assert cli.main(["geom", "--cxi", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "p0/corner_x = -4" in lines and "clen = 0.3" in lines
    assert "data = /other" not in lines and "p0/dim0 = %" not in lines
    assert "data = /entry_1/data_1/data" in lines
    assert any(line.startswith("; NOTE") and "no image" in line for line in lines)
    assert any("FIXME: no photon energy" in line for line in lines)
    assert "photon_energy = 9500 ; FIXME: no photon energy recorded: the beam's, in eV" in lines


def test_inspect_reports_events_peaks_hits_and_energy(tmp_path, capsys) -> None:
    first = _write(
        tmp_path / "a",
        np.zeros((4, 8, 8)),
        [12, 3, 20, 11],
        [True, False, True, True],
        [9000.0, 1.0, 9100.0, 9050.0],
    )
    second = _write(
        tmp_path / "b",
        np.zeros((2, 8, 8)),
        [5, 15],
        [False, True],
        [8000.0, 8900.0],
        write_mode="all",
    )
    assert cli.main(["inspect", "--json", str(first), str(second)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["events"] for row in rows] == [3, 2, 5]
    assert rows[0]["peaks_mean"] == pytest.approx(43 / 3)
    assert (rows[0]["peaks_min"], rows[0]["peaks_max"]) == (11, 20)
    assert rows[0]["hit_fraction"] == pytest.approx(3 / 4)
    assert rows[1]["hit_fraction"] == pytest.approx(1 / 2)
    assert rows[2]["hit_fraction"] == pytest.approx(4 / 6)
    assert (rows[0]["energy_min_eV"], rows[0]["energy_max_eV"]) == (9000.0, 9100.0)
    assert rows[2]["energy_min_eV"] == 8000.0
    assert rows[0]["image"]["shape"] == [8, 8]
    assert cli.main(["inspect", str(first)]) == 0
    line = capsys.readouterr().out.strip()
    assert "events 3" in line and "hit fraction 0.750 (3 of 4)" in line
    assert "energy 9000.0-9100.0 eV" in line and "image 8x8 float32 bitshuffle+lz4" in line


def test_inspect_fails_on_a_missing_file(tmp_path, capsys) -> None:
    assert cli.main(["inspect", str(tmp_path / "none.cxi")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_inspect_counts_events_whose_photon_energy_is_not_finite(tmp_path, capsys) -> None:
    energies = [9000.0, float("nan"), float("inf"), 9002.0]
    path = _write(tmp_path, np.zeros((4, 8, 8)), [1, 1, 1, 1], [True] * 4, energies)
    assert cli.main(["inspect", "--json", str(path)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["energy_nonfinite"] == 2
    assert (summary["energy_min_eV"], summary["energy_max_eV"]) == (9000.0, 9002.0)
    assert cli.main(["inspect", str(path)]) == 0
    assert "energy not finite in 2 events" in capsys.readouterr().out
