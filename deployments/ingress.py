"""The Ingress deployment: pulls LCLStreamer's socket and serves the service's HTTP endpoints."""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any

import ray
from fastapi import FastAPI, Header, HTTPException, Response
from fastapi.responses import JSONResponse
from ray import serve
from ray.exceptions import ObjectLostError, RayActorError
from ray.serve.exceptions import DeploymentUnavailableError, ReplicaUnavailableError
from ray.serve.handle import DeploymentHandle

from deployments.board import GPU_POST_INTERVAL_S, application_run, status_board
from deployments.live_page import add_live_page, replica_counts
from deployments.metrics import IngressMetrics
from peaknet_serve.config import ServiceConfig
from peaknet_serve.cxi import geometry_bad_pixels
from peaknet_serve.errors import ConfigError, DecodeError
from peaknet_serve.live import LiveBoard
from peaknet_serve.peaks import PixelScreen
from peaknet_serve.service.accounting import FrameLedger
from peaknet_serve.service.health import WriterHealth
from peaknet_serve.service.metadata_watch import MetadataCollector, MetadataWatch
from peaknet_serve.service.metrics import ledger_registry, render
from peaknet_serve.service.outcome import BatchOutcome, merge
from peaknet_serve.service.pump import Pump
from peaknet_serve.service.quarantine import BatchQuarantine
from peaknet_serve.service.report import write_shutdown_report
from peaknet_serve.service.run_account import TO_RESOLVE
from peaknet_serve.service.screen import (
    BAD_PIXEL_MASK,
    INVALID_PIXELS,
    MISFIT,
    MaskedPixelMetrics,
    screen_batch,
)
from peaknet_serve.service.totals import (
    BUFFERED,
    OPEN_BATCHES,
    PEERS_REJECTED,
    STOPPED,
    render_totals,
    resolve_open_batches,
    service_totals,
)
from peaknet_serve.wire import FrameBatch, Message, Quarantine, decode_message
from peaknet_serve.wire.buffer import buffered_source

logger = logging.getLogger(__name__)

app = FastAPI(title="peaknet-serve", description="Bragg peak finding on LCLStreamer frames.")
add_live_page(app)

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


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


@serve.deployment(name="Ingress", max_ongoing_requests=64, health_check_period_s=5)
@serve.ingress(app)
class Ingress:
    """Pulls frames, chains PeakNet into the writer for each batch and accounts for every frame.

    Config keys used: ``source``, ``decode``, ``quarantine_dir``, ``output.output_dir`` and
    every key of ``ingress``.
    """

    def __init__(
        self, peaknet: DeploymentHandle, writer: DeploymentHandle, settings: dict[str, Any]
    ) -> None:
        config = ServiceConfig.model_validate(settings)
        self._peaknet = peaknet
        self._writer = writer
        self._config = config
        self._started = time.time()
        context = serve.get_replica_context()
        self._replica = context.replica_id.unique_id
        self._board = status_board(context.app_name)
        self._token = os.environ.get(config.ingress.control_token_env) or None
        self.ledger = FrameLedger()
        self.live = LiveBoard()
        self._metrics = IngressMetrics()
        self._account: dict[str, Any] | None = None
        self._run: float | None = None
        self._open: dict[str, int] = {}
        """Batch id -> frames, of the batches out at the model and writers (posted)."""
        self.writers = WriterHealth(stale_s=max(60.0, 3 * config.ingress.write_retry_interval_s))
        quarantine_dir = config.quarantine_dir
        self._quarantine = (
            BatchQuarantine(
                quarantine_dir / "batches",
                max_files=config.ingress.quarantine_max_batches,
                max_bytes=config.ingress.quarantine_max_bytes,
            )
            if quarantine_dir
            else None
        )
        self._pump = Pump(
            source=buffered_source(config.source),
            decode=self._decode,
            submit=self._submit,
            ledger=self.ledger,
            max_in_flight=config.ingress.max_in_flight_batches,
            quarantine=Quarantine(quarantine_dir, max_bytes=config.ingress.quarantine_max_bytes)
            if quarantine_dir
            else None,
        )
        self._registry = ledger_registry(self.ledger, paused=lambda: self._pump.paused)
        self._screen = PixelScreen(
            config.peaks, bad_pixels=geometry_bad_pixels(config.output.geometry_file)
        )
        self._masked = MaskedPixelMetrics(self._registry)
        self._metadata = MetadataWatch(config.decode)
        self._registry.register(MetadataCollector(self._metadata))
        self._pump.start()
        self._poster = asyncio.get_running_loop().create_task(self._post_counts(), name="post")
        logger.info(
            "ingress up; control endpoints %s",
            "need a bearer token" if self._token else "are open (no token configured)",
        )

    def _decode(self, payload: Message) -> FrameBatch:
        """``decode_message``, counted in the replica metrics (runs in a worker thread)."""
        n_bytes = memoryview(payload).nbytes
        try:
            batch = decode_message(payload, self._config.decode)
        except DecodeError as exc:
            self._metrics.rejected(n_bytes=n_bytes, reason=exc.reason)
            raise
        self._metadata.observe(batch)
        self._metrics.received(n_bytes=n_bytes, frames=len(batch))
        return batch

    async def _submit(self, batch: FrameBatch) -> BatchOutcome:
        """``_send`` one batch, and export its outcome as replica metrics."""
        started = time.perf_counter()
        self._metrics.in_flight.set(self._pump.batches_in_flight)
        batch_id = uuid.uuid4().hex
        self._open[batch_id] = len(batch)
        try:
            outcome = await self._send(batch, batch_id)
        finally:  # the pump settles the ledger before any other task runs: posts see one or other
            del self._open[batch_id]
        self._metrics.settled(
            hits=outcome.hits,
            non_hits=outcome.non_hits,
            failed=outcome.failed,
            seconds=time.perf_counter() - started,
        )
        return outcome

    async def _send(self, batch: FrameBatch, batch_id: str) -> BatchOutcome:
        """Mask invalid pixels and take out frames with too many, then the model's response
        goes straight to the writer: masks never come back here."""
        try:
            screened = await asyncio.to_thread(screen_batch, batch, self._screen)
        except ConfigError as exc:  # a geometry or bad-pixel mask that does not fit the frames
            reason = BAD_PIXEL_MASK if str(exc).startswith("peaks.bad_pixel_mask") else MISFIT
            return await self._give_up(batch, reason, str(exc), log=False)  # the screen logs once
        self._masked.observe(screened)
        outcome = BatchOutcome()
        if screened.failed is not None:
            outcome = await self._give_up(
                screened.failed, INVALID_PIXELS, screened.failure_summary()
            )
        if screened.kept is None:
            return outcome
        return merge(outcome, await self._through_replicas(screened.kept, batch_id))

    async def _through_replicas(self, batch: FrameBatch, batch_id: str) -> BatchOutcome:
        """One batch through PeakNet and a writer, retried while replicas die (up to
        ``max_retries``) or while writes fail (up to ``write_retry_timeout_s``)."""
        settings = self._config.ingress
        frames = ray.put(batch)
        loop = asyncio.get_running_loop()
        write_deadline: float | None = None
        deaths = 0
        while True:
            try:
                masks = self._peaknet.infer.remote(frames)
                outcome: BatchOutcome = await asyncio.wait_for(
                    self._writer.process.remote(masks, frames, batch_id),
                    timeout=settings.request_timeout_s,
                )
            except TimeoutError:
                message = f"no answer within request_timeout_s={settings.request_timeout_s}"
                return await self._give_up(batch, "timeout", message)
            except Exception as exc:
                if not replica_died(exc):
                    logger.exception("batch %s failed", batch_id)
                    cause = getattr(exc, "cause", None) or exc  # RayTaskError wraps the error
                    return await self._give_up(batch, type(cause).__name__, _describe(cause))
                deaths += 1
                if deaths > settings.max_retries:
                    return await self._give_up(batch, "replica_died", _describe(exc))
                logger.warning(
                    "a replica died under batch %s (%s); retry %d of %d",
                    batch_id,
                    _describe(exc),
                    deaths,
                    settings.max_retries,
                )
                continue
            self.writers.report(outcome)
            if outcome.write_error is None:
                self.live.add(outcome.live)
                return outcome
            write_deadline = write_deadline or loop.time() + settings.write_retry_timeout_s
            if loop.time() >= write_deadline or self._pump.stopping:
                return await self._give_up(batch, "write", outcome.write_error)
            logger.warning(
                "writer %s cannot write batch %s (%s); trying again in %.1f s",
                outcome.writer_id,
                batch_id,
                outcome.write_error,
                settings.write_retry_interval_s,
            )
            await asyncio.sleep(settings.write_retry_interval_s)

    async def _give_up(
        self, batch: FrameBatch, reason: str, message: str, *, log: bool = True
    ) -> BatchOutcome:
        """Quarantine the frames raw with ``reason`` and count them failed (logged unless
        ``log`` is False: the caller logs it once)."""
        if log:
            logger.error("%d frame(s) failed (%s): %s", len(batch), reason, message)
        self.ledger.last_error = f"{reason}: {message}"
        if self._quarantine is not None:
            await asyncio.to_thread(self._quarantine.save, batch, reason=reason, message=message)
        return BatchOutcome(failed={reason: len(batch)})

    def check_health(self) -> None:
        if not self._pump.alive:
            raise RuntimeError(f"the socket pull loop has died: {self._pump.failure()!r}")

    async def _post_counts(self) -> None:
        """Post this replica's counts to the status board within ``POST_CHANGE_S`` of a change
        (at least every ``POST_INTERVAL_S``), so the service's account outlives the replica."""
        context = serve.get_replica_context()
        self._run = await asyncio.to_thread(application_run, context.app_name, context.deployment)
        posted, last = None, 0.0
        while True:
            body = self._post_body()
            counts = (
                body["received"],
                body["in_flight"],
                body["messages_received"],
                body[BUFFERED],
                *self._open,
            )
            if counts != posted or time.monotonic() - last >= POST_INTERVAL_S:
                try:
                    totals = await asyncio.wait_for(
                        self._board.totals.remote(
                            "ingress", INGRESS_POST_MAX_AGE_S, self._replica, body, self._run
                        ),
                        10,
                    )
                    posted, last = counts, time.monotonic()
                    await self._resolve(totals[TO_RESOLVE])
                except Exception as exc:  # the board is a convenience: never stop the ingress
                    logger.warning("status board unreachable: %s", _describe(exc))
                    await asyncio.sleep(POST_INTERVAL_S)
            await asyncio.sleep(POST_CHANGE_S)

    def _post_body(self) -> dict[str, Any]:
        return self.ledger.snapshot() | {
            OPEN_BATCHES: dict(self._open),
            BUFFERED: self._pump.source.backlog,
            PEERS_REJECTED: self._pump.source.peers.rejected,
        }

    async def _resolve(self, to_resolve: dict[str, dict[str, int]]) -> None:
        """Settle dead ingress replicas' open batches from the writers' CXI batch tables."""
        for replica, open_batches in to_resolve.items():
            try:
                answer = await asyncio.to_thread(
                    resolve_open_batches, Path(self._config.output.output_dir), open_batches
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

    async def __del__(self) -> None:
        if hasattr(self, "_pump"):  # absent when __init__ failed before the pump existed
            await self.drain()

    async def drain(self) -> dict[str, Any]:
        """Stop pulling, wait for the batches in flight, then log and save the account.

        The launcher calls this before it deletes the application, so the model and writer
        replicas are still up while the last batches go through; Serve's shutdown calls it
        again through ``__del__`` (a no-op by then).
        """
        if self._account is not None:
            return self._account
        drain = self._config.ingress.drain_timeout_s
        await self._pump.stop(drain_timeout_s=drain)
        self._poster.cancel()
        account = {
            **self.ledger.snapshot(),
            "batches_unsettled": self._pump.batches_in_flight,
            BUFFERED: self._pump.source.backlog,
        }
        account["service"] = await self._service_totals({**account, STOPPED: True})
        self._account = account
        logger.warning(
            "ingress stopped: received=%d hits_written=%d non_hits=%d failed=%d; "
            "%d frames in %d batches unsettled after a drain of up to %.0f s",
            account["received"],
            account["hits_written"],
            account["non_hits"],
            account["failed"],
            account["in_flight"],
            account["batches_unsettled"],
            drain,
        )
        path = await asyncio.to_thread(
            write_shutdown_report, self._config.output.output_dir, account
        )
        if path is not None:
            logger.info("shutdown account written to %s", path)
        return account

    def _authorize(self, authorization: str | None) -> None:
        """Control endpoints need ``Authorization: Bearer <token>`` once a token is set."""
        if self._token is None:
            return
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip(), self._token):
            raise HTTPException(
                status_code=401,
                detail="this endpoint changes the service's state: send 'Authorization: Bearer "
                f"<token>' with the token from ${self._config.ingress.control_token_env}",
                headers={"WWW-Authenticate": "Bearer"},
            )

    async def _writer_status(self) -> dict[str, Any]:
        try:
            return await asyncio.wait_for(self._writer.status.remote(), 10)
        except (TimeoutError, *RETRYABLE) as exc:
            logger.warning("status: no writer answered: %s", _describe(exc))
            return {"writable": False, "write_error": f"no answer: {_describe(exc)}"}

    async def _board_posts(self, topic: str, max_age_s: float) -> dict[str, dict[str, Any]]:
        """The status board's recent posts on ``topic``; none when the board does not answer."""
        try:
            return await asyncio.wait_for(self._board.read.remote(topic, max_age_s), 10)
        except Exception as exc:
            logger.warning("status: status board unreachable: %s", _describe(exc))
            return {}

    async def _service_totals(self, mine: dict[str, Any] | None = None) -> dict[str, Any]:
        """The counts of every ingress replica of this deployment added up, those that died or
        stopped included (this one's as of now, or ``mine``); this one's alone, with
        ``board_error``, when the status board does not answer."""
        if mine is None:  # after the drain this replica's counts are final
            mine = self._post_body() | ({STOPPED: True} if self._account is not None else {})
        try:
            totals = await asyncio.wait_for(
                self._board.totals.remote(
                    "ingress", INGRESS_POST_MAX_AGE_S, self._replica, mine, self._run
                ),
                10,
            )
            totals.pop(TO_RESOLVE, None)
            return totals
        except Exception as exc:
            logger.warning("status: status board unreachable: %s", _describe(exc))
            return service_totals({self._replica: mine}, ()) | {"board_error": _describe(exc)}

    async def _all_gpus(self) -> list[dict[str, Any]]:
        """Every PeakNet replica's GPU, as it posts every ``GPU_POST_INTERVAL_S``."""
        posts = await self._board_posts("peaknet", PEAKNET_POST_MAX_AGE_S)
        return [{"replica": replica, **body} for replica, body in posts.items()]

    async def _gpu_status(self) -> dict[str, Any]:
        """The GPU of the PeakNet replica that answers (name, index, memory, health)."""
        try:
            return await asyncio.wait_for(self._peaknet.gpu_status.remote(), 10)
        except (TimeoutError, *RETRYABLE) as exc:
            logger.warning("status: no PeakNet replica answered: %s", _describe(exc))
            return {"error": f"no answer: {_describe(exc)}"}

    def _peers(self) -> dict[str, Any]:
        """Connected peers, last message age, the latest mismatch warning (``wire.peer_watch``)."""
        watch = self._pump.source.watch
        return watch.snapshot() if watch is not None else {}

    @app.get("/healthz")
    def healthz(self) -> JSONResponse:
        """Liveness: the pull loop is running."""
        if not self._pump.alive:
            return JSONResponse({"alive": False, "error": repr(self._pump.failure())}, 503)
        return JSONResponse({"alive": True})

    @app.get("/readyz")
    async def readyz(self) -> JSONResponse:
        """Readiness: socket open, a PeakNet replica warm, the writers can write."""
        checks = {"socket": self._pump.source.is_open, "model": False, "writer": False}
        try:
            checks["model"] = bool(await asyncio.wait_for(self._peaknet.ready.remote(), 10))
        except (TimeoutError, *RETRYABLE) as exc:
            logger.warning("readiness: PeakNet did not answer: %s", exc)
        writer = await self._writer_status()
        failing = self.writers.failing()
        checks["writer"] = bool(writer.get("writable")) and not failing
        ready = all(checks.values()) and not self._pump.paused
        body = {"ready": ready, **checks, "paused": self._pump.paused, **self._peers()}
        if not checks["writer"]:
            body["writer_errors"] = failing or {
                "probe": writer.get("write_error") or "not writable"
            }
        return JSONResponse(body, 200 if ready else 503)

    @app.get("/status")
    async def status(self) -> dict[str, Any]:
        """Frame accounting of this ingress replica (``replica``): received = hits_written +
        non_hits + failed + in_flight; ``service`` adds up every ingress replica, ``gpu`` is the
        PeakNet replica that answered and ``gpus`` lists every PeakNet replica."""
        quarantine = self._quarantine
        return {
            **self.ledger.snapshot(),
            "replica": self._replica,
            "batches_in_flight": self._pump.batches_in_flight,
            "paused": self._pump.paused,
            "uptime_s": round(time.time() - self._started, 1),
            "addresses": list(self._config.source.addresses),
            "transport": self._config.source.transport,
            PEERS_REJECTED: self._pump.source.peers.rejected,
            **self._peers(),
            "receive_buffer": self._pump.source.snapshot(),
            "metadata": self._metadata.snapshot(),
            "writers": self.writers.snapshot(),
            "writer": await self._writer_status(),
            "gpu": await self._gpu_status(),
            "gpus": await self._all_gpus(),
            "service": await self._service_totals(),
            "batches_quarantined": quarantine.saved if quarantine else 0,
        }

    @app.get("/live.json")
    async def live_json(self) -> dict[str, Any]:
        """What the live page (GET /) draws: rates, histograms, the latest hit, replicas."""
        return self.live.snapshot(replicas=await replica_counts())

    @app.get("/metrics")
    async def metrics(self) -> Response:
        """This replica's ``peaknet_*`` and the service's ``peaknet_service_*`` totals."""
        text = render(self._registry) + render_totals(await self._service_totals())
        return Response(text, media_type="text/plain; version=0.0.4")

    @app.post("/pause")
    def pause(self, authorization: str | None = Header(default=None)) -> dict[str, bool]:
        """Stop reading the socket (the pusher blocks); batches in flight still finish."""
        self._authorize(authorization)
        self._pump.pause()
        return {"paused": True}

    @app.post("/resume")
    def resume(self, authorization: str | None = Header(default=None)) -> dict[str, bool]:
        self._authorize(authorization)
        self._pump.resume()
        return {"paused": False}
