"""Synthetic diffraction frames with known Bragg spots, for the pusher, tests and demo training.

A frame is a smooth background (a constant, a water-like ring, a gentle gradient) plus Gaussian
spots a few pixels wide, with Poisson-like noise (Gaussian with variance equal to the mean,
which is what photon counting gives at these levels and is much cheaper to draw; or true
Poisson counts, ``noise="poisson"``, which differ at a few photons per pixel). A fraction
``hit_fraction`` of the frames carry ``peaks`` spots; the others carry none. Everything about
event ``e`` is drawn from ``numpy.random.default_rng([seed, e])``, so any frame can be rebuilt
alone, in any order, by any process.

Event indices and timestamps: ``first_event(rank)`` gives each pusher rank its own block of
event indices; ``event_timestamp(e)`` maps an index to a unique LCLS-style uint64
``(seconds << 32) | nanoseconds`` at a 120 Hz cadence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from peaknet_serve.errors import ConfigError

#: Event indices reserved per pusher rank: rank r sends events r*RANK_STRIDE, r*RANK_STRIDE+1, ...
RANK_STRIDE = 1_000_000_000
#: First timestamp (seconds since the epoch, November 2023) and the event cadence.
START_TIME_S = 1_700_000_000
EVENT_PERIOD_NS = 8_333_333  # 120 Hz

_DTYPES = frozenset(np.dtype(t) for t in ("float64", "float32", "uint16", "int32"))


def first_event(rank: int) -> int:
    """The first event index of pusher ``rank`` (ranks never share an index)."""
    return rank * RANK_STRIDE


def event_timestamp(event: int) -> int:
    """LCLS timestamp ``(sec << 32) | ns`` of event ``event``; distinct events never collide."""
    t_ns = event * EVENT_PERIOD_NS
    return ((START_TIME_S + t_ns // 1_000_000_000) << 32) | (t_ns % 1_000_000_000)


@dataclass(frozen=True)
class FrameTruth:
    """What was put into one synthetic frame.

    Attributes:
        event: event index. timestamp: uint64 ``(sec << 32) | ns``. wavelength_nm: as sent.
        panel, y, x, intensity, sigma: one entry per spot; y/x are the spot centre in pixel
            index coordinates of its panel (pixel i spans [i - 0.5, i + 0.5]); intensity is the
            integrated photon count; sigma the Gaussian width in pixels.
    """

    event: int
    timestamp: int
    wavelength_nm: float
    panel: np.ndarray = field(repr=False)
    y: np.ndarray = field(repr=False)
    x: np.ndarray = field(repr=False)
    intensity: np.ndarray = field(repr=False)
    sigma: np.ndarray = field(repr=False)

    @property
    def n_peaks(self) -> int:
        return int(self.y.size)

    @property
    def is_hit(self) -> bool:
        return self.n_peaks > 0

    def to_record(self) -> dict[str, Any]:
        """A JSON-ready dict (one line of the pusher's ``--truth`` file)."""
        return {
            "event": self.event,
            "timestamp": self.timestamp,
            "wavelength_nm": self.wavelength_nm,
            "n_peaks": self.n_peaks,
            "peaks": [
                {"panel": int(p), "y": float(y), "x": float(x), "intensity": float(i)}
                for p, y, x, i in zip(self.panel, self.y, self.x, self.intensity, strict=True)
            ],
        }


class SyntheticFrames:
    """Deterministic generator of diffraction-like frames and their truth.

    Args:
        shape: (H, W) or (P, H, W) per frame.
        peaks: spots per hit frame.
        hit_fraction: probability that a frame is a hit (has spots).
        seed: base seed; frame ``e`` uses ``default_rng([seed, e])``.
        dtype: output dtype (float64, float32, uint16, int32; integers are rounded counts).
        background: range of the mean background level (photons per pixel).
        intensity: range of the integrated spot intensity (photons), drawn log-uniformly.
        sigma: range of the spot width (pixels).
        margin: minimum distance of a spot centre from the panel edge (pixels).
        min_distance: minimum distance between two spot centres on one panel (pixels).
        wavelength_nm: mean wavelength; each event varies by 0.1 %.
        noise: "gaussian": Gaussian with variance equal to the mean (cheap; the pusher's
            default); "poisson": true Poisson photon counts (integers, as a detector in photon
            units at low background, where the two differ most).
        cycle: reuse the content of this many frames (0: every frame is new). Event ``e`` then
            carries the image, spots and wavelength of event ``e % cycle`` under its own event
            number and timestamp, so a load test is not limited by making frames (slow at
            1920x1920: docs/perf-notes.md).
    """

    def __init__(
        self,
        *,
        shape: tuple[int, ...] = (512, 512),
        peaks: int = 30,
        hit_fraction: float = 0.5,
        seed: int = 0,
        dtype: str = "float32",
        background: tuple[float, float] = (5.0, 40.0),
        intensity: tuple[float, float] = (800.0, 8000.0),
        sigma: tuple[float, float] = (0.7, 1.5),
        margin: int = 8,
        min_distance: float = 12.0,
        wavelength_nm: float = 0.13,
        noise: str = "gaussian",
        cycle: int = 0,
    ) -> None:
        if noise not in ("gaussian", "poisson"):
            raise ConfigError(f"noise={noise!r} must be 'gaussian' or 'poisson'")
        if cycle < 0:
            raise ConfigError(f"cycle={cycle} must be 0 (off) or a number of frames")
        if len(shape) not in (2, 3) or min(shape) < 1:
            raise ConfigError(f"frame shape {shape} must be (H, W) or (P, H, W)")
        if np.dtype(dtype) not in _DTYPES:
            raise ConfigError(
                f"dtype {dtype!r} unsupported; use one of {sorted(map(str, _DTYPES))}"
            )
        if not 0.0 <= hit_fraction <= 1.0:
            raise ConfigError(f"hit_fraction={hit_fraction} must be within [0, 1]")
        height, width = shape[-2:]
        if peaks > 0 and min(height, width) <= 2 * margin:
            raise ConfigError(f"frame {height}x{width} too small for margin {margin} px")
        # random placement fills about half the area that disks of diameter min_distance can tile
        area = (height - 2 * margin + min_distance) * (width - 2 * margin + min_distance)
        if peaks * math.pi / 4 * min_distance**2 > 0.5 * area * (len(shape) == 3 and shape[0] or 1):
            raise ConfigError(
                f"{peaks} spots {min_distance} px apart do not fit on {shape} frames; "
                "lower peaks or min_distance, or use a larger shape"
            )
        self.shape = tuple(int(s) for s in shape)
        self.panels = 1 if len(shape) == 2 else self.shape[0]
        self.peaks = peaks
        self.hit_fraction = hit_fraction
        self.seed = seed
        self.dtype = np.dtype(dtype)
        self.background = background
        self.intensity = intensity
        self.sigma = sigma
        self.margin = margin
        self.min_distance = min_distance
        self.wavelength_nm = wavelength_nm
        self.noise = noise
        self.cycle = cycle
        self._cycled: dict[int, tuple[np.ndarray, FrameTruth]] = {}
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        cy, cx = (height - 1) / 2, (width - 1) / 2
        self._radius = np.hypot(yy - cy, xx - cx).astype(np.int32)
        self._ramp = (yy - cy) / max(height, 1)
        self._max_radius = int(self._radius.max()) + 1

    def frame(self, event: int) -> tuple[np.ndarray, FrameTruth]:
        """One frame (shape ``self.shape``) and its truth."""
        if not self.cycle:
            return self._make(event)
        source = event % self.cycle
        if source not in self._cycled:
            self._cycled[source] = self._make(source)
        image, truth = self._cycled[source]
        return image, replace(truth, event=event, timestamp=event_timestamp(event))

    def _make(self, event: int) -> tuple[np.ndarray, FrameTruth]:
        rng = np.random.default_rng([self.seed, event])
        wavelength = self.wavelength_nm * (1.0 + 1e-3 * rng.standard_normal())
        n = self.peaks if rng.random() < self.hit_fraction else 0
        panel, y, x = self._place(rng, n)
        lo, hi = self.intensity
        intensity = np.exp(rng.uniform(math.log(lo), math.log(hi), n))
        sigma = rng.uniform(*self.sigma, n)
        expected = np.stack([self._background(rng) for _ in range(self.panels)])
        for p, cy, cx, total, s in zip(panel, y, x, intensity, sigma, strict=True):
            _add_spot(expected[p], cy, cx, total, s)
        if self.noise == "poisson":
            image = rng.poisson(np.maximum(expected, 0)).astype(np.float32)
        else:
            noise = rng.standard_normal(expected.shape, dtype=np.float32)
            image = expected + np.sqrt(expected) * noise
            np.maximum(image, 0, out=image)
        if self.dtype.kind in "iu":
            image = np.rint(image)
        image = image.astype(self.dtype, copy=False).reshape(self.shape)
        truth = FrameTruth(
            event=event,
            timestamp=event_timestamp(event),
            wavelength_nm=float(wavelength),
            panel=panel,
            y=y,
            x=x,
            intensity=intensity,
            sigma=sigma,
        )
        return image, truth

    def batch(self, start_event: int, n: int) -> tuple[np.ndarray, list[FrameTruth]]:
        """Frames of events ``start_event .. start_event + n - 1``: ((n, *shape), truths)."""
        images = np.empty((n, *self.shape), dtype=self.dtype)
        truths = []
        for i in range(n):
            images[i], truth = self.frame(start_event + i)
            truths.append(truth)
        return images, truths

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        level = rng.uniform(*self.background)
        radii = np.arange(self._max_radius, dtype=np.float32)
        ring_at = rng.uniform(0.25, 0.45) * self._max_radius
        ring_width = rng.uniform(0.05, 0.12) * self._max_radius
        profile = level * (
            1.0 + rng.uniform(0.3, 1.0) * np.exp(-(((radii - ring_at) / ring_width) ** 2))
        )
        return profile[self._radius] + (rng.uniform(-0.3, 0.3) * level) * self._ramp

    def _place(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
        """Spot centres at least ``margin`` from the edges and ``min_distance`` apart."""
        height, width = self.shape[-2:]
        panel, ys, xs = [], [], []
        tries = 0
        while len(ys) < n:
            tries += 1
            if tries % (50 * n + 200) == 0:  # boxed in: start again with fresh positions
                panel, ys, xs = [], [], []
            if tries > 20 * (50 * n + 200):
                raise ConfigError(
                    f"cannot place {n} spots {self.min_distance} px apart on "
                    f"{self.panels} panel(s) of {height}x{width}; lower peaks or min_distance"
                )
            p = int(rng.integers(self.panels))
            y = rng.uniform(self.margin, height - 1 - self.margin)
            x = rng.uniform(self.margin, width - 1 - self.margin)
            if all(
                q != p or (y - yq) ** 2 + (x - xq) ** 2 >= self.min_distance**2
                for q, yq, xq in zip(panel, ys, xs, strict=True)
            ):
                panel.append(p)
                ys.append(y)
                xs.append(x)
        return np.asarray(panel, np.int32), np.asarray(ys), np.asarray(xs)


def _add_spot(image: np.ndarray, cy: float, cx: float, total: float, sigma: float) -> None:
    """Add a 2-D Gaussian of integrated intensity ``total`` centred at (cy, cx), in place."""
    half = max(2, math.ceil(4 * sigma))
    y0, x0 = max(0, round(cy) - half), max(0, round(cx) - half)
    y1, x1 = min(image.shape[0], round(cy) + half + 1), min(image.shape[1], round(cx) + half + 1)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    r2 = (yy - cy) ** 2 + (xx - cx) ** 2
    image[y0:y1, x0:x1] += (total / (2 * math.pi * sigma**2)) * np.exp(-r2 / (2 * sigma**2))


def spot_mask(truth: FrameTruth, shape: tuple[int, ...], *, radius: float = 2.0) -> np.ndarray:
    """Boolean label mask: pixels within ``radius`` px of a spot centre.

    ``shape`` is (H, W) or (P, H, W), as the frame the truth belongs to.
    """
    mask = np.zeros(shape, dtype=bool)
    planes = mask[None] if mask.ndim == 2 else mask
    height, width = shape[-2:]
    half = math.ceil(radius)
    for p, cy, cx in zip(truth.panel, truth.y, truth.x, strict=True):
        y0, x0 = max(0, round(cy) - half), max(0, round(cx) - half)
        y1, x1 = min(height, round(cy) + half + 1), min(width, round(cx) + half + 1)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        planes[p, y0:y1, x0:x1] |= (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    return mask


def truth_arrays(truths: list[FrameTruth]) -> dict[str, np.ndarray]:
    """Flat per-peak and per-frame arrays of ``truths`` (for HDF5 truth files and training)."""
    counts = np.array([t.n_peaks for t in truths], dtype=np.int64)
    cat = [np.concatenate([getattr(t, k) for t in truths] or [np.empty(0)]) for k in _PEAK_KEYS]
    return {
        "event": np.array([t.event for t in truths], dtype=np.int64),
        "timestamp": np.array([t.timestamp for t in truths], dtype=np.uint64),
        "wavelength_nm": np.array([t.wavelength_nm for t in truths], dtype=np.float64),
        "n_peaks": counts,
        "peak_event": np.repeat(np.array([t.event for t in truths], dtype=np.int64), counts),
        **{f"peak_{k}": v for k, v in zip(_PEAK_KEYS, cat, strict=True)},
    }


_PEAK_KEYS = ("panel", "y", "x", "intensity", "sigma")


def blank_frame(
    rng: np.random.Generator,
    shape: tuple[int, int],
    *,
    photons: float,
    water_ring: bool = False,
    gaps: bool = False,
) -> np.ndarray:
    """A frame without a crystal: Poisson photon counts, float32 (H, W), for hit-rate checks.

    Args:
        rng: the random generator (the frame is a function of its state).
        shape: (H, W) pixels.
        photons: mean background, photons per pixel.
        water_ring: add a diffuse ring peaking at 1.5 x ``photons`` at ~38 % of the half-width
            from the centre (water scatters around 3.1 1/Angstrom), ~4 % of the width wide.
        gaps: NaN in two 8-row and two 8-column bands (module gaps of an assembled image).
    """
    height, width = shape
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    radius = np.hypot(yy - (height - 1) / 2, xx - (width - 1) / 2)
    expected = np.full(shape, photons, dtype=np.float64)
    if water_ring:
        ring_at, ring_width = 0.38 * min(height, width) / 2, 0.04 * min(height, width)
        expected += 1.5 * photons * np.exp(-(((radius - ring_at) / ring_width) ** 2))
    image = rng.poisson(expected).astype(np.float32)
    if gaps:
        for start in (height // 3, 2 * height // 3):
            image[start : start + 8] = np.nan
        for start in (width // 3, 2 * width // 3):
            image[:, start : start + 8] = np.nan
    return image
