"""The Ingress deployment: pulls LCLStreamer's socket and serves the service's HTTP endpoints."""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
from pathlib import Path
from typing import Any

import ray
from fastapi import FastAPI, Header, HTTPException, Response
from fastapi.responses import JSONResponse
from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments.board import status_board
from deployments.live_page import add_live_page, replica_counts
from deployments.metrics import IngressMetrics
from deployments.status import IngressStatus, replica_died
from peaknet_serve.cxi import geometry_bad_pixels
from peaknet_serve.cxi.config import CXIConfig
from peaknet_serve.peaks import PeaksConfig, PixelScreen
from peaknet_serve.service.accounting import FrameLedger
from peaknet_serve.service.config import IngressConfig
from peaknet_serve.service.metadata_watch import MetadataCollector, MetadataWatch
from peaknet_serve.service.metrics import ledger_registry, render
from peaknet_serve.service.outcome import BatchOutcome
from peaknet_serve.service.pump import Pump
from peaknet_serve.service.report import write_shutdown_report
from peaknet_serve.service.routing import BatchRouter
from peaknet_serve.service.screen import MaskedPixelMetrics
from peaknet_serve.service.totals import (
    BUFFERED,
    OPEN_BATCHES,
    PEERS_REJECTED,
    STOPPED,
    render_totals,
)
from peaknet_serve.wire import (
    DecodeConfig,
    FrameBatch,
    Message,
    Quarantine,
    SourceConfig,
    decode_message,
)
from peaknet_serve.wire.buffer import buffered_source

logger = logging.getLogger(__name__)

app = FastAPI(title="peaknet-serve", description="Bragg peak finding on LCLStreamer frames.")
add_live_page(app)


@serve.deployment(name="Ingress", max_ongoing_requests=64, health_check_period_s=5)
@serve.ingress(app)
class Ingress:
    """Pulls frames, routes each batch through PeakNet into a writer and accounts for every frame.

    The pump (``service.pump``) pulls and decodes, the router (``service.routing``) sends each
    batch on and retries, the ledger counts; ``deployments.status`` asks the other replicas and
    the status board for what ``/status`` shows.

    Args:
        peaknet, writer: the PeakNet and PeakFinderWriter deployments.
        source, decode: the sockets to pull and how messages are decoded.
        peaks: its pixel screen (``flag_*``, ``bad_pixel_mask``) runs here, before the model.
        output: its ``output_dir`` (status, shutdown report) and ``geometry_file`` (bad pixels).
        ingress: batches in flight, retries, drain, quarantine bounds, control token.
        quarantine_dir: where bad messages and failed batches are kept (None: only counted).
    """

    def __init__(
        self,
        peaknet: DeploymentHandle,
        writer: DeploymentHandle,
        *,
        source: SourceConfig,
        decode: DecodeConfig,
        peaks: PeaksConfig,
        output: CXIConfig,
        ingress: IngressConfig,
        quarantine_dir: Path | None,
    ) -> None:
        self._source = source
        self._decode_config = decode
        self._output_dir = Path(output.output_dir)
        self._settings = ingress
        self._started = time.time()
        context = serve.get_replica_context()
        self._replica = context.replica_id.unique_id
        self._token = os.environ.get(ingress.control_token_env) or None
        self._metrics = IngressMetrics()
        self.ledger = FrameLedger(listener=self._metrics)
        self._account: dict[str, Any] | None = None
        self._status = IngressStatus(
            board=status_board(context.app_name),
            peaknet=peaknet,
            writer=writer,
            replica=self._replica,
            output_dir=self._output_dir,
        )
        self._pump = Pump(
            source=buffered_source(source),
            decode=self._decode,
            submit=self._submit,
            ledger=self.ledger,
            max_in_flight=ingress.max_in_flight_batches,
            quarantine=Quarantine(quarantine_dir, max_bytes=ingress.quarantine_max_bytes)
            if quarantine_dir
            else None,
        )
        self._registry = ledger_registry(self.ledger, paused=lambda: self._pump.paused)
        self._router = BatchRouter(
            settings=ingress,
            infer=lambda frames: peaknet.infer.remote(frames),
            write=lambda masks, frames, batch_id: writer.process.remote(masks, frames, batch_id),
            replica_died=replica_died,
            ledger=self.ledger,
            screen=PixelScreen(peaks, bad_pixels=geometry_bad_pixels(output.geometry_file)),
            masked=MaskedPixelMetrics(self._registry),
            quarantine=Quarantine(
                quarantine_dir / "batches",
                max_files=ingress.quarantine_max_batches,
                max_bytes=ingress.quarantine_max_bytes,
            )
            if quarantine_dir
            else None,
            stopping=lambda: self._pump.stopping,
            share=ray.put,
        )
        self._metadata = MetadataWatch(decode)
        self._registry.register(MetadataCollector(self._metadata))
        self._pump.start()
        self._poster = asyncio.get_running_loop().create_task(
            self._status.post_counts(self._post_body, context), name="post"
        )
        logger.info(
            "ingress up; control endpoints %s",
            "need a bearer token" if self._token else "are open (no token configured)",
        )

    def _decode(self, payload: Message) -> FrameBatch:
        """``decode_message``, its metadata watched (runs in a worker thread)."""
        batch = decode_message(payload, self._decode_config)
        self._metadata.observe(batch)
        return batch

    async def _submit(self, batch: FrameBatch) -> BatchOutcome:
        """Route one batch (``BatchRouter.submit``); its time goes to the replica metrics (its
        frames are counted by the pump's ledger)."""
        started = time.perf_counter()
        self._metrics.in_flight.set(self._pump.batches_in_flight)
        outcome = await self._router.submit(batch)
        self._metrics.batch.observe(time.perf_counter() - started)
        return outcome

    def check_health(self) -> None:
        if not self._pump.alive:
            raise RuntimeError(f"the socket pull loop has died: {self._pump.failure()!r}")

    def _counts(self) -> dict[str, Any]:
        """What the service totals add up: the ledger, the receive buffer's messages, refused
        peers and frames without a measured photon energy (``service.totals.COUNTS``)."""
        return self.ledger.snapshot() | self._metadata.snapshot() | {
            BUFFERED: self._pump.source.backlog,
            PEERS_REJECTED: self._pump.source.peers.rejected,
        }

    def _post_body(self) -> dict[str, Any]:
        return self._counts() | {OPEN_BATCHES: dict(self._router.open)}

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
        drain = self._settings.drain_timeout_s
        await self._pump.stop(drain_timeout_s=drain)
        self._poster.cancel()
        account = {**self._counts(), "batches_unsettled": self._pump.batches_in_flight}
        account["service"] = await self._status.service_totals({**account, STOPPED: True})
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
        path = await asyncio.to_thread(write_shutdown_report, self._output_dir, account)
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
                f"<token>' with the token from ${self._settings.control_token_env}",
                headers={"WWW-Authenticate": "Bearer"},
            )

    async def _service_totals(self) -> dict[str, Any]:
        """Every ingress replica's counts added up (``IngressStatus.service_totals``), this
        one's as of now (final after the drain)."""
        stopped = {STOPPED: True} if self._account is not None else {}
        return await self._status.service_totals(self._post_body() | stopped)

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
        checks = {"socket": self._pump.source.is_open, "model": await self._status.model_ready()}
        writer = await self._status.writer_status()
        failing = self._router.writers.failing()
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
        quarantine = self._router.quarantine
        return {
            **self.ledger.snapshot(),
            "replica": self._replica,
            "batches_in_flight": self._pump.batches_in_flight,
            "paused": self._pump.paused,
            "uptime_s": round(time.time() - self._started, 1),
            "addresses": list(self._source.addresses),
            "transport": self._source.transport,
            PEERS_REJECTED: self._pump.source.peers.rejected,
            **self._peers(),
            "receive_buffer": self._pump.source.snapshot(),
            "metadata": self._metadata.snapshot(),
            "writers": self._router.writers.snapshot(),
            "writer": await self._status.writer_status(),
            "gpu": await self._status.gpu_status(),
            "gpus": await self._status.all_gpus(),
            "service": await self._service_totals(),
            "batches_quarantined": quarantine.saved if quarantine else 0,
        }

    @app.get("/live.json")
    async def live_json(self) -> dict[str, Any]:
        """What the live page (GET /) draws: rates, histograms, the latest hit, replicas."""
        return self._router.live.snapshot(replicas=await replica_counts())

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
