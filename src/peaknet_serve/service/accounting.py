"""The ledger that accounts for every frame the service receives.

The invariant operators rely on: ``received == hits_written + non_hits + failed + in_flight``.
Messages that cannot be decoded have no frame count; they are counted separately, by reason.
Frames are counted here only: the ingress's Ray metrics are told of each count as the ledger
makes it (``LedgerListener``).
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

RATE_WINDOW_S = 60.0


class LedgerListener(Protocol):
    """Told of every count the ledger makes, as it makes it (``deployments.metrics``)."""

    def message_received(self, n_bytes: int) -> None: ...

    def message_rejected(self, reason: str) -> None: ...

    def frames_received(self, n: int) -> None: ...

    def settled(self, *, hits: int, non_hits: int, failed: Mapping[str, int]) -> None: ...


@dataclass
class FrameLedger:
    """Frame and message counts of one ingress replica, and a one-minute frame rate."""

    clock: Callable[[], float] = time.monotonic
    received: int = 0
    hits_written: int = 0
    non_hits: int = 0
    in_flight: int = 0
    failed_by_reason: Counter[str] = field(default_factory=Counter)
    rejected_messages_by_reason: Counter[str] = field(default_factory=Counter)
    messages_received: int = 0
    bytes_received: int = 0
    last_error: str | None = None
    listener: LedgerListener | None = None
    _done_times: deque[tuple[float, int]] = field(default_factory=deque)
    _started: float = field(init=False)

    def __post_init__(self) -> None:
        self._started = self.clock()

    @property
    def failed(self) -> int:
        return sum(self.failed_by_reason.values())

    def message_received(self, n_bytes: int) -> None:
        self.messages_received += 1
        self.bytes_received += n_bytes
        if self.listener is not None:
            self.listener.message_received(n_bytes)

    def message_rejected(self, reason: str, error: str) -> None:
        """A message that held no decodable frames."""
        self.rejected_messages_by_reason[reason] += 1
        self.last_error = error
        if self.listener is not None:
            self.listener.message_rejected(reason)

    def frames_received(self, n: int) -> None:
        """Frames decoded and sent on: they are in flight until ``settle`` or ``fail``."""
        self.received += n
        self.in_flight += n
        if self.listener is not None:
            self.listener.frames_received(n)

    def settle(
        self,
        *,
        hits: int,
        non_hits: int,
        failed: Mapping[str, int] | None = None,
        error: str | None = None,
    ) -> None:
        """Frames back from the writer: written as hits, counted as non-hits, or failed (why,
        in ``error``, becomes ``last_error``)."""
        if error is not None:
            self.last_error = error
        failed = dict(failed or {})
        done = hits + non_hits + sum(failed.values())
        self.hits_written += hits
        self.non_hits += non_hits
        self.failed_by_reason.update(failed)
        self.in_flight -= done
        self._record_done(done)
        if self.listener is not None:
            self.listener.settled(hits=hits, non_hits=non_hits, failed=failed)

    def fail(self, n: int, reason: str, error: str) -> None:
        """Frames of a batch that could not be processed at all."""
        self.failed_by_reason[reason] += n
        self.in_flight -= n
        self.last_error = error
        self._record_done(n)
        if self.listener is not None:
            self.listener.settled(hits=0, non_hits=0, failed={reason: n})

    def _record_done(self, n: int) -> None:
        now = self.clock()
        self._done_times.append((now, n))
        while self._done_times and self._done_times[0][0] < now - RATE_WINDOW_S:
            self._done_times.popleft()

    def frames_per_second(self) -> float:
        """Frames finished (any outcome) per second over the last minute (or since start)."""
        now = self.clock()
        recent = sum(n for t, n in self._done_times if t >= now - RATE_WINDOW_S)
        return recent / max(min(RATE_WINDOW_S, now - self._started), 1.0)

    def hit_rate(self) -> float | None:
        judged = self.hits_written + self.non_hits
        return self.hits_written / judged if judged else None

    def snapshot(self) -> dict[str, Any]:
        """The counts as plain JSON-ready values, for ``GET /status``."""
        return {
            "received": self.received,
            "hits_written": self.hits_written,
            "non_hits": self.non_hits,
            "failed": self.failed,
            "in_flight": self.in_flight,
            "failed_by_reason": dict(self.failed_by_reason),
            "messages_received": self.messages_received,
            "messages_rejected": sum(self.rejected_messages_by_reason.values()),
            "messages_rejected_by_reason": dict(self.rejected_messages_by_reason),
            "bytes_received": self.bytes_received,
            "frames_per_second": round(self.frames_per_second(), 3),
            "hit_rate": self.hit_rate(),
            "last_error": self.last_error,
        }
