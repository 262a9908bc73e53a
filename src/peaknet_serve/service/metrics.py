"""Prometheus view of a FrameLedger, read at scrape time so the counts are never kept twice."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from peaknet_serve.service.accounting import FrameLedger


class LedgerCollector(Collector):
    """Exports the ledger's counts as ``peaknet_*`` metrics."""

    def __init__(self, ledger: FrameLedger, *, paused: Callable[[], bool] | None = None) -> None:
        self._ledger = ledger
        self._paused = paused

    def collect(self) -> Iterator[Metric]:
        ledger = self._ledger
        frames = CounterMetricFamily(
            "peaknet_frames", "Frames by outcome since start.", labels=["outcome"]
        )
        frames.add_metric(["received"], ledger.received)
        frames.add_metric(["hit_written"], ledger.hits_written)
        frames.add_metric(["non_hit"], ledger.non_hits)
        frames.add_metric(["failed"], ledger.failed)
        yield frames
        failed = CounterMetricFamily(
            "peaknet_frames_failed", "Failed frames by reason.", labels=["reason"]
        )
        for reason, count in ledger.failed_by_reason.items():
            failed.add_metric([reason], count)
        yield failed
        rejected = CounterMetricFamily(
            "peaknet_messages_rejected", "Undecodable messages by reason.", labels=["reason"]
        )
        for reason, count in ledger.rejected_messages_by_reason.items():
            rejected.add_metric([reason], count)
        yield rejected
        yield CounterMetricFamily(
            "peaknet_messages_received", "Messages received.", value=ledger.messages_received
        )
        yield CounterMetricFamily(
            "peaknet_received_bytes", "Bytes received.", value=ledger.bytes_received
        )
        yield GaugeMetricFamily(
            "peaknet_frames_in_flight", "Frames sent on, not yet written.", value=ledger.in_flight
        )
        yield GaugeMetricFamily(
            "peaknet_frames_per_second",
            "Frames finished per second over the last minute.",
            value=ledger.frames_per_second(),
        )
        hit_rate = ledger.hit_rate()
        yield GaugeMetricFamily(
            "peaknet_hit_rate",
            "Hits over judged frames.",
            value=hit_rate if hit_rate is not None else float("nan"),
        )
        if self._paused is not None:
            yield GaugeMetricFamily(
                "peaknet_paused", "1 while pulling is paused.", value=float(self._paused())
            )


def ledger_registry(
    ledger: FrameLedger,
    *,
    paused: Callable[[], bool] | None = None,
) -> CollectorRegistry:
    """A registry of its own (not the process-wide default) holding the ledger's metrics."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(LedgerCollector(ledger, paused=paused))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The Prometheus text exposition of ``registry``."""
    return generate_latest(registry)
