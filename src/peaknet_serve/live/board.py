"""What the live page shows, built from the writer stage's per-batch summaries.

The writer stage knows the peaks of every frame; the ingress sees every batch's outcome. So a
writer summarises each batch (:func:`summarize_batch`: a few hundred bytes, plus a thumbnail of
the batch's last hit), the summary rides back on the outcome, and the ingress folds it into one
:class:`LiveBoard`, which answers ``GET /live.json`` (:meth:`LiveBoard.snapshot`). This is the
OM monitor's view (hit rate, peakogram, last hit) for a Serve application.
"""

from __future__ import annotations

import base64
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from peaknet_serve.peaks import Judged, Peaks

THUMBNAIL_PX = 384
"""Longest side of the last-hit image sent to the page."""
PEAKOGRAM_BINS = (48, 48)
"""(radius, log10 intensity) bins of the peakogram."""
LOG10_INTENSITY_MAX = 6.0
MAX_PEAKS_PER_SUMMARY = 4096
"""Peakogram entries a summary carries at most (a batch of crowded frames is subsampled)."""


def _frame_2d(image: np.ndarray) -> np.ndarray:
    """A frame as one 2-D picture: panels (P, H, W) are stacked top to bottom."""
    return image if image.ndim == 2 else image.reshape(-1, image.shape[-1])


def _thumbnail(image: np.ndarray, peaks: Peaks) -> dict[str, Any]:
    """A PNG of ``image`` (log-scaled, shrunk by block maxima so peaks stay visible) with the
    peaks' positions in its pixel coordinates."""
    frame = _frame_2d(np.asarray(image))
    height, width = frame.shape
    step = max(1, math.ceil(max(height, width) / THUMBNAIL_PX))
    rows, cols = math.ceil(height / step), math.ceil(width / step)
    if (rows * step, cols * step) != frame.shape:  # edge blocks: pad with the frame's minimum
        pad = ((0, rows * step - height), (0, cols * step - width))
        frame = np.pad(frame, pad, constant_values=np.nanmin(frame))
    # fmax: masked (NaN) pixels do not blank their block; 8x a reshape max
    rows_max = np.fmax.reduce([frame[i::step] for i in range(step)])
    small = np.fmax.reduce([rows_max[:, j::step] for j in range(step)]).astype(np.float32)
    background = float(np.nanmedian(small))
    small = np.log1p(np.clip(np.nan_to_num(small - background), 0, None))
    top = float(np.percentile(small, 99.9)) or 1.0
    pixels = np.clip(small / top * 255.0, 0, 255).astype(np.uint8)
    ok, png = cv2.imencode(".png", pixels)
    assert ok, "PNG encoding of a uint8 image cannot fail"
    y = peaks.y + peaks.panel * (image.shape[-2] if image.ndim == 3 else 0)
    return {
        "png": base64.b64encode(png.tobytes()).decode("ascii"),
        "width": cols,
        "height": rows,
        "scale": step,
        "x": np.round((peaks.x + 0.5) / step - 0.5, 2).tolist(),
        "y": np.round((y + 0.5) / step - 0.5, 2).tolist(),
        "n_peaks": int(peaks.n_found),
    }


@dataclass(frozen=True)
class BatchSummary:
    """One batch as the live page sees it (plain lists: it is pickled from writer to ingress).

    ``peaks_per_frame``: ``Peaks.n_found`` of each judged frame. ``radius_max_px``: half the
    frame's diagonal (pixels). ``peak_radius_px``, ``peak_max_value``: distance from the frame
    centre (pixels) and peak value (ADU) of each peak, at most ``MAX_PEAKS_PER_SUMMARY``.
    ``last_hit``: the batch's last hit as a JSON thumbnail, or None.
    """

    frames: int
    hits: int
    peaks_per_frame: list[int]
    radius_max_px: float
    peak_radius_px: list[float]
    peak_max_value: list[float]
    last_hit: dict[str, Any] | None = None


def summarize_batch(
    images: np.ndarray,
    judged: Sequence[Judged],
    *,
    timestamps: np.ndarray | None = None,
    thumbnail: bool = True,
) -> BatchSummary:
    """A small summary of one batch for the live page.

    Args:
        images: the batch's frames, (B, H, W) or (B, P, H, W).
        judged: a ``Judged`` (frame index, peaks, hit) for each frame that was judged (what
            ``BatchJudge`` builds).
        timestamps: the frames' timestamps (metadata ``timestamp``), for the last hit's label.
        thumbnail: include the last hit's image (most of the time this takes:
            ``scripts/bench_live.py``).
    """
    counts = [int(frame.peaks.n_found) for frame in judged]
    radius: list[np.ndarray] = []
    intensity: list[np.ndarray] = []
    last_hit: Judged | None = None
    for frame in judged:
        image = images[frame.index]
        centre_y, centre_x = (image.shape[-2] - 1) / 2, (image.shape[-1] - 1) / 2
        radius.append(np.hypot(frame.peaks.x - centre_x, frame.peaks.y - centre_y))
        intensity.append(np.asarray(frame.peaks.max_value, dtype=np.float64))
        if frame.hit:
            last_hit = frame
    r = np.concatenate(radius) if radius else np.zeros(0)
    v = np.concatenate(intensity) if intensity else np.zeros(0)
    if len(r) > MAX_PEAKS_PER_SUMMARY:
        keep = np.random.default_rng(len(r)).choice(len(r), MAX_PEAKS_PER_SUMMARY, replace=False)
        r, v = r[keep], v[keep]
    thumb: dict[str, Any] | None = None
    if last_hit is not None and thumbnail:
        thumb = _thumbnail(images[last_hit.index], last_hit.peaks)
        if timestamps is not None:
            thumb["timestamp"] = int(timestamps[last_hit.index])
    return BatchSummary(
        frames=len(judged),
        hits=sum(frame.hit for frame in judged),
        peaks_per_frame=counts,
        radius_max_px=float(np.hypot(*images.shape[-2:]) / 2),
        peak_radius_px=np.round(r, 1).tolist(),
        peak_max_value=np.round(v, 1).tolist(),
        last_hit=thumb,
    )


class BatchSummarizer:
    """:func:`summarize_batch` for a writer replica, with at most one hit image per
    ``image_interval_s`` (the page polls once a second; images are the costly part).

    Args:
        image_interval_s: least time between two summaries that carry an image.
        clock: seconds, monotonic.
    """

    def __init__(self, *, image_interval_s: float = 0.5, clock: Any = time.monotonic) -> None:
        self._interval = image_interval_s
        self._clock = clock
        self._last_image = -math.inf
        self._lock = threading.Lock()

    def __call__(
        self,
        images: np.ndarray,
        judged: Sequence[Judged],
        *,
        timestamps: np.ndarray | None = None,
    ) -> BatchSummary:
        with self._lock:
            due = any(frame.hit for frame in judged) and (
                self._clock() - self._last_image >= self._interval
            )
            if due:
                self._last_image = self._clock()
        return summarize_batch(images, judged, timestamps=timestamps, thumbnail=due)


class LiveBoard:
    """Rolling statistics for the live page, fed with batch summaries (thread-safe).

    Args:
        history_s: how far back the time series go.
        sample_s: one point of the time series per this many seconds.
        clock: seconds, monotonic (tests pass their own).
    """

    def __init__(
        self, *, history_s: float = 600.0, sample_s: float = 1.0, clock: Any = time.monotonic
    ) -> None:
        self._clock = clock
        self._sample_s = sample_s
        self._lock = threading.Lock()
        self._started = clock()
        self._frames = 0
        self._hits = 0
        self._series: deque[tuple[float, int, int]] = deque(maxlen=int(history_s / sample_s) + 1)
        self._peaks_per_frame: Counter[int] = Counter()
        self._peakogram = np.zeros(PEAKOGRAM_BINS, dtype=np.int64)
        self._radius_max: float | None = None
        self._last_hit: dict[str, Any] | None = None
        self._series.append((self._started, 0, 0))

    def add(self, summary: BatchSummary | None) -> None:
        """Fold in one batch's :func:`summarize_batch` (None, from an old writer, is ignored)."""
        if not summary:
            return
        with self._lock:
            self._frames += summary.frames
            self._hits += summary.hits
            self._peaks_per_frame.update(summary.peaks_per_frame)
            if self._radius_max is None:
                self._radius_max = summary.radius_max_px or 1.0
            histogram, _, _ = np.histogram2d(
                np.asarray(summary.peak_radius_px, dtype=np.float64),
                np.log10(1.0 + np.clip(np.asarray(summary.peak_max_value), 0, None)),
                bins=PEAKOGRAM_BINS,
                range=((0.0, self._radius_max), (0.0, LOG10_INTENSITY_MAX)),
            )
            self._peakogram += histogram.astype(np.int64)
            if summary.last_hit:
                self._last_hit = dict(summary.last_hit)
            self._sample()

    def _sample(self) -> None:
        now = self._clock()
        if now - self._series[-1][0] >= self._sample_s:
            self._series.append((now, self._frames, self._hits))

    def _rates(self) -> dict[str, list[float | None]]:
        points = list(self._series)
        t, frames_per_s, hit_rate = [], [], []
        for (t0, f0, h0), (t1, f1, h1) in zip(points, points[1:], strict=False):
            t.append(round(t1 - self._started, 2))
            frames_per_s.append(round((f1 - f0) / (t1 - t0), 3))
            hit_rate.append(round((h1 - h0) / (f1 - f0), 4) if f1 > f0 else None)
        return {"t": t, "frames_per_s": frames_per_s, "hit_rate": hit_rate}

    def _histogram(self) -> dict[str, Any]:
        if not self._peaks_per_frame:
            return {"bin_width": 1, "counts": []}
        top = max(self._peaks_per_frame)
        width = max(1, math.ceil((top + 1) / 40))
        counts = [0] * (top // width + 1)
        for n, count in self._peaks_per_frame.items():
            counts[n // width] += count
        return {"bin_width": width, "counts": counts}

    def snapshot(self, *, replicas: Mapping[str, int] | None = None) -> dict[str, Any]:
        """The ``/live.json`` body: totals, time series, histograms, the last hit, replicas.

        Args:
            replicas: RUNNING replicas per deployment (the ingress asks Serve).
        """
        with self._lock:
            self._sample()
            return {
                "uptime_s": round(self._clock() - self._started, 1),
                "totals": {
                    "frames": self._frames,
                    "hits": self._hits,
                    "hit_rate": round(self._hits / self._frames, 4) if self._frames else None,
                },
                "series": self._rates(),
                "peaks_per_frame": self._histogram(),
                "peakogram": {
                    "radius_max_px": self._radius_max,
                    "log10_intensity_max": LOG10_INTENSITY_MAX,
                    "counts": self._peakogram.tolist(),
                },
                "last_hit": self._last_hit,
                "replicas": dict(replicas or {}),
            }
