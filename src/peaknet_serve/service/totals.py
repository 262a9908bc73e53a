"""Service totals over every ingress replica of a deployment, those that died or stopped included.

Each ingress replica posts its ``FrameLedger.snapshot()`` and ``open_batches`` (batch id ->
frames of the batches it has sent to the model and writers); the totals add up the last post of
every replica that ever posted, so a replica that dies or is replaced keeps its counts in the
account and the service's Prometheus counters never go backwards.

What a replica held when it died (its ``in_flight``) is settled by looking its open batches up in
the writers' CXI files, where each writer records the batches it commits
(``resolve_open_batches``): a batch a writer committed counts as its
recorded hits, non-hits and failures, the rest is lost as ``ingress_died``. Until that is done its
frames stay ``in_flight``, so no counter has to go back. ``ingress_died`` is exact for every frame
the replica had counted by its last post (posted within ``POST_CHANGE_S`` of a change); messages
it took from the socket after that are not in it (``lost_at_least``), only the pusher's count can
tell them. Messages it had taken from the socket into its receive buffer and not yet decoded
(``buffered_messages`` in its post) have no frame count: each is counted as one frame received
and lost (a valid message holds at least one), and exactly in ``messages_lost``. A replica that
stopped cleanly with batches still out after its drain leaves them as ``unsettled_at_stop``. For
the service: ``received == hits_written + non_hits + failed + in_flight + lost``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from peaknet_serve.cxi.batches import BatchIndex
from peaknet_serve.wire.metadata import FIXED, MISSING

ENERGY_COUNTS = ("batches_without_wavelength", "frames_with_fixed_energy", "frames_without_energy")
"""Keys of a post (``MetadataWatch.snapshot``): batches whose message had no wavelength field,
frames whose photon energy is the fixed ``decode.photon_energy_ev``, frames without one (NaN)."""
COUNTS = (
    "received",
    "hits_written",
    "non_hits",
    "failed",
    "messages_received",
    "messages_rejected",
    "bytes_received",
    "peers_rejected",
    *ENERGY_COUNTS,
)
BY_REASON = ("failed_by_reason", "messages_rejected_by_reason")
INGRESS_DIED = "ingress_died"
UNSETTLED_AT_STOP = "unsettled_at_stop"
STOPPED = "stopped"
"""Key of a replica's last post after a clean drain: its counts are final."""
PEERS_REJECTED = "peers_rejected"
"""Key of a post: connections the replica closed because their peer was not allowed."""
OPEN_BATCHES = "open_batches"
"""Key of a post: batch id -> frames of the batches out at the model and writers."""
BUFFERED = "buffered_messages"
"""Key of a post: messages in the receive buffer, taken from the socket and not yet decoded."""

Resolution = Mapping[str, Mapping[str, Any] | None]
"""A dead replica's open batches: batch id -> the committed outcome record, or None (lost)."""


def gone(
    posts: Mapping[str, tuple[float, Mapping[str, Any]]], *, now: float, max_age_s: float
) -> set[str]:
    """Replicas whose last post is older than ``max_age_s`` and was not a clean stop."""
    return {
        replica
        for replica, (posted, body) in posts.items()
        if not body.get(STOPPED) and now - posted > max_age_s
    }


def service_totals(
    posts: Mapping[str, Mapping[str, Any]],
    dead: Collection[str],
    resolved: Mapping[str, Resolution] | None = None,
) -> dict[str, Any]:
    """The counts of ``posts`` (replica -> its last ledger snapshot) added up.

    ``dead`` names the replicas that stopped posting without a clean stop, ``resolved`` what
    became of the open batches of each (a dead replica not in it is still ``in_flight``). Odd
    values (missing, negative, non-integer) are read as 0 so that one bad post cannot break
    ``/status``.
    """
    resolved = resolved or {}
    totals = dict.fromkeys(COUNTS, 0)
    reasons: dict[str, Counter[str]] = {key: Counter() for key in BY_REASON}
    lost: Counter[str] = Counter()
    in_flight = live = resolving = messages_lost = 0
    for replica, body in posts.items():
        for key in COUNTS:
            totals[key] += _count(body.get(key))
        for key in BY_REASON:
            for reason, n in dict(body.get(key) or {}).items():
                reasons[key][str(reason)] += _count(n)
        held = _count(body.get("in_flight"))
        buffered = 0
        if replica in dead or body.get(STOPPED):  # its receive buffer will never be decoded
            buffered = _count(body.get(BUFFERED))
            totals["received"] += buffered
            totals["messages_received"] += buffered
            messages_lost += buffered
        if replica in dead and replica in resolved:
            for record in resolved[replica].values():
                if record is None:
                    continue
                hits, non_hits = _count(record.get("hits")), _count(record.get("non_hits"))
                failed = {str(r): _count(n) for r, n in dict(record.get("failed") or {}).items()}
                done = hits + non_hits + sum(failed.values())
                if done > held:  # more than it held: not a record of this replica's batch
                    continue
                held -= done
                totals["hits_written"] += hits
                totals["non_hits"] += non_hits
                totals["failed"] += sum(failed.values())
                reasons["failed_by_reason"].update(failed)
            lost[INGRESS_DIED] += held + buffered
        elif replica in dead:
            in_flight += held + buffered
            resolving += 1
        elif body.get(STOPPED):
            lost[UNSETTLED_AT_STOP] += held + buffered
        else:
            in_flight += held
            live += 1
    return {
        **totals,
        "in_flight": in_flight,
        "lost": sum(lost.values()),
        "lost_by_reason": {reason: n for reason, n in lost.items() if n},
        "lost_at_least": bool(lost[INGRESS_DIED]),
        "messages_lost": messages_lost,
        **{key: dict(counter) for key, counter in reasons.items()},
        "ingress_replicas": live,
        "ingress_replicas_gone": len(posts) - live,
        "ingress_replicas_resolving": resolving,
    }


def resolve_open_batches(output_dir: Path, open_batches: Mapping[str, int]) -> Resolution | None:
    """What became of a dead replica's open batches, from the batch tables of the CXI files.

    None while a writer names one of them as being written, or a file that may hold one cannot
    be read right now (ask again later); otherwise batch id -> its committed outcome record, or
    None for a batch no writer committed (lost). Reads files only: any ingress that sees
    ``output.output_dir`` can do it.
    """
    index = BatchIndex(output_dir)
    answer: dict[str, Mapping[str, Any] | None] = {}
    for batch_id in open_batches:
        record = index.find(batch_id)
        if record.committed is None and (record.writing or record.unreadable):
            return None
        committed = record.committed
        answer[batch_id] = (
            {key: committed[key] for key in ("hits", "non_hits", "failed")} if committed else None
        )
    return answer


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
        yield CounterMetricFamily(
            "peaknet_service_messages_lost",
            "Messages a dead ingress replica had taken from the socket and not handed on; each "
            "counts as one frame in frames_lost, so the frames lost are at least this.",
            value=_count(t.get("messages_lost")),
        )
        yield GaugeMetricFamily(
            "peaknet_service_frames_lost_is_lower_bound",
            "1 when frames_lost{reason=ingress_died} is a floor (a dead replica held messages "
            "whose frames were not counted), else 0.",
            value=1.0 if t.get("lost_at_least") else 0.0,
        )
        yield CounterMetricFamily(
            "peaknet_service_peers_rejected",
            "Connections to the data port closed because their peer is not in "
            "source.allowed_peers (one per connection attempt; the pusher redials).",
            value=_count(t.get(PEERS_REJECTED)),
        )
        yield CounterMetricFamily(
            "peaknet_service_batches_without_wavelength",
            "Batches whose message had no wavelength field, over every ingress replica.",
            value=_count(t.get("batches_without_wavelength")),
        )
        energy = CounterMetricFamily(
            "peaknet_service_frames_energy_not_measured",
            "Frames whose photon energy is not from their wavelength, by what they got, over "
            "every ingress replica.",
            labels=["energy"],
        )
        energy.add_metric([FIXED], _count(t.get("frames_with_fixed_energy")))
        energy.add_metric([MISSING], _count(t.get("frames_without_energy")))
        yield energy
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
