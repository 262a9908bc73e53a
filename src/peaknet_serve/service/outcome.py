"""What became of the frames of one batch after the writer stage."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from peaknet_serve.live import BatchSummary


@dataclass(frozen=True)
class BatchOutcome:
    """Per-batch frame counts: written as hits, judged non-hits, or failed (by reason).

    ``write_error`` is set when the batch could not be written at all (disk full, permissions):
    nothing of it was committed and the caller may send it again. ``writer_id`` names the writer
    replica that answered, so its health can be reported. ``error`` is why frames of the batch
    failed (the last reason and message), for ``/status`` ``last_error``.
    """

    hits: int = 0
    non_hits: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    write_error: str | None = None
    writer_id: str = ""
    live: BatchSummary | None = None
    error: str | None = None

    @property
    def frames(self) -> int:
        return self.hits + self.non_hits + sum(self.failed.values())

    def to_record(self) -> dict[str, Any]:
        return {"hits": self.hits, "non_hits": self.non_hits, "failed": dict(self.failed)}

    @classmethod
    def from_record(cls, record: dict[str, Any], *, writer_id: str = "") -> BatchOutcome:
        return cls(
            hits=int(record["hits"]),
            non_hits=int(record["non_hits"]),
            failed={str(k): int(v) for k, v in record.get("failed", {}).items()},
            writer_id=writer_id,
        )


def merge(first: BatchOutcome, second: BatchOutcome) -> BatchOutcome:
    """The counts of two disjoint parts of one batch, as one outcome (``second``'s writer)."""
    failed = dict(first.failed)
    for reason, n in second.failed.items():
        failed[reason] = failed.get(reason, 0) + n
    return BatchOutcome(
        hits=first.hits + second.hits,
        non_hits=first.non_hits + second.non_hits,
        failed=failed,
        write_error=second.write_error,
        writer_id=second.writer_id,
        live=second.live,
        error=second.error or first.error,
    )
