"""What became of the frames of one batch after the writer stage."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class BatchOutcome:
    """Per-batch frame counts: written as hits, judged non-hits, or failed (by reason)."""

    hits: int = 0
    non_hits: int = 0
    failed: dict[str, int] = field(default_factory=dict)

    @property
    def frames(self) -> int:
        return self.hits + self.non_hits + sum(self.failed.values())
