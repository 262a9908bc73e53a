"""torch.profiler traces: written after the configured batches, holding just those batches."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from peaknet_serve.profiling import RANGE_NAME, BatchProfiler, ProfilingConfig


def conv(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.conv2d(x, torch.ones(1, 1, 3, 3))


def batch_ranges(path: Path) -> list[str]:
    events = json.loads(path.read_text())["traceEvents"]
    return [e["name"] for e in events if e.get("name", "").startswith(RANGE_NAME)]


def test_off_by_default_and_records_nothing(tmp_path: Path) -> None:
    profiler = BatchProfiler(ProfilingConfig())
    for _ in range(3):
        with profiler.batch():
            conv(torch.zeros(1, 1, 8, 8))
    assert not profiler.enabled and profiler.trace_path is None
    assert list(tmp_path.iterdir()) == []


def test_the_trace_holds_the_batches_after_the_skipped_ones(tmp_path: Path) -> None:
    config = ProfilingConfig(torch_trace_dir=tmp_path / "traces", skip_batches=2, trace_batches=3)
    profiler = BatchProfiler(config, name="PeakNet#abc/1")
    for index in range(8):
        with profiler.batch(frames=index):
            conv(torch.zeros(1, 1, 16, 16))
        assert profiler.recording == (2 <= index < 4)
    path = profiler.trace_path
    assert path is not None and path.parent == tmp_path / "traces"
    assert path.name.startswith("PeakNet_abc_1-") and path.name.endswith(".pt.trace.json")
    assert sorted(batch_ranges(path)) == [f"{RANGE_NAME}[{i}]" for i in (2, 3, 4)]
    events = json.loads(path.read_text())["traceEvents"]
    assert any("conv" in e.get("name", "") for e in events), "the ops are missing"
    assert list((tmp_path / "traces").iterdir()) == [path]


async def test_overlapping_async_batches_are_all_recorded(tmp_path: Path) -> None:
    profiler = BatchProfiler(ProfilingConfig(torch_trace_dir=tmp_path, skip_batches=0,
                                             trace_batches=4))  # fmt: skip

    async def one(index: int) -> None:
        with profiler.batch(frames=index):
            await asyncio.sleep(0.01 * (4 - index))
            conv(torch.zeros(1, 1, 8, 8))

    await asyncio.gather(*(one(i) for i in range(4)))
    assert profiler.trace_path is not None
    assert sorted(batch_ranges(profiler.trace_path)) == [f"{RANGE_NAME}[{i}]" for i in range(4)]


def test_a_failing_batch_still_counts(tmp_path: Path) -> None:
    profiler = BatchProfiler(ProfilingConfig(torch_trace_dir=tmp_path, skip_batches=0,
                                             trace_batches=1))  # fmt: skip
    with pytest.raises(RuntimeError), profiler.batch():
        raise RuntimeError("CUDA error")
    assert profiler.trace_path is not None and profiler.trace_path.is_file()


def test_the_section_rejects_unknown_keys_and_nonsense() -> None:
    with pytest.raises(ValidationError):
        ProfilingConfig.model_validate({"torch_trace_batches": 3})
    with pytest.raises(ValidationError):
        ProfilingConfig(trace_batches=0)
