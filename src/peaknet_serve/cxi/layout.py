"""Where each panel of a panel stack goes in the 2-D array written to the CXI file.

The default is Cheetah's slab: panel p occupies rows [p*H, (p+1)*H) of a (P*H, W) array. A
CrystFEL ``.geom`` file can give other places instead: each stack panel (ASICs ``p{N}a{M}``, or
CSPAD's ``q{Q}a{A}``, see ``geometry.stack_index``) spans the union of its ASICs'
``min_fs..max_fs`` and ``min_ss..max_ss``, in the coordinates of the 2-D array. Peak positions are
moved by the same offsets, so they index the array as written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from peaknet_serve.cxi.geometry import Geometry, read_geometry, stack_index
from peaknet_serve.errors import ConfigError


@dataclass(frozen=True, eq=False)
class PanelLayout:
    """Panel offsets in the written 2-D array.

    Attributes:
        panel_shape: (H, W) of one panel (the whole frame for 2-D frames).
        offsets: (P, 2) int array, the (ss, fs) of each panel's first pixel in the written array.
        stored_shape: (rows, columns) of the written array.
        geometry_text: the ``.geom`` file the offsets came from, or None for the slab.
        is_2d: frames are (H, W), not a (P, H, W) stack.
    """

    panel_shape: tuple[int, int]
    offsets: np.ndarray
    stored_shape: tuple[int, int]
    geometry_text: str | None = None
    is_2d: bool = False

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
        """Offsets from a CrystFEL ``.geom`` file (panel names: ``geometry.stack_index``)."""
        return cls.for_frames(read_geometry(path), (n_panels, *panel_shape))

    @classmethod
    def for_frames(cls, geometry: Geometry, frame_shape: tuple[int, ...]) -> PanelLayout:
        """The layout ``geometry`` gives frames of ``frame_shape``: (H, W) or (P, H, W).

        2-D frames are written as they are; every panel must lie inside them. A stack's panel N
        goes where the geometry's panels of stack index N (``stack_index``) are.

        Raises:
            ConfigError: the geometry does not fit frames of this shape (the message says how).
        """
        source = geometry.source
        if len(frame_shape) == 2:
            height, width = frame_shape
            for name in geometry.panels:
                min_fs, max_fs, min_ss, max_ss = geometry.extent(name)
                if max_fs >= width or max_ss >= height or min(min_fs, min_ss) < 0:
                    raise ConfigError(
                        f"geometry {source!r}: panel {name} (fs {min_fs}-{max_fs}, ss "
                        f"{min_ss}-{max_ss}) lies outside the {height}x{width} frames"
                    )
            _check_covered(geometry, (height, width))
            return cls((height, width), np.zeros((1, 2), int), (height, width), geometry.text, True)
        n_panels, height, width = frame_shape
        extents = panel_extents(geometry)
        missing = [p for p in range(n_panels) if p not in extents]
        extra = sorted(set(extents) - set(range(n_panels)))
        if missing or extra:
            raise ConfigError(
                f"geometry {source!r} has no panels {missing} (named p{{N}}a{{M}}, or q{{Q}}a{{A}} "
                f"for CSPAD) for a stack of {n_panels} panels"
                + (f", and panels {extra} beyond it" if extra else "")
            )
        offsets = np.zeros((n_panels, 2), dtype=int)
        for p in range(n_panels):
            min_fs, max_fs, min_ss, max_ss = extents[p]
            if (max_ss - min_ss + 1, max_fs - min_fs + 1) != (height, width):
                raise ConfigError(
                    f"geometry {source!r}: panel p{p} spans "
                    f"{max_ss - min_ss + 1}x{max_fs - min_fs + 1} pixels but the frames' panels "
                    f"are {height}x{width}"
                )
            offsets[p] = (min_ss, min_fs)
        _check_no_overlap(offsets, (height, width), source)
        stored = (int(offsets[:, 0].max()) + height, int(offsets[:, 1].max()) + width)
        return cls((height, width), offsets, stored, geometry.text)

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

    def disassemble(self, stored: np.ndarray) -> np.ndarray:
        """A (rows, columns) array in this layout back as the frame: (H, W) or (P, H, W)."""
        height, width = self.panel_shape
        panels = [stored[ss : ss + height, fs : fs + width] for ss, fs in self.offsets]
        return panels[0].copy() if self.is_2d else np.stack(panels)

    def to_stored(
        self, panel: np.ndarray, x: np.ndarray, y: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-panel (fs, ss) positions as positions in the written array."""
        return x + self.offsets[panel, 1], y + self.offsets[panel, 0]


def panel_extents(geometry: Geometry) -> dict[int, tuple[int, int, int, int]]:
    """``{stack index: (min_fs, max_fs, min_ss, max_ss)}`` over the ASICs of each stack panel.

    Raises:
        ConfigError: a panel name maps to no stack index (``geometry.stack_index``).
    """
    extents: dict[int, tuple[int, int, int, int]] = {}
    for name in geometry.panels:
        index = stack_index(name)
        if index is None:
            raise ConfigError(
                f"geometry {geometry.source!r}: panel {name!r}: name panels p{{N}} or "
                "p{N}a{M} (N = index in the panel stack), or q{Q}a{A} for CSPAD, so that frames "
                "map onto them"
            )
        new = geometry.extent(name)
        old = extents.get(index)
        if old is not None:
            new = (min(old[0], new[0]), max(old[1], new[1]), min(old[2], new[2]),
                   max(old[3], new[3]))
        extents[index] = new
    return extents


def _check_no_overlap(offsets: np.ndarray, panel_shape: tuple[int, int], source: str) -> None:
    height, width = panel_shape
    ss, fs = offsets[:, 0], offsets[:, 1]
    apart = (np.abs(ss[:, None] - ss[None, :]) >= height) | (
        np.abs(fs[:, None] - fs[None, :]) >= width
    )
    np.fill_diagonal(apart, True)
    if not apart.all():
        raise ConfigError(
            f"geometry {source!r}: panels overlap in the 2-D array (two ASICs of one stack "
            "panel with different extents?)"
        )


def _check_covered(geometry: Geometry, frame_shape: tuple[int, int]) -> None:
    """Refuse 2-D frames with pixels outside every panel: the geometry is of another detector
    (or binning), and CrystFEL would ignore those pixels."""
    covered = np.zeros(frame_shape, dtype=bool)
    for name in geometry.panels:
        min_fs, max_fs, min_ss, max_ss = geometry.extent(name)
        covered[min_ss : max_ss + 1, min_fs : max_fs + 1] = True
    if not covered.all():
        rows, cols = np.nonzero(~covered)
        raise ConfigError(
            f"geometry {geometry.source!r}: its panels do not cover the {frame_shape[0]}x"
            f"{frame_shape[1]} frames ({int((~covered).sum())} pixels outside every panel, "
            f"e.g. ss {int(rows[0])} fs {int(cols[0])}): a geometry of another detector?"
        )
