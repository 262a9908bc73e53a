"""What an ingress replica shows beyond its own ledger, and its posts to the status board.

``/status``, ``/readyz`` and ``/metrics`` ask four channels: a writer replica (can it write), a
PeakNet replica (its GPU), the status board's PeakNet posts (every GPU) and the board's ingress
account (the service's totals, ``deployments.board``). Each answers within 10 s or is reported
as not answering; none of them can fail an endpoint. ``post_counts`` keeps this replica's counts
on the board, so the service's account outlives the replica, and settles dead replicas' open
batches from the writers' CXI batch tables.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray.actor import ActorHandle
from ray.exceptions import ObjectLostError, RayActorError
from ray.serve.exceptions import DeploymentUnavailableError, ReplicaUnavailableError
from ray.serve.handle import DeploymentHandle

from deployments.board import GPU_POST_INTERVAL_S, application_run
from peaknet_serve.service.routing import describe
from peaknet_serve.service.run_account import TO_RESOLVE
from peaknet_serve.service.totals import (
    BUFFERED,
    OPEN_BATCHES,
    resolve_open_batches,
    service_totals,
)

logger = logging.getLogger(__name__)

POST_INTERVAL_S = 1.0
"""How often each ingress posts its counts to the status board when they do not change."""
POST_CHANGE_S = 0.1
"""How soon a change of the counts is posted: what a replica that dies can leave unposted."""
INGRESS_POST_MAX_AGE_S = 5 * POST_INTERVAL_S
PEAKNET_POST_MAX_AGE_S = 3 * GPU_POST_INTERVAL_S + 1

RETRYABLE = (
    RayActorError,  # ActorDiedError, ActorUnavailableError: the replica (or its node) went
    ReplicaUnavailableError,
    DeploymentUnavailableError,
    ObjectLostError,  # a chained response whose replica died before handing its result on
)
"""Errors that mean a replica died under the batch: it is sent again, to another replica."""


def replica_died(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says a replica died under the request.

    A chained call whose upstream replica died raises ``RayServeException`` with the
    ``ActorDiedError`` as its cause, so the whole chain is looked at.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, RETRYABLE):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


class IngressStatus:
    """The writer, GPU and service-wide views of one ingress replica (named ``replica``).

    Args:
        board: the application's status board (``deployments.board.status_board``).
        peaknet, writer: the deployments' handles.
        replica: this ingress replica's id.
        output_dir: where the writers' CXI files are (dead replicas' batches are looked up).
    """

    def __init__(
        self,
        *,
        board: ActorHandle,
        peaknet: DeploymentHandle,
        writer: DeploymentHandle,
        replica: str,
        output_dir: Path,
    ) -> None:
        self._board = board
        self._peaknet = peaknet
        self._writer = writer
        self._replica = replica
        self._output_dir = output_dir
        self.run: float | None = None
        """The application's lifetime (``application_run``), once ``post_counts`` started."""

    async def post_counts(self, body: Callable[[], dict[str, Any]], context: Any) -> None:
        """Post ``body()`` to the status board within ``POST_CHANGE_S`` of a change (at least
        every ``POST_INTERVAL_S``); ``context`` is the replica's Serve context."""
        self.run = await asyncio.to_thread(application_run, context.app_name, context.deployment)
        posted, last = None, 0.0
        while True:
            mine = body()
            counts = (
                mine["received"],
                mine["in_flight"],
                mine["messages_received"],
                mine[BUFFERED],
                *mine[OPEN_BATCHES],
            )
            if counts != posted or time.monotonic() - last >= POST_INTERVAL_S:
                try:
                    totals = await asyncio.wait_for(
                        self._board.totals.remote(
                            "ingress", INGRESS_POST_MAX_AGE_S, self._replica, mine, self.run
                        ),
                        10,
                    )
                    posted, last = counts, time.monotonic()
                    await self._resolve(totals[TO_RESOLVE])
                except Exception as exc:  # the board is a convenience: never stop the ingress
                    logger.warning("status board unreachable: %s", describe(exc))
                    await asyncio.sleep(POST_INTERVAL_S)
            await asyncio.sleep(POST_CHANGE_S)

    async def _resolve(self, to_resolve: dict[str, dict[str, int]]) -> None:
        """Settle dead ingress replicas' open batches from the writers' CXI batch tables."""
        for replica, open_batches in to_resolve.items():
            try:
                answer = await asyncio.to_thread(
                    resolve_open_batches, self._output_dir, open_batches
                )
            except OSError as exc:
                logger.warning("cannot read the writers' batch tables: %s", exc)
                continue
            if answer is None:
                continue  # a writer is still writing one of them: next time
            await asyncio.wait_for(self._board.resolve.remote("ingress", replica, answer), 10)
            committed = [b for b, record in answer.items() if record is not None]
            logger.error(
                "ingress replica %s died holding %d batches (%d frames); writers had committed "
                "%d of them, the rest is counted lost (ingress_died)",
                replica,
                len(open_batches),
                sum(open_batches.values()),
                len(committed),
            )

    async def writer_status(self) -> dict[str, Any]:
        """Whether the writer replica that answers can write."""
        try:
            return await asyncio.wait_for(self._writer.status.remote(), 10)
        except (TimeoutError, *RETRYABLE) as exc:
            logger.warning("status: no writer answered: %s", describe(exc))
            return {"writable": False, "write_error": f"no answer: {describe(exc)}"}

    async def model_ready(self) -> bool:
        """Whether the PeakNet replica that answers is warm."""
        try:
            return bool(await asyncio.wait_for(self._peaknet.ready.remote(), 10))
        except (TimeoutError, *RETRYABLE) as exc:
            logger.warning("readiness: PeakNet did not answer: %s", exc)
            return False

    async def _board_posts(self, topic: str, max_age_s: float) -> dict[str, dict[str, Any]]:
        """The status board's recent posts on ``topic``; none when the board does not answer."""
        try:
            return await asyncio.wait_for(self._board.read.remote(topic, max_age_s), 10)
        except Exception as exc:
            logger.warning("status: status board unreachable: %s", describe(exc))
            return {}

    async def service_totals(self, mine: dict[str, Any]) -> dict[str, Any]:
        """The counts of every ingress replica of this deployment added up, those that died or
        stopped included (this one's given as ``mine``); this one's alone, with
        ``board_error``, when the status board does not answer."""
        try:
            totals = await asyncio.wait_for(
                self._board.totals.remote(
                    "ingress", INGRESS_POST_MAX_AGE_S, self._replica, mine, self.run
                ),
                10,
            )
            totals.pop(TO_RESOLVE, None)
            return totals
        except Exception as exc:
            logger.warning("status: status board unreachable: %s", describe(exc))
            return service_totals({self._replica: mine}, ()) | {"board_error": describe(exc)}

    async def all_gpus(self) -> list[dict[str, Any]]:
        """Every PeakNet replica's GPU, as it posts every ``GPU_POST_INTERVAL_S``."""
        posts = await self._board_posts("peaknet", PEAKNET_POST_MAX_AGE_S)
        return [{"replica": replica, **body} for replica, body in posts.items()]

    async def gpu_status(self) -> dict[str, Any]:
        """The GPU of the PeakNet replica that answers (name, index, memory, health)."""
        try:
            return await asyncio.wait_for(self._peaknet.gpu_status.remote(), 10)
        except (TimeoutError, *RETRYABLE) as exc:
            logger.warning("status: no PeakNet replica answered: %s", describe(exc))
            return {"error": f"no answer: {describe(exc)}"}
