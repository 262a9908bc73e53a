"""Per-replica Prometheus metrics through ``ray.serve.metrics`` (exported by Ray on every node,
as ``ray_peaknet_*``, with Serve's deployment, replica and application tags added).

One small class per deployment; each replica makes one in ``__init__`` and calls it on the data
path. Service-level totals stay on the ingress's ``/metrics`` (``peaknet_*``): these add what
only the replicas see (batch sizes, GPU time per batch, peaks per frame, write times, errors by
kind), summed over replicas and nodes by Prometheus.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from ray.serve.metrics import Counter, Gauge, Histogram

logger = logging.getLogger(__name__)

FRAME_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128]
SECONDS_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
PEAK_BUCKETS = [0.5, 1.5, 4.5, 9.5, 19.5, 49.5, 99.5, 199.5, 499.5, 999.5, 1999.5]
"""Between integers (Ray wants positive bounds): ``le="0.5"`` counts the frames with none."""


def add(counter: Counter, n: float, tags: dict[str, str] | None = None) -> None:
    """``counter.inc(n)`` for a positive ``n``; nothing otherwise, and never an exception.

    Ray's counters raise on ``inc(0)`` (an empty message has 0 bytes) and on negative values; a
    metric must never be what stops the data path.
    """
    if not n > 0:  # also False for NaN
        return
    try:
        counter.inc(n, tags=tags)
    except Exception as exc:
        logger.warning("metric %s not updated by %r: %s", counter.info.get("name"), n, exc)


class IngressMetrics:
    """Messages and bytes in, frames by outcome, in-flight batches, the time of each batch.

    The messages, bytes and frames are the ledger's counts (``FrameLedger(listener=...)``, a
    ``LedgerListener``), told as it makes them; the ingress sets ``in_flight`` and observes
    ``batch`` itself.
    """

    def __init__(self) -> None:
        self.messages = Counter(
            "peaknet_ingress_messages", "Messages pulled, by result.", tag_keys=("result",)
        )
        self.bytes = Counter("peaknet_ingress_bytes", "Bytes pulled from the socket.")
        self.frames = Counter("peaknet_ingress_frames", "Frames by outcome.", tag_keys=("outcome",))
        self.in_flight = Gauge("peaknet_ingress_batches_in_flight", "Batches sent on, not done.")
        self.batch = Histogram(
            "peaknet_ingress_batch_seconds",
            "Time from submitting a batch to its outcome (model and writer, retries included).",
            boundaries=SECONDS_BUCKETS,
        )

    def message_received(self, n_bytes: int) -> None:
        add(self.bytes, n_bytes)

    def message_rejected(self, reason: str) -> None:
        add(self.messages, 1, {"result": f"rejected_{reason}"})

    def frames_received(self, n: int) -> None:
        add(self.messages, 1, {"result": "decoded"})
        add(self.frames, n, {"outcome": "received"})

    def settled(self, *, hits: int, non_hits: int, failed: Mapping[str, int]) -> None:
        for outcome, n in (("hit_written", hits), ("non_hit", non_hits)):
            add(self.frames, n, {"outcome": outcome})
        for reason, n in failed.items():
            add(self.frames, n, {"outcome": f"failed_{reason}"})


class PeakNetMetrics:
    """Frames per model call and the time of each call (GPU time on a GPU), errors by kind."""

    def __init__(self) -> None:
        self.batch_frames = Histogram(
            "peaknet_model_batch_frames", "Frames per engine call.", boundaries=FRAME_BUCKETS
        )
        self.batch_seconds = Histogram(
            "peaknet_model_batch_seconds",
            "Wall time of one engine call (copy in, compute, copy out).",
            boundaries=SECONDS_BUCKETS,
        )
        self.errors = Counter("peaknet_model_errors", "Failed engine calls.", tag_keys=("kind",))

    def batch(self, *, frames: int, seconds: float) -> None:
        self.batch_frames.observe(frames)
        self.batch_seconds.observe(seconds)

    def error(self, exc: BaseException) -> None:
        add(self.errors, 1, {"kind": type(exc).__name__})


class WriterMetrics:
    """Peaks per frame, hits, the time of each write, errors by kind."""

    def __init__(self) -> None:
        self.peaks = Histogram(
            "peaknet_writer_peaks_per_frame", "Peaks found per frame.", boundaries=PEAK_BUCKETS
        )
        self.frames = Counter(
            "peaknet_writer_frames", "Frames judged, by verdict.", tag_keys=("verdict",)
        )
        self.write_seconds = Histogram(
            "peaknet_writer_write_seconds",
            "Time to append one batch to the CXI file and flush it.",
            boundaries=SECONDS_BUCKETS,
        )
        self.errors = Counter("peaknet_writer_errors", "Writer errors.", tag_keys=("kind",))

    def judged(self, peaks_per_frame: Iterable[int], *, hits: int) -> None:
        frames = 0
        for n in peaks_per_frame:
            self.peaks.observe(n)
            frames += 1
        add(self.frames, hits, {"verdict": "hit"})
        add(self.frames, frames - hits, {"verdict": "non_hit"})

    def written(self, seconds: float) -> None:
        self.write_seconds.observe(seconds)

    def error(self, kind: str, n: int = 1) -> None:
        add(self.errors, n, {"kind": kind})
