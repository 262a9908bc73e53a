"""The ingress loop: pull a message, decode it, send the batch on, with a bounded window.

While ``max_in_flight`` batches are out no message is taken from the source; the ingress's
source is a ``BufferedSource`` that keeps reading the socket until its buffer is full, then the
pusher's own queue fills and it blocks: backpressure reaches the detector side instead of frames
being dropped here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from peaknet_serve.errors import DecodeError
from peaknet_serve.service.accounting import FrameLedger
from peaknet_serve.service.outcome import BatchOutcome
from peaknet_serve.wire import FrameBatch, FrameSource, Quarantine
from peaknet_serve.wire.source import Message

logger = logging.getLogger(__name__)

Decode = Callable[[Message], FrameBatch]
Submit = Callable[[FrameBatch], Awaitable[BatchOutcome]]


class Pump:
    """Moves batches from a frame source to ``submit`` and accounts for every frame.

    ``submit`` sends one batch through the model and the writer and returns its outcome; an
    exception from it fails the whole batch, counted under the exception's class name. Any
    failure to decode or book one message (``DecodeError`` or not) is that message's: counted
    under a reason (``internal`` for anything but a ``DecodeError``), quarantined, and the loop
    goes on.
    """

    def __init__(
        self,
        *,
        source: FrameSource,
        decode: Decode,
        submit: Submit,
        ledger: FrameLedger,
        max_in_flight: int,
        quarantine: Quarantine | None = None,
    ) -> None:
        self.source = source
        self.ledger = ledger
        self._decode = decode
        self._submit = submit
        self._quarantine = quarantine
        self._slots = asyncio.Semaphore(max_in_flight)
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._stopping = False
        self._batches: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None

    @property
    def paused(self) -> bool:
        return not self._resumed.is_set()

    @property
    def stopping(self) -> bool:
        """True once ``stop`` was called: nothing new is pulled."""
        return self._stopping

    @property
    def batches_in_flight(self) -> int:
        return len(self._batches)

    def pause(self) -> None:
        """Stop reading the socket; batches in flight still finish."""
        self._resumed.clear()

    def resume(self) -> None:
        self._resumed.set()

    def start(self) -> None:
        """Run the pull loop as a task of the running event loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="pump")

    @property
    def alive(self) -> bool:
        """False once the pull loop has ended for any reason other than ``stop``."""
        return self._task is not None and (not self._task.done() or self._stopping)

    def failure(self) -> BaseException | None:
        """The exception that ended the pull loop, if any."""
        if self._task is None or not self._task.done() or self._task.cancelled():
            return None
        return self._task.exception()

    async def _run(self) -> None:
        await self.source.open()
        while True:
            await self._resumed.wait()
            await self._slots.acquire()
            try:
                payload = await self.source.receive()
            except BaseException:
                self._slots.release()
                raise
            if payload is None:
                self._slots.release()
                if self._stopping:  # the source is closed and holds nothing more
                    break
                continue
            await self._accept(payload)

    async def _accept(self, payload: Message) -> None:
        n_bytes = memoryview(payload).nbytes
        self.ledger.message_received(n_bytes)
        try:
            batch = await asyncio.to_thread(self._decode, payload)
            frames = len(batch)
        except Exception as exc:  # one message's failure, whatever raised it: count and go on
            self._slots.release()
            await self._reject(payload, n_bytes, exc)
            return
        self.ledger.frames_received(frames)
        task = asyncio.get_running_loop().create_task(self._process(batch))
        self._batches.add(task)
        task.add_done_callback(self._batches.discard)

    async def _reject(self, payload: Message, n_bytes: int, exc: Exception) -> None:
        if not isinstance(exc, DecodeError):
            logger.error("decoding a %d-byte message failed unexpectedly", n_bytes, exc_info=exc)
            exc = DecodeError(f"{type(exc).__name__}: {exc}", reason="internal")
        logger.warning("rejected a %d-byte message (%s): %s", n_bytes, exc.reason, exc)
        self.ledger.message_rejected(exc.reason, str(exc))
        if self._quarantine is not None:
            try:
                await asyncio.to_thread(self._quarantine.save, payload, exc)
            except Exception:  # the quarantine is a convenience: never stop the loop
                logger.exception("could not quarantine a rejected message")

    async def _process(self, batch: FrameBatch) -> None:
        try:
            outcome = await self._submit(batch)
        except Exception as exc:
            logger.exception("a batch of %d frames failed", len(batch))
            self.ledger.fail(len(batch), type(exc).__name__, f"{type(exc).__name__}: {exc}")
        else:
            if outcome.frames != len(batch):
                self.ledger.fail(
                    len(batch),
                    "miscounted",
                    f"writer accounted for {outcome.frames} of {len(batch)} frames",
                )
            else:
                self.ledger.settle(
                    hits=outcome.hits,
                    non_hits=outcome.non_hits,
                    failed=outcome.failed,
                    error=outcome.error,
                )
        finally:
            self._slots.release()

    async def stop(self, *, drain_timeout_s: float) -> None:
        """Close the socket, then wait up to ``drain_timeout_s`` for what was read from it.

        The loop takes every message the source still holds (a ``BufferedSource`` keeps its
        buffer after ``close``) and leaves when it returns None, so no received message is
        dropped; whatever has not finished by the deadline stays counted as ``in_flight``.
        """
        self._stopping = True
        self._resumed.set()
        self.source.close()
        if self._task is not None and not self._task.done():
            _, running = await asyncio.wait({self._task}, timeout=drain_timeout_s)
            for task in running:
                task.cancel()
        if self._batches:
            _, pending = await asyncio.wait(set(self._batches), timeout=drain_timeout_s)
            if pending:
                logger.error(
                    "shutdown: %d batches (%d frames) did not finish in %.0f s",
                    len(pending),
                    self.ledger.in_flight,
                    drain_timeout_s,
                )
