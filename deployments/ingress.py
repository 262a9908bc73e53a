"""The Ingress deployment: pulls LCLStreamer's socket and serves the service's HTTP endpoints."""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial
from typing import Any

import ray
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from ray import serve
from ray.exceptions import RayActorError
from ray.serve.handle import DeploymentHandle

from peaknet_serve.config import ServiceConfig
from peaknet_serve.service.accounting import FrameLedger
from peaknet_serve.service.metrics import ledger_registry, render
from peaknet_serve.service.outcome import BatchOutcome
from peaknet_serve.service.pump import Pump
from peaknet_serve.wire import FrameBatch, Quarantine, decode_message, make_source

logger = logging.getLogger(__name__)

app = FastAPI(title="peaknet-serve", description="Bragg peak finding on LCLStreamer frames.")

RETRYABLE = (RayActorError,)
"""Errors that mean a replica died: the batch is sent again, to another replica."""


@serve.deployment(name="Ingress", max_ongoing_requests=64, health_check_period_s=5)
@serve.ingress(app)
class Ingress:
    """Pulls frames, chains PeakNet into the writer for each batch and accounts for every frame."""

    def __init__(
        self, peaknet: DeploymentHandle, writer: DeploymentHandle, settings: dict[str, Any]
    ) -> None:
        config = ServiceConfig.model_validate(settings)
        self._peaknet = peaknet
        self._writer = writer
        self._config = config
        self._started = time.time()
        self.ledger = FrameLedger()
        self._pump = Pump(
            source=make_source(config.source),
            decode=partial(decode_message, config=config.decode),
            submit=self._submit,
            ledger=self.ledger,
            max_in_flight=config.ingress.max_in_flight_batches,
            quarantine=Quarantine(config.quarantine_dir) if config.quarantine_dir else None,
        )
        self._registry = ledger_registry(self.ledger, paused=lambda: self._pump.paused)
        self._pump.start()

    async def _submit(self, batch: FrameBatch) -> BatchOutcome:
        """The model's response goes straight to the writer: masks never come back here."""
        frames = ray.put(batch)
        retries = self._config.ingress.max_retries
        for attempt in range(retries + 1):
            masks = self._peaknet.infer.remote(frames)
            outcome = self._writer.process.remote(masks, frames)
            try:
                return await asyncio.wait_for(
                    outcome, timeout=self._config.ingress.request_timeout_s
                )
            except RETRYABLE:
                if attempt == retries:
                    raise
                logger.warning("a replica died under a batch; retry %d of %d", attempt + 1, retries)
        raise AssertionError("unreachable")

    def check_health(self) -> None:
        if not self._pump.alive:
            raise RuntimeError(f"the socket pull loop has died: {self._pump.failure()!r}")

    async def __del__(self) -> None:
        if not hasattr(self, "_pump"):  # __init__ failed before the pump existed
            return
        await self._pump.stop(drain_timeout_s=self._config.ingress.drain_timeout_s)
        logger.info("ingress stopped: %s", self.ledger.snapshot())

    @app.get("/healthz")
    def healthz(self) -> JSONResponse:
        """Liveness: the pull loop is running."""
        if not self._pump.alive:
            return JSONResponse({"alive": False, "error": repr(self._pump.failure())}, 503)
        return JSONResponse({"alive": True})

    @app.get("/readyz")
    async def readyz(self) -> JSONResponse:
        """Readiness: the socket is open and a PeakNet replica has a warm model."""
        checks = {"socket": self._pump.source.is_open, "model": False}
        try:
            checks["model"] = bool(await asyncio.wait_for(self._peaknet.ready.remote(), 10))
        except (TimeoutError, RayActorError) as exc:
            logger.warning("readiness: PeakNet did not answer: %s", exc)
        ready = all(checks.values()) and not self._pump.paused
        return JSONResponse(
            {"ready": ready, **checks, "paused": self._pump.paused}, 200 if ready else 503
        )

    @app.get("/status")
    def status(self) -> dict[str, Any]:
        """Frame accounting: received = hits_written + non_hits + failed + in_flight."""
        return {
            **self.ledger.snapshot(),
            "batches_in_flight": self._pump.batches_in_flight,
            "paused": self._pump.paused,
            "uptime_s": round(time.time() - self._started, 1),
            "addresses": list(self._config.source.addresses),
            "transport": self._config.source.transport,
        }

    @app.get("/metrics")
    def metrics(self) -> Response:
        return Response(render(self._registry), media_type="text/plain; version=0.0.4")

    @app.post("/pause")
    def pause(self) -> dict[str, bool]:
        """Stop reading the socket (the pusher blocks); batches in flight still finish."""
        self._pump.pause()
        return {"paused": True}

    @app.post("/resume")
    def resume(self) -> dict[str, bool]:
        self._pump.resume()
        return {"paused": False}
