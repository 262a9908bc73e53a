"""Judging a batch: peaks from each mask, the hit rule, and the live page's summary."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from peaknet_serve.live import BatchSummarizer, BatchSummary
from peaknet_serve.peaks import ExtraBadPixels, HitConfig, Judged, PeakFinder, PeaksConfig, is_hit
from peaknet_serve.service.outcome import BatchOutcome
from peaknet_serve.wire import FrameBatch

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Judgement:
    """What became of each frame of a batch before writing: judged (in batch order), or failed.

    ``error`` is the last failure's reason and message; ``live`` the live page's summary.
    """

    judged: list[Judged]
    failed: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    live: BatchSummary | None = None

    @property
    def hits(self) -> int:
        return sum(frame.hit for frame in self.judged)

    @property
    def rows(self) -> list[int]:
        """Batch indices of the judged frames."""
        return [frame.index for frame in self.judged]

    def outcome(self, writer_id: str) -> BatchOutcome:
        """The batch's outcome once its judged frames are written by ``writer_id``."""
        hits = self.hits
        return BatchOutcome(
            hits=hits,
            non_hits=len(self.judged) - hits,
            failed=dict(self.failed),
            writer_id=writer_id,
            live=self.live,
            error=self.error,
        )


class BatchJudge:
    """Finds the peaks of each frame's mask and applies the hit rule; a frame whose peaks
    cannot be found is counted failed (``peak_finding``), never raised. Thread-safe.

    Args:
        peaks: the ``peaks`` section. hits: the ``hits`` section.
        bad_pixels: extra bad pixels (True = bad), an array shaped like a frame or a function of
            the frame shape, combined with ``peaks.bad_pixel_mask``.
    """

    def __init__(
        self, peaks: PeaksConfig, hits: HitConfig, *, bad_pixels: ExtraBadPixels | None = None
    ) -> None:
        self._finder = PeakFinder(peaks, bad_pixels=bad_pixels)
        self._hits = hits
        self._summarize = BatchSummarizer()

    def __call__(self, masks: np.ndarray, batch: FrameBatch) -> Judgement:
        """Judge each frame of ``batch`` (N, H, W) or (N, P, H, W) with its ``masks`` (same shape).

        Raises:
            ValueError: the masks do not match the frames.
        """
        if masks.shape != batch.images.shape:
            raise ValueError(f"masks {masks.shape} do not match frames {batch.images.shape}")
        failed: dict[str, int] = {}
        judged: list[Judged] = []
        error: str | None = None
        for index in range(len(batch)):
            try:
                peaks = self._finder.find(masks[index], batch.images[index])
            except Exception as exc:
                logger.error("1 frame(s) failed in peak_finding: %s: %s", type(exc).__name__, exc)
                failed["peak_finding"] = failed.get("peak_finding", 0) + 1
                error = f"peak_finding: {type(exc).__name__}: {exc}"
                continue
            judged.append(Judged(index=index, peaks=peaks, hit=is_hit(peaks.n_found, self._hits)))
        live = self._summarize(batch.images, judged, timestamps=batch.metadata.get("timestamp"))
        return Judgement(judged=judged, failed=failed, error=error, live=live)
