"""A CrystFEL 0.11 geometry file for a CXI file we wrote (``peaknet-serve geom --cxi FILE``).

Every panel gets every property CrystFEL needs written out (extent in the written 2-D array,
corners, fs/ss, ``res``, ``coffset``, ``adu_per_photon`` or ``adu_per_eV``), so indexamajig reads
the file as written. The data path, dimensions, peak list and photon energy come from the CXI
file. When the writer placed panels with a ``.geom`` file (kept in the CXI file), that geometry
supplies the physics; otherwise the panels are laid flat around the array's centre. A value the
project cannot know is written as a real line with a ``; FIXME`` comment.

``clen``, in this order: ``--clen``; the source geometry's (a number, or the encoder path when the
file holds it); the per-event ``output.clen_field`` the writer stored at
``/LCLS/detector_1/EncoderValue`` (unit from its ``units`` attribute); else a FIXME placeholder.
CrystFEL's camera length of a panel is ``clen + coffset`` (``crystfel_geometry(5)``): geom prints it
per panel group on stderr and refuses a camera length <= 0; the placeholder is chosen so that the
camera length is 0.1 m. Every FIXME value and every hint is summarised on stderr too.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from peaknet_serve.cxi.format import (
    DATA_PATH,
    INPROGRESS_SUFFIX,
    METADATA_GROUP,
    PHOTON_ENERGY_KEY,
    RESULT_PATH,
)
from peaknet_serve.cxi.geom_inputs import CLEN_PATH, read_geom_inputs
from peaknet_serve.cxi.geometry import Geometry, is_number, mask_file_path, parse_geometry
from peaknet_serve.errors import ConfigError

PLUGIN_HINT = (
    "; NOTE: the image is compressed with an HDF5 plugin filter (bitshuffle). CrystFEL reads it\n"
    ";   through Debian's 'bitshuffle' package (apt-get install bitshuffle) or with\n"
    ";   HDF5_PLUGIN_PATH=/usr/lib/x86_64-linux-gnu/hdf5/serial/plugins (or hdf5plugin's\n"
    ";   directory: python -c 'import hdf5plugin; print(hdf5plugin.PLUGIN_PATH)')"
)
ZSTD_HINT = (
    "; NOTE: the image is compressed with bitshuffle+zstd, which Debian's bitshuffle 0.3.5 plugin\n"
    ";   cannot read. Run CrystFEL with hdf5plugin's filters:\n"
    ";   HDF5_PLUGIN_PATH=$(python -c 'import hdf5plugin; print(hdf5plugin.PLUGIN_PATH)')"
)
LIVE_HINT = (
    "; NOTE: the file is still being written (.cxi.inprogress); indexamajig reads it only with\n"
    ";   HDF5_USE_FILE_LOCKING=FALSE (its writer holds it open)"
)
#: The camera length the FIXME placeholder clen gives, in metres.
PLACEHOLDER_DISTANCE = 0.1
#: Distinct camera lengths listed one by one on stderr; more are shown as a range.
_LISTED_GROUPS = 4
#: Panel properties written for every panel, in this order, after the extent.
_PHYSICAL = ("corner_x", "corner_y", "fs", "ss", "res", "coffset")
#: Panel properties passed through from the source geometry when set.
_PASSED = ("max_adu", "flag_equal", "flag_lessthan", "flag_morethan", "no_index",
           "mask_edge_pixels")
_DEFAULT_RES = 10000.0


class CameraLengthError(ConfigError):
    """clen + coffset, CrystFEL's camera length, is not above 0 for some panel."""


@dataclass
class Built:
    """A geometry file's text and what to say about it on stderr (one line per note)."""

    text: str
    notes: list[str] = field(default_factory=list)



def geometry_text(path: Path, *, clen: float | None = None, res: float | None = None) -> str:
    """The geometry file for the CXI file ``path`` (``.cxi`` or ``.cxi.inprogress``), as text.

    Raises:
        OSError, KeyError, ValueError: the file cannot be read as a CXI file of ours.
        ConfigError: the geometry kept in the file cannot be parsed.
        CameraLengthError: clen + coffset is not above 0 for some panel.
    """
    return build(path, clen=clen, res=res).text


def build(path: Path, *, clen: float | None = None, res: float | None = None) -> Built:
    """``geometry_text`` with the notes for stderr: camera lengths, FIXME values, hints."""
    info = read_geom_inputs(path)
    source = None
    notes: list[str] = []
    if info["geometry"] is not None:
        source = parse_geometry(str(info["geometry"]), source=str(info["geometry_path"]))
        if res is not None:
            notes.append(f"--res {res:g} ignored: the file holds a geometry ({source.source}), "
                         "whose res is used")
    res = _DEFAULT_RES if res is None else res
    lines = [
        f"; CrystFEL geometry for {path.name}, written by peaknet-serve geom",
        f"; the file holds {info['stored'][0]} x {info['stored'][1]} (ss x fs) frames; run e.g.",
        ";   indexamajig -g THIS.geom --peaks=cxi -i files.lst -o out.stream",
    ]
    if path.name.endswith(INPROGRESS_SUFFIX):
        lines.append(LIVE_HINT)
    if not info["has_data"]:
        lines.append("; NOTE: written in 'peaks' mode: this file has no image data to index")
        notes.append("written in 'peaks' mode: the file has no image data to index")
    if info["plugin_filter"] == "zstd":
        lines.append(ZSTD_HINT)
        notes.append(" ".join(part.strip("; ") for part in ZSTD_HINT.splitlines()))
    elif info["plugin_filter"]:
        lines.append(PLUGIN_HINT)
        notes.append(" ".join(part.strip("; ") for part in PLUGIN_HINT.splitlines()))
    coffsets = _coffsets(source)
    lines += _global_lines(info, source, clen, coffsets)
    lines += [
        "",
        f"data = {DATA_PATH}",
        "dim0 = %",
        "dim1 = ss",
        "dim2 = fs",
        f"peak_list = {RESULT_PATH}",
        "peak_list_type = cxi",
        "",
    ]
    if source is not None:
        lines += _source_panels(source)
    else:
        lines += _generated_panels(info, res=res)
    notes += _camera_lengths(info, lines, coffsets)
    notes += _fixme_summary(lines)
    return Built("\n".join(lines) + "\n", notes)


def _coffsets(source: Geometry | None) -> dict[str, float]:
    """Panel name -> coffset in metres (0 where not given, as geom writes it)."""
    if source is None:
        return {}
    return {name: float(props["coffset"].text) if "coffset" in props else 0.0
            for name, props in source.panels.items()}


def _clen_metres(info: dict[str, Any], lines: list[str]) -> tuple[float, float] | None:
    """(lowest, highest) clen in metres of the written ``clen`` line; None when unknown."""
    text = next(line for line in lines if line.startswith("clen = "))
    value = text.split("=", 1)[1].split(";", 1)[0].strip()
    scale = 1e-3 if value.split()[-1] == "mm" else 1.0
    if not value.startswith("/"):
        number = float(value.split()[0]) * scale
        return number, number
    values = info["clen_values"]
    if values is None or not values.size:
        return None
    return float(values.min()) * scale, float(values.max()) * scale


def _camera_lengths(info: dict[str, Any], lines: list[str], coffsets: dict[str, float]
                    ) -> list[str]:
    clen = _clen_metres(info, lines)
    if clen is None:
        return ["camera length = clen + coffset: clen is read per event and the file has no "
                "finite value of it yet"]
    groups: dict[float, list[str]] = defaultdict(list)
    for name, coffset in (coffsets or {"all panels": 0.0}).items():
        groups[coffset].append(name)
    notes, bad = [], []
    for coffset, names in sorted(groups.items()):
        low, high = clen[0] + coffset, clen[1] + coffset
        shown = (f"{low:.6g} m" if low == high else f"{low:.6g} to {high:.6g} m")
        label = names[0] if len(names) == 1 else f"{names[0]}..{names[-1]} ({len(names)} panels)"
        notes.append(f"camera length (clen + coffset {coffset:g}) = {shown} for {label}")
        if low <= 0:
            bad.append(f"{label}: clen {clen[0]:g} + coffset {coffset:g} = {low:.6g} m")
    if bad:
        raise CameraLengthError(
            "CrystFEL's camera length (clen + coffset) would be <= 0 for " + "; ".join(bad)
            + ": give --clen so that clen + coffset is the detector distance"
        )
    if len(notes) > _LISTED_GROUPS:
        low = clen[0] + min(groups)
        high = clen[1] + max(groups)
        notes = [f"camera length (clen + coffset) = {low:.6g} to {high:.6g} m over "
                 f"{len(coffsets)} panels ({len(groups)} coffsets)"]
    return notes


def _fixme_summary(lines: list[str]) -> list[str]:
    """One note per FIXME property (panels collapsed), e.g. ``adu_per_photon = 1 (16 panels)``."""
    found: dict[tuple[str, str], list[str]] = defaultdict(list)
    for line in lines:
        if "; FIXME" in line and "=" in line.split(";", 1)[0]:
            key, rest = (part.strip() for part in line.split("=", 1))
            value, comment = (part.strip() for part in rest.split("; FIXME", 1))
            found[(f"{key.split('/')[-1]} = {value}", comment.lstrip(": "))].append(key)
    notes = []
    for (value, comment), keys in found.items():
        where = f" ({len(keys)} panels)" if len(keys) > 1 else ""
        notes.append(f"FIXME {value}{where} is a placeholder: {comment}")
    if any("FIXME: panels laid flat" in line for line in lines):
        notes.append("FIXME panels laid flat around the array's centre: corner_x, corner_y, fs, "
                     "ss and res are placeholders")
    return notes



def _global_lines(info: dict[str, Any], source: Geometry | None, clen: float | None,
                  coffsets: dict[str, float]) -> list[str]:
    lines = []
    energy = source.globals.get("photon_energy") if source is not None else None
    if info["has_energy"]:
        lines.append(f"photon_energy = {METADATA_GROUP}/{PHOTON_ENERGY_KEY}")
    elif energy is not None and is_number(energy.text):
        lines.append(f"photon_energy = {energy.text}")
    else:
        lines.append("photon_energy = 9500 ; FIXME: no photon energy recorded: the beam's, in eV")
    lines.append(_clen_line(info, source, clen, coffsets))
    if source is not None and "bandwidth" in source.globals:
        lines.append(f"bandwidth = {source.globals['bandwidth'].text}")
    return lines


def _clen_line(info: dict[str, Any], source: Geometry | None, clen: float | None,
               coffsets: dict[str, float]) -> str:
    if clen is not None:
        return f"clen = {clen:g}"
    given = source.globals.get("clen") if source is not None else None
    if given is not None and is_number(given.text):
        return f"clen = {given.text}"
    if info["clen_units"] is not None:
        return f"clen = {CLEN_PATH} {info['clen_units']}"
    note = (f" (the source geometry's {given.text!r} is not in this file)" if given is not None
            else "")
    coffset = float(np.median(list(coffsets.values()))) if coffsets else 0.0
    placeholder = PLACEHOLDER_DISTANCE - coffset
    offset_note = (f", minus coffset {coffset:g}: camera length {PLACEHOLDER_DISTANCE:g} m"
                   if coffset else "")
    return (f"clen = {placeholder:.6g} ; FIXME: the detector distance in metres{offset_note} "
            f"(or geom --clen){note}")


def _source_panels(source: Geometry) -> list[str]:
    lines = []
    for name, props in source.panels.items():
        lines += [f"{name}/{key} = {props[key].text}"
                  for key in ("min_fs", "max_fs", "min_ss", "max_ss")]
        for key in _PHYSICAL:
            if key in props:
                lines.append(f"{name}/{key} = {props[key].text}")
            elif key == "res":
                lines.append(f"{name}/res = {_DEFAULT_RES:g} ; FIXME: pixels per metre")
            elif key == "coffset":
                lines.append(f"{name}/coffset = 0")
        lines.append(_adu_line(name, props))
        lines += [f"{name}/{key} = {props[key].text}" for key in _PASSED if key in props]
        lines += _mask_lines(source, name)
        lines.append("")
    for name, props in source.bad_regions.items():
        lines += [f"{name}/{key} = {value.text}" for key, value in props.items()]
        lines.append("")
    lines += source.groups
    return lines


def _adu_line(name: str, props: dict[str, Any]) -> str:
    for key in ("adu_per_photon", "adu_per_eV"):
        if key in props:
            return f"{name}/{key} = {props[key].text}"
    return f"{name}/adu_per_photon = 1 ; FIXME: ADU per photon of this detector"


def _mask_lines(source: Geometry, name: str) -> list[str]:
    lines = []
    for number, mask in source.masks(name).items():
        if "file" not in mask or "data" not in mask:
            continue
        path = mask_file_path(source, mask["file"].text).resolve()
        if not path.exists():
            lines.append(f"; {name}: mask file {path} not found here; its mask{number} is left out")
            continue
        lines.append(f"{name}/mask{number}_file = {path}")
        for key in ("data", "goodbits", "badbits"):
            if key in mask:
                lines.append(f"{name}/mask{number}_{key} = {mask[key].text}")
    return lines


def _generated_panels(info: dict[str, Any], *, res: float) -> list[str]:
    height, width = info["panel_shape"]
    stored = info["stored"]
    lines = [
        "; FIXME: panels laid flat around the centre of the written array; replace corner_x,",
        "; corner_y, fs, ss and res with your detector's geometry before indexing for real",
    ]
    for p, (ss0, fs0) in enumerate(info["offsets"]):
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
            f"{name}/res = {res:g}",
            f"{name}/coffset = 0",
            f"{name}/adu_per_photon = 1 ; FIXME: ADU per photon of this detector",
            "",
        ]
    return lines
