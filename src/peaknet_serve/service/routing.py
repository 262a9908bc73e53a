"""One batch's way from the ingress through the model and a writer, and when it is sent again.

The ingress's ``submit`` (``service.pump.Pump``): the batch is screened (``service.screen``:
frames with too many invalid pixels fail as ``invalid_pixels``), the rest goes to ``infer``
and the model's answer straight on to ``write`` (masks never come back to the ingress). Three
retry regimes, from ``ingress`` config:

- a replica died under the batch (``replica_died``): sent again, up to ``max_retries`` times,
  then failed as ``replica_died``;
- the writer answered with ``write_error`` (disk full, permissions): sent again every
  ``write_retry_interval_s`` until ``write_retry_timeout_s`` has passed or the ingress stops,
  then failed as ``write``;
- no answer within ``request_timeout_s``: failed as ``timeout``, not sent again (the model or
  writer may still be working on it).

Any other error fails the batch under the error's class name. Failed frames are saved raw in the
batch quarantine; the caller (the pump) counts them in the ledger. Nothing here knows Ray: the
ingress passes its deployment handles as ``infer`` and ``write`` and Ray's errors through
``replica_died``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from peaknet_serve.errors import ConfigError
from peaknet_serve.live import LiveBoard
from peaknet_serve.peaks import PixelScreen
from peaknet_serve.service.accounting import FrameLedger
from peaknet_serve.service.config import IngressConfig
from peaknet_serve.service.health import WriterHealth
from peaknet_serve.service.outcome import BatchOutcome, merge
from peaknet_serve.service.screen import (
    BAD_PIXEL_MASK,
    INVALID_PIXELS,
    MISFIT,
    MaskedPixelMetrics,
    screen_batch,
)
from peaknet_serve.wire import FrameBatch, Quarantine

logger = logging.getLogger(__name__)

Share = Callable[[FrameBatch], Any]
"""Makes the batch's frames one object that both ``infer`` and ``write`` are given."""
Infer = Callable[[Any], Any]
"""Shared frames -> the model's answer (not awaited: ``write`` takes it as it is)."""
Write = Callable[[Any, Any, str], Awaitable[BatchOutcome]]
"""(model answer, shared frames, batch id) -> what the writer made of the batch."""


def describe(exc: BaseException) -> str:
    """``Class: first line of the message``, for logs and failure reasons."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


class BatchRouter:
    """Screens each batch, sends it through ``infer`` and ``write`` and retries as above.

    Args:
        settings: the ``ingress`` config section (timeouts, retries).
        infer: starts the model on the shared frames.
        write: sends the model's answer and the frames to a writer; its outcome.
        replica_died: whether an error from ``infer``/``write`` means a replica died.
        ledger: where the last error is noted (the pump counts the frames).
        screen: the pixel screen; ``masked`` counts what it masked.
        quarantine: where failed batches are saved raw (None: only counted).
        stopping: True once the ingress stops (a failing write is then not retried).
        share: makes the frames one object for both calls (``ray.put`` in the ingress).
    """

    def __init__(
        self,
        *,
        settings: IngressConfig,
        infer: Infer,
        write: Write,
        replica_died: Callable[[BaseException], bool],
        ledger: FrameLedger,
        screen: PixelScreen,
        masked: MaskedPixelMetrics,
        quarantine: Quarantine | None,
        stopping: Callable[[], bool],
        share: Share = lambda batch: batch,
    ) -> None:
        self._settings = settings
        self._infer = infer
        self._write = write
        self._replica_died = replica_died
        self._ledger = ledger
        self._screen = screen
        self._masked = masked
        self.quarantine = quarantine
        self._stopping = stopping
        self._share = share
        self.writers = WriterHealth(stale_s=max(60.0, 3 * settings.write_retry_interval_s))
        self.live = LiveBoard()
        self.open: dict[str, int] = {}
        """Batch id -> frames, of the batches out at the model and writers."""

    async def submit(self, batch: FrameBatch) -> BatchOutcome:
        """``route`` one batch under a new batch id, held in ``open`` until it is settled."""
        batch_id = uuid.uuid4().hex
        self.open[batch_id] = len(batch)
        try:
            return await self.route(batch, batch_id)
        finally:  # the pump settles the ledger before any other task runs: posts see one or other
            del self.open[batch_id]

    async def route(self, batch: FrameBatch, batch_id: str) -> BatchOutcome:
        """Mask invalid pixels and take out frames with too many, then the model's response
        goes straight to the writer."""
        try:
            screened = await asyncio.to_thread(screen_batch, batch, self._screen)
        except ConfigError as exc:  # a geometry or bad-pixel mask that does not fit the frames
            reason = BAD_PIXEL_MASK if str(exc).startswith("peaks.bad_pixel_mask") else MISFIT
            return await self.give_up(batch, reason, str(exc), log=False)  # the screen logs once
        self._masked.observe(screened)
        outcome = BatchOutcome()
        if screened.failed is not None:
            outcome = await self.give_up(
                screened.failed, INVALID_PIXELS, screened.failure_summary()
            )
        if screened.kept is None:
            return outcome
        return merge(outcome, await self._through_replicas(screened.kept, batch_id))

    async def _through_replicas(self, batch: FrameBatch, batch_id: str) -> BatchOutcome:
        """One batch through the model and a writer, retried while replicas die (up to
        ``max_retries``) or while writes fail (up to ``write_retry_timeout_s``)."""
        settings = self._settings
        frames = self._share(batch)
        loop = asyncio.get_running_loop()
        write_deadline: float | None = None
        deaths = 0
        while True:
            try:
                masks = self._infer(frames)
                outcome = await asyncio.wait_for(
                    self._write(masks, frames, batch_id), timeout=settings.request_timeout_s
                )
            except TimeoutError:
                message = f"no answer within request_timeout_s={settings.request_timeout_s}"
                return await self.give_up(batch, "timeout", message)
            except Exception as exc:
                if not self._replica_died(exc):
                    logger.exception("batch %s failed", batch_id)
                    cause = getattr(exc, "cause", None) or exc  # RayTaskError wraps the error
                    return await self.give_up(batch, type(cause).__name__, describe(cause))
                deaths += 1
                if deaths > settings.max_retries:
                    return await self.give_up(batch, "replica_died", describe(exc))
                logger.warning(
                    "a replica died under batch %s (%s); retry %d of %d",
                    batch_id,
                    describe(exc),
                    deaths,
                    settings.max_retries,
                )
                continue
            self.writers.report(outcome)
            if outcome.write_error is None:
                self.live.add(outcome.live)
                return outcome
            write_deadline = write_deadline or loop.time() + settings.write_retry_timeout_s
            if loop.time() >= write_deadline or self._stopping():
                return await self.give_up(batch, "write", outcome.write_error)
            logger.warning(
                "writer %s cannot write batch %s (%s); trying again in %.1f s",
                outcome.writer_id,
                batch_id,
                outcome.write_error,
                settings.write_retry_interval_s,
            )
            await asyncio.sleep(settings.write_retry_interval_s)

    async def give_up(
        self, batch: FrameBatch, reason: str, message: str, *, log: bool = True
    ) -> BatchOutcome:
        """Quarantine the frames raw with ``reason`` and count them failed (logged unless
        ``log`` is False: the caller logs it once)."""
        if log:
            logger.error("%d frame(s) failed (%s): %s", len(batch), reason, message)
        self._ledger.last_error = f"{reason}: {message}"
        if self.quarantine is not None:
            await asyncio.to_thread(
                self.quarantine.save_batch, batch, reason=reason, message=message
            )
        return BatchOutcome(failed={reason: len(batch)})
