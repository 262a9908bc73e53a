"""``service.routing``: one batch through the model and a writer, and each retry regime (a
replica dying, a write failing, no answer in time), with plain callables in place of Ray."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from peaknet_serve.errors import ConfigError
from peaknet_serve.live import summarize_batch
from peaknet_serve.peaks import Judged, PeaksConfig, PixelScreen
from peaknet_serve.service.accounting import FrameLedger
from peaknet_serve.service.config import IngressConfig
from peaknet_serve.service.outcome import BatchOutcome
from peaknet_serve.service.routing import BatchRouter
from peaknet_serve.service.screen import MaskedPixelMetrics
from peaknet_serve.wire import FrameBatch, Quarantine
from tests.stage_helpers import batch, one_peak


class DiedError(Exception):
    """Stands for Ray's ActorDiedError: what ``replica_died`` says yes to."""


class Replicas:
    """A model and a writer whose next answers the test sets: an exception, an outcome, or a
    wait longer than any timeout."""

    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers
        self.calls: list[tuple[Any, Any, str]] = []

    def infer(self, frames: Any) -> Any:
        return ("masks", frames)

    async def write(self, masks: Any, frames: Any, batch_id: str) -> BatchOutcome:
        self.calls.append((masks, frames, batch_id))
        answer = self.answers.pop(0) if self.answers else "written"
        if isinstance(answer, BaseException):
            raise answer
        if answer == "hang":
            await asyncio.sleep(3600)
        if answer == "written":
            n = len(frames)
            judged = [Judged(index=i, peaks=one_peak(), hit=i == 0) for i in range(n)]
            live = summarize_batch(frames.images, judged, thumbnail=False)
            return BatchOutcome(hits=1, non_hits=n - 1, writer_id="w1", live=live)
        return BatchOutcome(write_error=answer, writer_id="w1")


def router(
    tmp_path: Path,
    replicas: Replicas,
    *,
    stopping: bool = False,
    bad_pixels: Any = None,
    **settings: Any,
) -> tuple[BatchRouter, FrameLedger]:
    ledger = FrameLedger()
    defaults = {"write_retry_interval_s": 0.01, "write_retry_timeout_s": 0.2, "max_retries": 2}
    return BatchRouter(
        settings=IngressConfig(**(defaults | settings)),
        infer=replicas.infer,
        write=replicas.write,
        replica_died=lambda exc: isinstance(exc, DiedError),
        ledger=ledger,
        screen=PixelScreen(PeaksConfig(), bad_pixels=bad_pixels),
        masked=MaskedPixelMetrics(CollectorRegistry()),
        quarantine=Quarantine(tmp_path / "batches"),
        stopping=lambda: stopping,
    ), ledger


def quarantined(tmp_path: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((tmp_path / "batches").glob("*.json"))]


async def test_a_batch_goes_through_the_model_to_a_writer(tmp_path: Path) -> None:
    replicas = Replicas([])
    route, ledger = router(tmp_path, replicas)
    frames = batch(0, 4)
    outcome = await route.submit(frames)
    assert (outcome.hits, outcome.non_hits, outcome.failed) == (1, 3, {})
    ((masks, shared, batch_id),) = replicas.calls
    assert masks == ("masks", shared) and shared is frames and len(batch_id) == 32
    assert route.open == {} and route.writers.failing() == {}
    live = route.live.snapshot(replicas={})["totals"]
    assert (live["frames"], live["hits"]) == (4, 1)
    assert ledger.last_error is None and quarantined(tmp_path) == []


async def test_the_batch_is_open_while_it_is_out(tmp_path: Path) -> None:
    replicas = Replicas(["hang"])
    route, _ = router(tmp_path, replicas, request_timeout_s=5)
    task = asyncio.create_task(route.submit(batch(0, 3)))
    while not replicas.calls:
        await asyncio.sleep(0.01)
    assert list(route.open.values()) == [3] and list(route.open) == [replicas.calls[0][2]]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert route.open == {}


async def test_a_batch_is_sent_again_while_replicas_die(tmp_path: Path) -> None:
    replicas = Replicas([DiedError("replica gone"), DiedError("replica gone")])
    route, _ = router(tmp_path, replicas, max_retries=2)
    outcome = await route.submit(batch(0, 3))
    assert (outcome.hits, outcome.non_hits, outcome.failed) == (1, 2, {})
    assert len(replicas.calls) == 3
    assert len({batch_id for _, _, batch_id in replicas.calls}) == 1  # one batch id throughout


async def test_past_max_retries_a_dying_batch_fails_as_replica_died(tmp_path: Path) -> None:
    replicas = Replicas([DiedError("gone")] * 3)
    route, ledger = router(tmp_path, replicas, max_retries=2)
    outcome = await route.submit(batch(0, 3))
    assert outcome.failed == {"replica_died": 3} and outcome.frames == 3
    assert len(replicas.calls) == 3
    assert ledger.last_error == "replica_died: DiedError: gone"
    assert [(q["reason"], q["frames"]) for q in quarantined(tmp_path)] == [("replica_died", 3)]


async def test_a_failing_write_is_retried_until_it_succeeds(tmp_path: Path) -> None:
    replicas = Replicas(["disk full", "disk full"])
    route, _ = router(tmp_path, replicas, write_retry_timeout_s=30)
    outcome = await route.submit(batch(0, 2))
    assert (outcome.hits, outcome.non_hits, outcome.failed) == (1, 1, {})
    assert len(replicas.calls) == 3
    assert route.writers.failing() == {}  # the writer's latest write succeeded


async def test_a_write_failing_past_its_timeout_fails_as_write(tmp_path: Path) -> None:
    replicas = Replicas(["disk full"] * 1000)
    route, ledger = router(
        tmp_path, replicas, write_retry_timeout_s=0.1, write_retry_interval_s=0.02
    )
    outcome = await route.submit(batch(0, 2))
    assert outcome.failed == {"write": 2}
    assert 2 <= len(replicas.calls) < 1000
    assert route.writers.failing() == {"w1": "disk full"}
    assert ledger.last_error == "write: disk full"
    assert [q["reason"] for q in quarantined(tmp_path)] == ["write"]


async def test_a_failing_write_is_not_retried_once_the_ingress_stops(tmp_path: Path) -> None:
    replicas = Replicas(["disk full"] * 1000)
    route, _ = router(tmp_path, replicas, stopping=True, write_retry_timeout_s=30)
    outcome = await route.submit(batch(0, 2))
    assert outcome.failed == {"write": 2} and len(replicas.calls) == 1


async def test_no_answer_in_time_fails_as_timeout_and_is_not_sent_again(tmp_path: Path) -> None:
    replicas = Replicas(["hang", "hang"])
    route, ledger = router(tmp_path, replicas, request_timeout_s=0.1)
    outcome = await route.submit(batch(0, 3))
    assert outcome.failed == {"timeout": 3} and len(replicas.calls) == 1
    assert ledger.last_error == "timeout: no answer within request_timeout_s=0.1"


async def test_any_other_error_fails_under_its_class_name(tmp_path: Path) -> None:
    class WrappedError(Exception):  # like RayTaskError: the replica's own error as ``cause``
        cause = ValueError("bad mask\nsecond line")

    replicas = Replicas([WrappedError("task failed")])
    route, ledger = router(tmp_path, replicas)
    outcome = await route.submit(batch(0, 2))
    assert outcome.failed == {"ValueError": 2} and len(replicas.calls) == 1
    assert ledger.last_error == "ValueError: ValueError: bad mask"


async def test_frames_with_no_valid_pixel_fail_and_the_rest_go_on(tmp_path: Path) -> None:
    frames = batch(0, 3)
    frames.images[1] = np.nan
    replicas = Replicas([])
    route, _ = router(tmp_path, replicas)
    outcome = await route.submit(frames)
    assert outcome.failed == {"invalid_pixels": 1} and outcome.hits + outcome.non_hits == 2
    ((_, sent, _),) = replicas.calls
    assert isinstance(sent, FrameBatch)
    assert sent.metadata["timestamp"].tolist() == [0, 2]
    assert [(q["reason"], q["frames"]) for q in quarantined(tmp_path)] == [("invalid_pixels", 1)]


async def test_a_batch_of_only_invalid_frames_never_reaches_the_model(tmp_path: Path) -> None:
    frames = batch(0, 2)
    frames.images[:] = np.inf
    replicas = Replicas([])
    route, _ = router(tmp_path, replicas)
    outcome = await route.submit(frames)
    assert outcome.failed == {"invalid_pixels": 2} and replicas.calls == []


async def test_a_geometry_that_does_not_fit_fails_the_batch_as_geometry(tmp_path: Path) -> None:
    def misfit(shape: tuple[int, ...]) -> np.ndarray:
        raise ConfigError(f"output.geometry_file does not fit frames of {shape}")

    replicas = Replicas([])
    route, ledger = router(tmp_path, replicas, bad_pixels=misfit)
    outcome = await route.submit(batch(0, 2))
    assert outcome.failed == {"geometry": 2} and replicas.calls == []
    assert ledger.last_error.startswith("geometry: output.geometry_file does not fit")
