"""``peaknet-serve geom --cxi FILE``: a CrystFEL geometry file matching a CXI file we wrote.

The data path, dimensions, peak list and photon energy come from the file; so do the panel
extents in the written 2-D array. When the writer placed panels with a ``.geom`` file, that file
(kept in the CXI file) supplies the physical geometry; otherwise the panels are laid flat around
the array's centre and the output says which lines to replace with the detector's real geometry.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import h5py
import numpy as np

from peaknet_serve.cxi.writer import DATA_PATH, METADATA_GROUP, PHOTON_ENERGY_KEY, RESULT_PATH

HELP = "print a CrystFEL geometry file for a CXI file written by peaknet-serve"

_ENCODER_PATH = f"{METADATA_GROUP}/detector_1/EncoderValue"
_OVERRIDDEN = {"data", "dim0", "dim1", "dim2", "dim3", "peak_list", "peak_list_type"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cxi", required=True, type=Path, help="a CXI file (.cxi or .inprogress)")
    parser.add_argument(
        "--clen", type=float, default=None,
        help="detector distance in metres (default: the file's EncoderValue, else a placeholder)",
    )
    parser.add_argument(
        "--res", type=float, default=10000.0,
        help="pixels per metre for generated panels (default 10000: 100 um pixels, ePix10k)",
    )
    parser.add_argument("-o", "--output", type=Path, default=None, help="write here, not stdout")


def run(args: argparse.Namespace) -> int:
    try:
        text = geometry_text(args.cxi, clen=args.clen, res=args.res)
    except (OSError, KeyError, ValueError) as exc:
        sys.stderr.write(f"peaknet-serve geom: cannot read {args.cxi}: {exc}\n")
        return 1
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text)
    return 0


def geometry_text(path: Path, *, clen: float | None = None, res: float = 10000.0) -> str:
    """The geometry file for ``path``, as text."""
    with h5py.File(path, "r") as handle:
        attrs = handle.attrs
        has_data = DATA_PATH in handle
        if has_data:
            stored = tuple(int(v) for v in handle[DATA_PATH].shape[1:])
        else:
            stored = tuple(int(v) for v in attrs["peaknet_stored_shape"])
        offsets = np.asarray(attrs.get("peaknet_panel_offsets", [[0, 0]]), dtype=int)
        panel_shape = tuple(int(v) for v in attrs.get("peaknet_panel_shape", stored))
        source = attrs.get("peaknet_geometry")
        energy_path = f"{METADATA_GROUP}/{PHOTON_ENERGY_KEY}"
        has_energy = energy_path in handle and bool(np.isfinite(handle[energy_path][()]).any())
        has_encoder = _ENCODER_PATH in handle
    lines = [
        f"; CrystFEL geometry for {path.name}, written by peaknet-serve geom",
        f"; the file holds {stored[0]} x {stored[1]} (ss x fs) frames; run e.g.",
        ";   indexamajig -g THIS.geom --peaks=cxi -i files.lst -o out.stream",
        f"data = {DATA_PATH}",
        "dim0 = %",
        "dim1 = ss",
        "dim2 = fs",
        f"peak_list = {RESULT_PATH}",
        "peak_list_type = cxi",
    ]
    if not has_data:
        lines.append("; NOTE: written in 'peaks' mode: this file has no image data to index")
    if has_energy:
        lines.append(f"photon_energy = {energy_path}")
    else:
        lines.append("; FIXME: no photon energy recorded: add 'photon_energy = <eV>'")
    if source is not None:
        lines += ["", "; from the geometry file the writer used:"]
        lines += _without_overridden(str(source), drop_energy=has_energy)
    else:
        lines += _generated_panels(stored, panel_shape, offsets, clen=clen, res=res,
                                   has_encoder=has_encoder)
    return "\n".join(lines) + "\n"


def _without_overridden(text: str, *, drop_energy: bool) -> list[str]:
    kept = []
    for line in text.splitlines():
        key = line.split(";", 1)[0].split("=", 1)[0].strip()
        prop = key.split("/", 1)[-1]
        if "=" in line.split(";", 1)[0] and (
            prop in _OVERRIDDEN or (drop_energy and key == "photon_energy")
        ):
            continue
        kept.append(line)
    return kept


def _generated_panels(
    stored: tuple[int, ...],
    panel_shape: tuple[int, ...],
    offsets: np.ndarray,
    *,
    clen: float | None,
    res: float,
    has_encoder: bool,
) -> list[str]:
    height, width = panel_shape
    lines = [f"res = {res:g}"]
    if clen is not None:
        lines.append(f"clen = {clen:g}")
    elif has_encoder:
        lines += [f"clen = {_ENCODER_PATH}", "; FIXME: set coffset (metres) for this encoder",
                  "coffset = 0.0"]
    else:
        lines += ["; FIXME: the real detector distance in metres (or --clen)", "clen = 0.1"]
    lines += [
        "; set for your detector: adu_per_photon = 1",
        "",
        "; FIXME: panels laid flat around the centre of the written array; replace corner_x,",
        "; corner_y, fs and ss with your detector's geometry before indexing for real",
    ]
    for p, (ss0, fs0) in enumerate(offsets):
        name = f"p{p}"
        lines += [
            f"{name}/min_fs = {fs0}",
            f"{name}/max_fs = {fs0 + width - 1}",
            f"{name}/min_ss = {ss0}",
            f"{name}/max_ss = {ss0 + height - 1}",
            f"{name}/corner_x = {fs0 - stored[1] / 2:g}",
            f"{name}/corner_y = {ss0 - stored[0] / 2:g}",
            f"{name}/fs = +1.0x",
            f"{name}/ss = +1.0y",
            "",
        ]
    return lines
