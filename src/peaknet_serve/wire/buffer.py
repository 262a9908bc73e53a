"""A bounded receive buffer between the socket and the ingress loop.

LCLStreamer main closes its zmq PUSH socket with ``LINGER 0`` right after its last send, and 0.3
closes its nng socket the same way: whatever the pusher still queues when it exits is dropped,
uncounted. The socket must therefore be read as fast as messages arrive, not only while the
ingress has a free batch slot. ``BufferedSource`` reads its inner source in a task of its own
into a queue bounded by ``max_bytes`` and ``max_messages``; it stops reading the socket only
while that queue is full, so backpressure still reaches the pusher, but only after the buffer has
absorbed a few seconds of batches. Memory is bounded by ``max_bytes`` plus one message (a single
message larger than the buffer is still taken when the buffer is empty), plus the socket's own
queue (``source.recv_buffer_messages``), which the socket library's I/O thread fills without
waiting for this process's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from peaknet_serve.wire.config import SourceConfig
from peaknet_serve.wire.peer_watch import PeerWatch
from peaknet_serve.wire.peers import PeerAllowlist
from peaknet_serve.wire.source import FrameSource, Message, make_source

logger = logging.getLogger(__name__)


class BufferedSource:
    """A ``FrameSource`` that drains ``inner`` into a bounded in-memory queue.

    ``receive`` pops the oldest buffered message (waiting up to ``recv_timeout_s``). ``close``
    stops reading and closes the socket but keeps what is buffered: ``receive`` hands it out, then
    returns None at once, so a draining ingress processes every message it read.

    Args:
        inner: the socket source (not opened yet).
        max_bytes: bytes held at most (the message that fills it past the limit excepted).
        max_messages: messages held at most.
        recv_timeout_s: how long ``receive`` waits for a message before returning None.
        peer_watch: makes the ``PeerWatch`` of the socket (run while the source is open).
    """

    def __init__(
        self,
        inner: FrameSource,
        *,
        max_bytes: int,
        max_messages: int,
        recv_timeout_s: float,
        peer_watch: Callable[[BufferedSource], PeerWatch] | None = None,
    ) -> None:
        if max_bytes < 1 or max_messages < 1:
            raise ValueError("a receive buffer holds at least one message and one byte")
        self.inner = inner
        self.max_bytes = max_bytes
        self.max_messages = max_messages
        self._timeout_s = recv_timeout_s
        self._queue: deque[Message] = deque()
        self._bytes = 0
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._reader: asyncio.Task[None] | None = None
        self._closed = False
        self.peak_messages = 0
        self.peak_bytes = 0
        self.times_full = 0
        self.last_message_at: float | None = None
        self.watch = peer_watch(self) if peer_watch is not None else None
        self._watch_task: asyncio.Task[None] | None = None

    @property
    def peers(self) -> PeerAllowlist:
        """The socket's allowlist of who may push (``wire.peers``)."""
        return self.inner.peers

    @property
    def received(self) -> int:
        return self.inner.received

    @property
    def bytes_received(self) -> int:
        return self.inner.bytes_received

    @property
    def is_open(self) -> bool:
        return self.inner.is_open and not self._closed

    @property
    def backlog(self) -> int:
        """Messages read from the socket and not yet handed out."""
        return len(self._queue)

    @property
    def full(self) -> bool:
        return bool(self._queue) and (
            len(self._queue) >= self.max_messages or self._bytes >= self.max_bytes
        )

    async def open(self) -> None:
        await self.inner.open()
        loop = asyncio.get_running_loop()
        self._reader = loop.create_task(self._read(), name="socket-reader")
        if self.watch is not None:
            self.watch.attach()
            self._watch_task = loop.create_task(self.watch.run(), name="peer-watch")

    async def _read(self) -> None:
        """Read the socket whenever the buffer has room."""
        while not self._closed:
            if self.full:
                self.times_full += 1
                logger.warning(
                    "receive buffer full (%d messages, %d bytes): not reading the socket until "
                    "the ingress catches up",
                    len(self._queue),
                    self._bytes,
                )
                self._room.clear()
                await self._room.wait()
                continue
            payload = await self.inner.receive()
            if payload is None:
                continue
            self._queue.append(payload)
            self._bytes += memoryview(payload).nbytes
            self.last_message_at = time.time()
            self.peak_messages = max(self.peak_messages, len(self._queue))
            self.peak_bytes = max(self.peak_bytes, self._bytes)
            self._arrived.set()

    async def receive(self) -> Message | None:
        if not self._queue and not self._closed:
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), self._timeout_s)
        if self._reader is not None and self._reader.done() and not self._reader.cancelled():
            error = self._reader.exception()
            if error is not None:
                raise error
        if not self._queue:
            return None
        payload = self._queue.popleft()
        self._bytes -= memoryview(payload).nbytes
        self._room.set()
        return payload

    def close(self) -> None:
        """Stop reading and close the socket; what is buffered can still be received.

        The reader is not cancelled (that could drop a message it has just read): closing the
        socket ends its pending receive, and it leaves its loop.
        """
        self._closed = True
        if self.watch is not None:
            self.watch.close()
        self.inner.close()
        self._room.set()
        self._arrived.set()

    def snapshot(self) -> dict[str, Any]:
        """Fill level and limits, for ``/status``."""
        return {
            "messages": len(self._queue),
            "bytes": self._bytes,
            "max_messages": self.max_messages,
            "max_bytes": self.max_bytes,
            "peak_messages": self.peak_messages,
            "peak_bytes": self.peak_bytes,
            "times_full": self.times_full,
        }


def buffered_source(config: SourceConfig) -> BufferedSource:
    """The configured socket behind a receive buffer of ``buffer_bytes`` / ``buffer_messages``,
    with a ``PeerWatch`` on it."""
    inner = make_source(config)
    return BufferedSource(
        inner,
        max_bytes=config.buffer_bytes,
        max_messages=config.buffer_messages,
        recv_timeout_s=config.recv_timeout_s,
        peer_watch=lambda buffer: PeerWatch(inner, config, lambda: buffer.last_message_at),
    )
