"""The hit rule, and what it decides of one frame."""

from __future__ import annotations

from dataclasses import dataclass

from peaknet_serve.peaks.config import HitConfig
from peaknet_serve.peaks.find import Peaks


@dataclass(frozen=True)
class Judged:
    """One judged frame: its index in its batch, its peaks, and whether it is a hit."""

    index: int
    peaks: Peaks
    hit: bool


def is_hit(n_peaks: int, config: HitConfig | None = None) -> bool:
    """Whether a frame with ``n_peaks`` peaks is a hit: ``min_peaks <= n_peaks <= max_peaks``.

    Pass ``Peaks.n_found`` (the count before the per-frame cap).
    """
    config = config or HitConfig()
    return config.min_peaks <= n_peaks <= config.max_peaks
