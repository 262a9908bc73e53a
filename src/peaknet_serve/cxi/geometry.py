"""CrystFEL geometry files: read, checked against what the writer can honour, and bad pixels.

Format: CrystFEL 0.11's ``crystfel_geometry(5)`` (``libcrystfel/src/datatemplate.c``). A line is
``key = value`` with ``;`` comments. Top-level keys that are panel properties (``res``,
``coffset``, ``adu_per_eV``...) are defaults for the panels that first appear after them, as in
CrystFEL. ``NAME/key = value`` sets a property of panel ``NAME``; names starting with ``bad`` are
bad regions; ``rigid_group*`` and ``group_*`` lines are kept as they are.

The writer stores frames as one 2-D array per event (the Cheetah "slab"), so it honours
geometries of 2-D data (``dim1 = ss``, ``dim2 = fs``) whose panels it can map onto the frames: for
a panel stack (P, H, W) the panels are named ``p{N}`` or ``p{N}a{M}`` (panel N of the stack, e.g.
ePix10k2M, Jungfrau) or ``q{Q}a{A}`` (CSPAD: panel 8Q + A // 2, two ASICs of 185 x 194 each).
Anything else is refused with a ``ConfigError`` that names the file and the line. The bad pixels
a geometry marks are ``geometry_bad_pixels``'.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from peaknet_serve.errors import ConfigError

#: Panel properties of CrystFEL 0.11 (``parse_field_for_panel``), without the ``maskN_*`` family.
PANEL_KEYS = frozenset({
    "min_fs", "max_fs", "min_ss", "max_ss", "corner_x", "corner_y", "fs", "ss", "res", "coffset",
    "adu_per_eV", "adu_per_photon", "data", "mask", "mask_file", "mask_good", "mask_bad",
    "mask_edge_pixels", "saturation_map", "saturation_map_file", "max_adu", "flag_equal",
    "flag_lessthan", "flag_morethan", "badrow_direction", "no_index",
    "dim0", "dim1", "dim2", "dim3",
})
#: Top-level keys that are not panel properties.
GLOBAL_KEYS = frozenset({
    "clen", "photon_energy", "wavelength", "electron_voltage", "bandwidth", "peak_list",
    "peak_list_type", "detector_shift_x", "detector_shift_y",
})
BAD_REGION_KEYS = frozenset({
    "min_fs", "max_fs", "min_ss", "max_ss", "min_x", "max_x", "min_y", "max_y", "panel",
})
_MASK_KEY = re.compile(r"^mask([0-7])_(data|file|goodbits|badbits)$")
_OLD_MASK_KEYS = {"mask": "data", "mask_file": "file", "mask_good": "goodbits",
                  "mask_bad": "badbits"}
_STACK_NAME = re.compile(r"^p(\d+)(?:a(\d+))?$")
_CSPAD_NAME = re.compile(r"^q(\d+)a(\d+)$")
_DIRECTION = re.compile(r"([+-]?(?:[0-9]*\.?[0-9]*(?:[eE][+-]?[0-9]+)?)?)([xyz])")
#: The keys of a panel's (or an fs/ss bad region's) extent in the 2-D data, inclusive.
EXTENT_KEYS = ("min_fs", "max_fs", "min_ss", "max_ss")
_REQUIRED = (*EXTENT_KEYS, "corner_x", "corner_y", "fs", "ss")
#: Panel properties that CrystFEL reads as numbers.
_NUMERIC = ("res", "coffset", "adu_per_eV", "adu_per_photon", "max_adu")


@dataclass
class Value:
    """One ``key = value`` of the file, with the line it came from (1-based) for messages."""

    text: str
    line: int


def is_number(text: str) -> bool:
    """Whether a value's text is a number (a unit may follow, "0.1 m"), not an HDF5 path."""
    try:
        float(text.split()[0])
    except (ValueError, IndexError):
        return False
    return True


@dataclass
class Geometry:
    """A parsed CrystFEL geometry file.

    Attributes:
        text: the file as read.
        source: its path (or a label), used in every message.
        globals: top-level keys that are not panel properties (``clen``, ``photon_energy``...).
        panels: panel name -> its properties, defaults from the top level included, in file order.
        bad_regions: region name -> its properties.
        groups: the ``rigid_group*`` and ``group_*`` lines, verbatim.
    """

    text: str
    source: str
    globals: dict[str, Value] = field(default_factory=dict)
    panels: dict[str, dict[str, Value]] = field(default_factory=dict)
    bad_regions: dict[str, dict[str, Value]] = field(default_factory=dict)
    groups: list[str] = field(default_factory=list)

    def where(self, value: Value) -> str:
        """``FILE line N: 'the line'``, for messages."""
        lines = self.text.splitlines()
        shown = lines[value.line - 1].strip() if 0 < value.line <= len(lines) else ""
        return f"{self.source} line {value.line}: {shown!r}"

    def extent(self, name: str) -> tuple[int, int, int, int]:
        """(min_fs, max_fs, min_ss, max_ss) of panel ``name``, inclusive, in the 2-D data."""
        props = self.panels[name]
        return tuple(int(float(props[key].text)) for key in EXTENT_KEYS)  # type: ignore[return-value]

    def masks(self, panel: str) -> dict[int, dict[str, Value]]:
        """The panel's masks: ``{N: {"data"|"file"|"goodbits"|"badbits": Value}}``."""
        found: dict[int, dict[str, Value]] = {}
        for key, value in self.panels[panel].items():
            if key in _OLD_MASK_KEYS:
                found.setdefault(0, {})[_OLD_MASK_KEYS[key]] = value
            elif (match := _MASK_KEY.match(key)) is not None:
                found.setdefault(int(match.group(1)), {})[match.group(2)] = value
        return found


def read_geometry(path: str | Path) -> Geometry:
    """Read and check a geometry file (see the module docstring for what is refused).

    Raises:
        ConfigError: the file cannot be read, or a line cannot be honoured (named in the message).
    """
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"geometry file {str(path)!r} cannot be read: {exc}") from exc
    geometry = parse_geometry(text, source=str(path))
    _check_mask_files(geometry)
    return geometry


def _check_mask_files(geometry: Geometry) -> None:
    """Refuse a mask file that is not here or not HDF5: indexamajig would stop on it."""
    checked: set[tuple[str, str]] = set()
    for name in geometry.panels:
        for mask in geometry.masks(name).values():
            file, data = mask.get("file"), mask.get("data")
            if file is None or (file.text, data.text if data else "") in checked:
                continue
            checked.add((file.text, data.text if data else ""))
            path = mask_file_path(geometry, file.text)
            if not path.is_file():
                raise ConfigError(f"{geometry.where(file)}: mask file {str(path)!r} cannot be "
                                  "read: no such file")
            if not h5py.is_hdf5(path):
                raise ConfigError(f"{geometry.where(file)}: mask file {str(path)!r} is not an "
                                  "HDF5 file")
            if data is not None:
                with h5py.File(path, "r") as handle:
                    if data.text not in handle:
                        raise ConfigError(f"{geometry.where(data)}: no dataset {data.text!r} in "
                                          f"the mask file {str(path)!r}")


def parse_geometry(text: str, *, source: str = "geometry") -> Geometry:
    """Parse geometry ``text``; ``source`` names it in messages. Raises ``ConfigError``."""
    geometry = Geometry(text=text, source=source)
    defaults: dict[str, Value] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split(";", 1)[0].strip()
        if not line:
            continue
        if "=" not in line:
            raise ConfigError(f"{source} line {number}: {raw.strip()!r} is not 'key = value'")
        key, value_text = (part.strip() for part in line.split("=", 1))
        value = Value(value_text, number)
        if key.startswith(("rigid_group", "group_")):
            geometry.groups.append(raw.split(";", 1)[0].rstrip())
        elif "/" in key:
            name, prop = key.split("/", 1)
            if name.startswith("bad"):
                if prop not in BAD_REGION_KEYS:
                    raise ConfigError(f"{geometry.where(value)}: bad regions take "
                                      f"{sorted(BAD_REGION_KEYS)}")
                geometry.bad_regions.setdefault(name, {})[prop] = value
            else:
                _check_panel_key(geometry, prop, value)
                geometry.panels.setdefault(name, dict(defaults))[prop] = value
        elif key in GLOBAL_KEYS:
            geometry.globals[key] = value
        else:
            _check_panel_key(geometry, key, value)
            defaults[key] = value  # as in CrystFEL: for the panels that appear after it
    if not geometry.panels:
        raise ConfigError(f"{source}: no panels (lines like 'p0/min_fs = 0')")
    for name, props in geometry.panels.items():
        missing = [key for key in _REQUIRED if key not in props]
        if missing:
            raise ConfigError(f"{source}: panel {name} lacks {missing}")
        for key in (*EXTENT_KEYS, "corner_x", "corner_y"):
            _number(geometry, props[key])
        for key in _NUMERIC:
            if key in props:
                _number(geometry, props[key])
        for low, high in (("min_fs", "max_fs"), ("min_ss", "max_ss")):
            if _number(geometry, props[low]) > _number(geometry, props[high]):
                raise ConfigError(f"{geometry.where(props[low])}: {name}/{low} is above "
                                  f"{name}/{high} ({props[high].text})")
        if "res" in props and _number(geometry, props["res"]) <= 0:
            raise ConfigError(f"{geometry.where(props['res'])}: res (pixels per metre) must be "
                              "above 0")
        for key in ("fs", "ss"):
            direction(props[key].text, geometry=geometry, value=props[key])
        _check_dims(geometry, props)
        for mask in geometry.masks(name).values():
            if "data" in mask and "file" not in mask:
                raise ConfigError(
                    f"{geometry.where(mask['data'])}: a mask inside the data files needs "
                    "mask_file = <its HDF5 file>: the service's CXI files hold no mask"
                )
    clen = geometry.globals.get("clen")
    if clen is not None and not clen.text.startswith("/"):
        _number(geometry, Value(clen.text.split()[0] if clen.text else "", clen.line))
    _check_panels_apart(geometry)
    for name, props in geometry.bad_regions.items():
        _check_bad_region(geometry, name, props)
    return geometry


def _check_panels_apart(geometry: Geometry) -> None:
    """Refuse two panels that share pixels of the data (CrystFEL would read them twice)."""
    names = list(geometry.panels)
    extents = np.array([geometry.extent(name) for name in names])
    for i, (fs0, fs1, ss0, ss1) in enumerate(extents[:-1]):
        rest = extents[i + 1 :]
        shared = ((rest[:, 0] <= fs1) & (rest[:, 1] >= fs0)
                  & (rest[:, 2] <= ss1) & (rest[:, 3] >= ss0))
        if shared.any():
            other = names[i + 1 + int(np.argmax(shared))]
            raise ConfigError(
                f"{geometry.where(geometry.panels[other]['min_fs'])}: panel {other} overlaps "
                f"panel {names[i]} in the data (fs {fs0}-{fs1}, ss {ss0}-{ss1})"
            )


def direction(text: str, *, geometry: Geometry | None = None, value: Value | None = None
              ) -> np.ndarray:
    """A CrystFEL direction (``+0.0048x +0.99999y``) as an (x, y, z) vector.

    Raises:
        ConfigError: not of that form (the line is named when ``geometry`` and ``value`` are).
    """
    vector = np.zeros(3)
    compact = text.replace(" ", "")
    terms = _DIRECTION.findall(compact)
    try:
        if "".join(c + a for c, a in terms) != compact or not terms:
            raise ValueError(text)
        for coefficient, axis in terms:
            scale = {"": 1.0, "+": 1.0, "-": -1.0}.get(coefficient)
            vector["xyz".index(axis)] += scale if scale is not None else float(coefficient)
    except ValueError as exc:
        where = geometry.where(value) if geometry and value else repr(text)
        raise ConfigError(f"{where}: not a direction like '+1.0x +0.0y'") from exc
    return vector


def stack_index(name: str) -> int | None:
    """The panel of a (P, H, W) stack that CrystFEL panel ``name`` belongs to, or None.

    ``p{N}`` and ``p{N}a{M}``: panel N. ``q{Q}a{A}`` (CSPAD, psana's (32, 185, 388)): 8Q + A // 2.
    """
    if (match := _STACK_NAME.match(name)) is not None:
        return int(match.group(1))
    if (match := _CSPAD_NAME.match(name)) is not None:
        return 8 * int(match.group(1)) + int(match.group(2)) // 2
    return None




def _check_panel_key(geometry: Geometry, key: str, value: Value) -> None:
    if key == "clen":
        raise ConfigError(f"{geometry.where(value)}: clen is a top-level property in CrystFEL 0.11")
    if key not in PANEL_KEYS and _MASK_KEY.match(key) is None:
        raise ConfigError(f"{geometry.where(value)}: {key!r} is not a CrystFEL 0.11 property")


def _check_dims(geometry: Geometry, props: dict[str, Value]) -> None:
    allowed = {"dim0": "%", "dim1": "ss", "dim2": "fs"}
    for key in ("dim0", "dim1", "dim2", "dim3"):
        value = props.get(key)
        if value is not None and allowed.get(key) != value.text:
            raise ConfigError(
                f"{geometry.where(value)}: peaknet-serve writes each event as one 2-D array "
                "(dim0 = %, dim1 = ss, dim2 = fs); give the geometry of that 2-D layout "
                "(Cheetah's slab: panel N at rows N*H), not one of 3-D panel-stack data"
            )


def _check_bad_region(geometry: Geometry, name: str, props: dict[str, Value]) -> None:
    keys = set(props) - {"panel"}
    xy = {"min_x", "max_x", "min_y", "max_y"}
    if keys == xy:
        for key in xy:
            _number(geometry, props[key])
        return
    if keys != set(EXTENT_KEYS):
        first = min(props.values(), key=lambda v: v.line)
        raise ConfigError(f"{geometry.where(first)}: bad region {name} needs min_fs, max_fs, "
                          "min_ss, max_ss (with panel) or min_x, max_x, min_y, max_y")
    for key in EXTENT_KEYS:
        _number(geometry, props[key])
    panel = props.get("panel")
    if panel is None:
        raise ConfigError(f"{geometry.where(props['min_fs'])}: CrystFEL 0.11 needs "
                          f"{name}/panel for a bad region in fs/ss")
    if panel.text not in geometry.panels:
        raise ConfigError(f"{geometry.where(panel)}: no panel {panel.text!r}")
    fs0, fs1, ss0, ss1 = (int(float(props[key].text)) for key in EXTENT_KEYS)
    pfs0, pfs1, pss0, pss1 = geometry.extent(panel.text)
    if not (pfs0 <= fs0 <= fs1 <= pfs1 and pss0 <= ss0 <= ss1 <= pss1):
        raise ConfigError(f"{geometry.where(props['min_fs'])}: bad region {name} is not inside "
                          f"panel {panel.text} (fs {pfs0}-{pfs1}, ss {pss0}-{pss1})")


def _number(geometry: Geometry, value: Value) -> float:
    try:
        return float(value.text)
    except ValueError as exc:
        raise ConfigError(f"{geometry.where(value)}: not a number") from exc


def mask_file_path(geometry: Geometry, file_text: str) -> Path:
    """Where a ``mask_file`` is: beside the geometry file first, else as given."""
    given = Path(file_text)
    if given.is_absolute():
        return given
    beside = Path(geometry.source).parent / given
    return beside if beside.exists() else given
