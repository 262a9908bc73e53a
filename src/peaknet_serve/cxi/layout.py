"""Where each panel of a panel stack goes in the 2-D array written to the CXI file.

The default is Cheetah's slab: panel p occupies rows [p*H, (p+1)*H) of a (P*H, W) array. A
CrystFEL ``.geom`` file can give other places instead: each panel ``p{N}`` (ASICs ``p{N}a{M}``)
spans the union of its ASICs' ``min_fs..max_fs`` and ``min_ss..max_ss``, in the coordinates of the
2-D array. Peak positions are moved by the same offsets, so they index the array as written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from peaknet_serve.errors import ConfigError

_PANEL_NAME = re.compile(r"^p(\d+)(?:a(\d+))?$")
_EXTENT_KEYS = ("min_fs", "max_fs", "min_ss", "max_ss")


@dataclass(frozen=True, eq=False)
class PanelLayout:
    """Panel offsets in the written 2-D array.

    Attributes:
        panel_shape: (H, W) of one panel (the whole frame for 2-D frames).
        offsets: (P, 2) int array, the (ss, fs) of each panel's first pixel in the written array.
        stored_shape: (rows, columns) of the written array.
        geometry_text: the ``.geom`` file the offsets came from, or None for the slab.
    """

    panel_shape: tuple[int, int]
    offsets: np.ndarray
    stored_shape: tuple[int, int]
    geometry_text: str | None = None

    @property
    def n_panels(self) -> int:
        return len(self.offsets)

    @classmethod
    def slab(cls, n_panels: int, panel_shape: tuple[int, int]) -> PanelLayout:
        """Cheetah's slab: panels stacked along the slow-scan axis."""
        height, width = panel_shape
        offsets = np.stack([np.arange(n_panels) * height, np.zeros(n_panels, int)], axis=1)
        return cls(panel_shape, offsets, (n_panels * height, width))

    @classmethod
    def from_geometry(
        cls, path: str | Path, n_panels: int, panel_shape: tuple[int, int]
    ) -> PanelLayout:
        """Offsets from a CrystFEL ``.geom`` file with panels named ``p{N}`` or ``p{N}a{M}``."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"output.geometry_file: cannot read {str(path)!r}: {exc}") from exc
        extents = panel_extents(text)
        height, width = panel_shape
        missing = [p for p in range(n_panels) if p not in extents]
        if missing:
            raise ConfigError(
                f"output.geometry_file {str(path)!r} has no panels {missing} (named p{{N}}a{{M}}) "
                f"for a stack of {n_panels} panels"
            )
        offsets = np.zeros((n_panels, 2), dtype=int)
        for p in range(n_panels):
            min_fs, max_fs, min_ss, max_ss = extents[p]
            if (max_ss - min_ss + 1, max_fs - min_fs + 1) != (height, width):
                raise ConfigError(
                    f"output.geometry_file {str(path)!r}: panel p{p} spans "
                    f"{max_ss - min_ss + 1}x{max_fs - min_fs + 1} pixels but the frames' panels "
                    f"are {height}x{width}"
                )
            offsets[p] = (min_ss, min_fs)
        _check_no_overlap(offsets, panel_shape, path)
        stored = (int(offsets[:, 0].max()) + height, int(offsets[:, 1].max()) + width)
        return cls(panel_shape, offsets, stored, text)

    def is_plain_slab(self) -> bool:
        """Whether the written array is the stack reshaped, with no copy needed."""
        height, width = self.panel_shape
        return self.stored_shape == (self.n_panels * height, width) and bool(
            np.array_equal(self.offsets[:, 0], np.arange(self.n_panels) * height)
            and not self.offsets[:, 1].any()
        )

    def assemble(self, frames: np.ndarray) -> np.ndarray:
        """(B, P, H, W) frames as (B, rows, columns) float32 arrays in this layout."""
        batch = frames.shape[0]
        if self.is_plain_slab():
            return np.ascontiguousarray(frames, dtype=np.float32).reshape(
                (batch, *self.stored_shape)
            )
        out = np.zeros((batch, *self.stored_shape), dtype=np.float32)
        height, width = self.panel_shape
        for p, (ss, fs) in enumerate(self.offsets):
            out[:, ss : ss + height, fs : fs + width] = frames[:, p]
        return out

    def to_stored(
        self, panel: np.ndarray, x: np.ndarray, y: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-panel (fs, ss) positions as positions in the written array."""
        return x + self.offsets[panel, 1], y + self.offsets[panel, 0]


def panel_extents(text: str) -> dict[int, tuple[int, int, int, int]]:
    """``{panel index: (min_fs, max_fs, min_ss, max_ss)}`` over each panel's ASICs."""
    values: dict[tuple[int, int], dict[str, int]] = {}
    for raw_line in text.splitlines():
        line = raw_line.split(";", 1)[0].strip()
        if "=" not in line:
            continue
        key, value = (part.strip() for part in line.split("=", 1))
        if "/" not in key:
            continue
        name, prop = key.split("/", 1)
        if prop not in _EXTENT_KEYS or name.startswith("bad"):
            continue
        match = _PANEL_NAME.match(name)
        if match is None:
            raise ConfigError(
                f"geometry panel {name!r}: name panels p{{N}} or p{{N}}a{{M}} (N = index in the "
                "panel stack) so that frames map onto them"
            )
        asic = (int(match.group(1)), int(match.group(2) or 0))
        try:
            values.setdefault(asic, {})[prop] = int(float(value))
        except ValueError as exc:
            raise ConfigError(f"geometry line {raw_line.strip()!r}: not a number") from exc
    extents: dict[int, tuple[int, int, int, int]] = {}
    for (panel, asic), props in values.items():
        if len(props) != len(_EXTENT_KEYS):
            raise ConfigError(
                f"geometry panel p{panel}a{asic} lacks {sorted(set(_EXTENT_KEYS) - set(props))}"
            )
        old = extents.get(panel)
        new = (props["min_fs"], props["max_fs"], props["min_ss"], props["max_ss"])
        if old is not None:
            new = (min(old[0], new[0]), max(old[1], new[1]), min(old[2], new[2]),
                   max(old[3], new[3]))
        extents[panel] = new
    return extents


def _check_no_overlap(offsets: np.ndarray, panel_shape: tuple[int, int], path: Path) -> None:
    height, width = panel_shape
    ss, fs = offsets[:, 0], offsets[:, 1]
    apart = (np.abs(ss[:, None] - ss[None, :]) >= height) | (
        np.abs(fs[:, None] - fs[None, :]) >= width
    )
    np.fill_diagonal(apart, True)
    if not apart.all():
        raise ConfigError(
            f"output.geometry_file {str(path)!r}: panels overlap in the 2-D array; a geometry "
            "for 3-D data (pN/dim0 = N) does not apply here: give one for slab data, or none"
        )
