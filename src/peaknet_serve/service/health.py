"""What the ingress knows about its writers' health, from the outcomes they send back.

A writer that cannot write keeps answering (with ``BatchOutcome.write_error``); the ingress
keeps the latest report per writer so ``/status`` and ``/readyz`` can show it. A report older
than ``stale_s`` is forgotten (its writer may be gone).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from peaknet_serve.service.outcome import BatchOutcome


@dataclass
class WriterHealth:
    """Latest write result per writer id: ``{id: (ok, error, since, seen)}``."""

    stale_s: float = 60.0
    clock: Callable[[], float] = time.time
    _reports: dict[str, dict[str, Any]] = field(default_factory=dict)

    def report(self, outcome: BatchOutcome) -> None:
        now = self.clock()
        previous = self._reports.get(outcome.writer_id)
        failing = outcome.write_error is not None
        since = previous["since"] if previous is not None and previous["ok"] is not failing else now
        self._reports[outcome.writer_id] = {
            "ok": not failing,
            "error": outcome.write_error,
            "since": since,
            "seen": now,
        }

    def snapshot(self) -> dict[str, dict[str, Any]]:
        now = self.clock()
        for writer_id in [w for w, r in self._reports.items() if now - r["seen"] > self.stale_s]:
            del self._reports[writer_id]
        return {writer_id: dict(report) for writer_id, report in self._reports.items()}

    def failing(self) -> dict[str, str]:
        """Writers whose latest write failed: id -> error."""
        return {w: r["error"] for w, r in self.snapshot().items() if not r["ok"]}
