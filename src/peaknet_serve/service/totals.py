"""Service totals over every ingress replica of a deployment, those that died or stopped included.

Each ingress replica posts its ``FrameLedger.snapshot()``; the totals add up the last post of
every replica that ever posted, so a replica that dies or is replaced keeps its counts in the
account and the service's Prometheus counters never go backwards. What a replica held when it
went (its ``in_flight``) is *lost*: ``ingress_died`` when it stopped posting without a word
(a lower bound: it may have taken messages after its last post), ``unsettled_at_stop`` when it
stopped cleanly with batches still out after its drain (exact). Then, for the service:
``received == hits_written + non_hits + failed + in_flight + lost``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

COUNTS = (
    "received",
    "hits_written",
    "non_hits",
    "failed",
    "messages_received",
    "messages_rejected",
    "bytes_received",
)
BY_REASON = ("failed_by_reason", "messages_rejected_by_reason")
INGRESS_DIED = "ingress_died"
UNSETTLED_AT_STOP = "unsettled_at_stop"
STOPPED = "stopped"
"""Key of a replica's last post after a clean drain: its counts are final."""


def gone(posts: Mapping[str, tuple[float, Mapping[str, Any]]], *, now: float, max_age_s: float):
    """Replicas whose last post is older than ``max_age_s`` and was not a clean stop."""
    return {
        replica
        for replica, (posted, body) in posts.items()
        if not body.get(STOPPED) and now - posted > max_age_s
    }


def service_totals(posts: Mapping[str, Mapping[str, Any]], dead: Collection[str]) -> dict[str, Any]:
    """The counts of ``posts`` (replica -> its last ledger snapshot) added up.

    ``dead`` names the replicas that stopped posting without a clean stop. Odd values (missing,
    negative, non-integer) are read as 0 so that one bad post cannot break ``/status``.
    """
    totals = dict.fromkeys(COUNTS, 0)
    reasons: dict[str, Counter[str]] = {key: Counter() for key in BY_REASON}
    lost: Counter[str] = Counter()
    in_flight = live = 0
    for replica, body in posts.items():
        for key in COUNTS:
            totals[key] += _count(body.get(key))
        for key in BY_REASON:
            for reason, n in dict(body.get(key) or {}).items():
                reasons[key][str(reason)] += _count(n)
        held = _count(body.get("in_flight"))
        if replica in dead:
            lost[INGRESS_DIED] += held
        elif body.get(STOPPED):
            lost[UNSETTLED_AT_STOP] += held
        else:
            in_flight += held
            live += 1
    return {
        **totals,
        "in_flight": in_flight,
        "lost": sum(lost.values()),
        "lost_by_reason": {reason: n for reason, n in lost.items() if n},
        "lost_at_least": bool(lost[INGRESS_DIED]),
        **{key: dict(counter) for key, counter in reasons.items()},
        "ingress_replicas": live,
        "ingress_replicas_gone": len(posts) - live,
    }


def _count(value: Any) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError, OverflowError):
        return 0


class TotalsCollector(Collector):
    """Exports service totals as ``peaknet_service_*`` (counters over the deployment's life)."""

    def __init__(self, totals: Mapping[str, Any]) -> None:
        self._totals = totals

    def collect(self) -> Iterator[Metric]:
        t = self._totals
        frames = CounterMetricFamily(
            "peaknet_service_frames",
            "Frames by outcome over every ingress replica, dead ones included.",
            labels=["outcome"],
        )
        for outcome, key in (
            ("received", "received"),
            ("hit_written", "hits_written"),
            ("non_hit", "non_hits"),
            ("failed", "failed"),
            ("lost", "lost"),
        ):
            frames.add_metric([outcome], _count(t.get(key)))
        yield frames
        for name, key, text in (
            ("peaknet_service_frames_failed", "failed_by_reason", "Failed frames by reason."),
            ("peaknet_service_frames_lost", "lost_by_reason", "Lost frames by reason."),
            (
                "peaknet_service_messages_rejected",
                "messages_rejected_by_reason",
                "Undecodable messages by reason.",
            ),
        ):
            family = CounterMetricFamily(name, text, labels=["reason"])
            for reason, n in dict(t.get(key) or {}).items():
                family.add_metric([reason], _count(n))
            yield family
        yield GaugeMetricFamily(
            "peaknet_service_frames_in_flight",
            "Frames sent on by live ingress replicas, not yet settled.",
            value=_count(t.get("in_flight")),
        )
        yield GaugeMetricFamily(
            "peaknet_service_ingress_replicas",
            "Ingress replicas posting now.",
            value=_count(t.get("ingress_replicas")),
        )


def render_totals(totals: Mapping[str, Any]) -> bytes:
    """The Prometheus text exposition of ``totals``."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(TotalsCollector(totals))
    return generate_latest(registry)
