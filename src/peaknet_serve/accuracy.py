"""Found peaks against true spots: one-to-one matching, recall, precision, position error.

A found peak matches a true spot on the same panel when their centres are at most ``radius``
pixels apart; each spot and each peak match at most once (an optimal one-to-one assignment,
``scipy.optimize.linear_sum_assignment``, so a close pair is never lost to a greedy choice).
Recall is matched / true spots, precision matched / found peaks, and the position error is the
distance of the matched pairs. A frame is a true hit when it holds spots; a predicted hit when the
hit rule (``hits``) accepts its peak count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from peaknet_serve.peaks import HitConfig, Peaks, is_hit
from peaknet_serve.synthetic import FrameTruth

DEFAULT_RADIUS = 1.5


@dataclass(frozen=True)
class FrameMatch:
    """Matching of one frame: counts and the distances of the matched pairs."""

    n_true: int
    n_found: int
    distances: np.ndarray

    @property
    def n_matched(self) -> int:
        return int(self.distances.size)


def match_peaks(
    truth_yx: np.ndarray,
    found_yx: np.ndarray,
    *,
    radius: float = DEFAULT_RADIUS,
    truth_panel: np.ndarray | None = None,
    found_panel: np.ndarray | None = None,
) -> FrameMatch:
    """One-to-one matching of found peaks to true spots within ``radius`` pixels.

    Args:
        truth_yx: (n, 2) true centres (row, column).
        found_yx: (m, 2) found centres, same convention.
        radius: largest centre distance of a match, pixels.
        truth_panel, found_panel: panel of each centre; peaks match only on the same panel.

    Returns:
        The counts and the distances of the matched pairs (at most ``min(n, m)``).
    """
    truth_yx = np.asarray(truth_yx, dtype=np.float64).reshape(-1, 2)
    found_yx = np.asarray(found_yx, dtype=np.float64).reshape(-1, 2)
    n, m = len(truth_yx), len(found_yx)
    if n == 0 or m == 0:
        return FrameMatch(n, m, np.zeros(0))
    distance = np.hypot(*(truth_yx[:, None, :] - found_yx[None, :, :]).transpose(2, 0, 1))
    if truth_panel is not None and found_panel is not None:
        other_panel = np.asarray(truth_panel)[:, None] != np.asarray(found_panel)[None, :]
        distance[other_panel] = np.inf
    allowed = distance <= radius
    # Pairs beyond the radius cost more than any set of allowed pairs, so the assignment
    # maximises the number of matches first and minimises their total distance second.
    cost = np.where(allowed, distance, radius * (min(n, m) + 1))
    rows, cols = linear_sum_assignment(cost)
    ok = allowed[rows, cols]
    return FrameMatch(n, m, distance[rows[ok], cols[ok]])


def match_frame(truth: FrameTruth, peaks: Peaks, *, radius: float = DEFAULT_RADIUS) -> FrameMatch:
    """``match_peaks`` for one synthetic frame and the peaks found in it."""
    return match_peaks(
        np.stack([truth.y, truth.x], axis=1),
        np.stack([peaks.y, peaks.x], axis=1),
        radius=radius,
        truth_panel=truth.panel,
        found_panel=peaks.panel,
    )


@dataclass(frozen=True)
class Score:
    """Accuracy over a set of frames."""

    frames: int
    n_true: int
    n_found: int
    n_matched: int
    mean_error: float
    p95_error: float
    hit_accuracy: float

    @property
    def recall(self) -> float:
        return self.n_matched / self.n_true if self.n_true else 1.0

    @property
    def precision(self) -> float:
        return self.n_matched / self.n_found if self.n_found else 1.0


def score(
    truths: Sequence[FrameTruth],
    found: Sequence[Peaks],
    *,
    radius: float = DEFAULT_RADIUS,
    hits: HitConfig | None = None,
) -> Score:
    """Recall, precision, position error and hit accuracy of ``found`` against ``truths``."""
    if len(truths) != len(found):
        raise ValueError(f"{len(truths)} truths but {len(found)} peak lists")
    matches = [match_frame(t, p, radius=radius) for t, p in zip(truths, found, strict=True)]
    distances = np.concatenate([m.distances for m in matches] or [np.zeros(0)])
    hit_right = [t.is_hit == is_hit(p.n_found, hits) for t, p in zip(truths, found, strict=True)]
    return Score(
        frames=len(truths),
        n_true=sum(m.n_true for m in matches),
        n_found=sum(m.n_found for m in matches),
        n_matched=int(distances.size),
        mean_error=float(distances.mean()) if distances.size else float("nan"),
        p95_error=float(np.percentile(distances, 95)) if distances.size else float("nan"),
        hit_accuracy=float(np.mean(hit_right)) if hit_right else float("nan"),
    )


def format_table(scores: dict[str, Score], *, radius: float) -> str:
    """A plain-text table, one row per finder."""
    header = (
        f"{'finder':<16} {'frames':>6} {'true':>7} {'found':>7} {'matched':>7} {'recall':>7} "
        f"{'precision':>9} {'mean err':>8} {'p95 err':>7} {'hit acc':>7}"
    )
    lines = [f"matches within {radius:g} px; errors in px", header, "-" * len(header)]
    for name, s in scores.items():
        lines.append(
            f"{name:<16} {s.frames:>6} {s.n_true:>7} {s.n_found:>7} {s.n_matched:>7} "
            f"{s.recall:>7.4f} "
            f"{s.precision:>9.4f} {s.mean_error:>8.3f} {s.p95_error:>7.3f} {s.hit_accuracy:>7.4f}"
        )
    return "\n".join(lines)
