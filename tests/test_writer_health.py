"""Batches set aside with their reason, and each writer's health from its latest result."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from peaknet_serve.service.health import WriterHealth
from peaknet_serve.service.outcome import BatchOutcome
from peaknet_serve.wire import Quarantine
from tests.stage_helpers import batch


def test_batch_quarantine_keeps_frames_and_reason_up_to_its_cap(tmp_path: Path) -> None:
    quarantine = Quarantine(tmp_path, max_files=2)
    for i in range(3):
        quarantine.save_batch(batch(i), reason="replica_died", message="gone")
    assert (quarantine.saved, quarantine.skipped) == (2, 1)
    [first, _] = sorted(tmp_path.glob("*.npz"))
    with np.load(first) as data:
        assert data["images"].shape == (3, 16, 16)
        assert data["metadata/timestamp"].tolist() == [0, 1, 2]
    assert json.loads(first.with_suffix(".json").read_text())["reason"] == "replica_died"


@pytest.mark.parametrize("error", [None, "disk full"])
def test_writer_health_reports_the_latest_result_per_writer(error: str | None) -> None:
    now = [0.0]
    health = WriterHealth(stale_s=10, clock=lambda: now[0])
    health.report(BatchOutcome(writer_id="w", write_error=error))
    assert health.failing() == ({"w": error} if error else {})
    now[0] = 11
    assert health.snapshot() == {}
