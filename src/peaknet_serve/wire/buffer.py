"""A bounded receive buffer between the socket and the ingress loop.

LCLStreamer main closes its zmq PUSH socket with ``LINGER 0`` right after its last send, and 0.3
closes its nng socket the same way: whatever the pusher still queues when it exits is dropped,
uncounted. The socket must therefore be read as fast as messages arrive, not only while the
ingress has a free batch slot, and not only when the ingress's event loop (busy with batches,
HTTP requests, Ray calls) gets round to it. ``BufferedSource`` reads its inner source in a thread
of its own, with its own event loop (the socket and its peer watch live there), into a queue
bounded by ``max_bytes`` and ``max_messages``; it stops reading the socket only while that queue
is full, so backpressure still reaches the pusher, but only after the buffer has absorbed a few
seconds of batches. The reader thread runs at ``reader_niceness`` (0 by default, where Ray's
workers run at 15): it is the one place where waiting for a core loses data, everything after it
has backpressure. Memory is bounded by ``max_bytes`` plus one message (a single message larger
than the buffer is still taken when the buffer is empty), plus the socket's own queue
(``source.recv_buffer_messages``). What the pusher's kernel had not yet taken when it closed is
beyond any receiver: the buffer warns once when messages outgrow this host's TCP send-buffer limit
(``wire.tcp_send_buffer``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from peaknet_serve.wire.config import SourceConfig
from peaknet_serve.wire.peer_watch import PeerWatch
from peaknet_serve.wire.peers import PeerAllowlist
from peaknet_serve.wire.source import FrameSource, Message, make_source
from peaknet_serve.wire.tcp_send_buffer import HEADROOM, send_buffer_too_small, tcp_wmem_max

logger = logging.getLogger(__name__)


class BufferedSource:
    """A ``FrameSource`` that drains ``inner`` into a bounded in-memory queue, in a thread.

    ``receive`` pops the oldest buffered message (waiting up to ``recv_timeout_s``). ``close``
    stops reading and closes the socket but keeps what is buffered: ``receive`` hands it out, then
    returns None at once, so a draining ingress processes every message it read.

    Args:
        inner: the socket source (not opened yet).
        max_bytes: bytes held at most (the message that fills it past the limit excepted).
        max_messages: messages held at most.
        recv_timeout_s: how long ``receive`` waits for a message before returning None.
        peer_watch: makes the ``PeerWatch`` of the socket (run while the source is open).
        niceness: Linux niceness for the reader thread, set before it opens the socket so the
            socket library's I/O threads inherit it; None leaves the thread as it starts.
        wmem_max: the host's TCP send-buffer limit in bytes (``tcp_send_buffer.tcp_wmem_max``),
            for the one warning when a message is too large for it; None checks nothing.
    """

    def __init__(
        self,
        inner: FrameSource,
        *,
        max_bytes: int,
        max_messages: int,
        recv_timeout_s: float,
        peer_watch: Callable[[BufferedSource], PeerWatch] | None = None,
        niceness: int | None = None,
        wmem_max: int | None = None,
    ) -> None:
        if max_bytes < 1 or max_messages < 1:
            raise ValueError("a receive buffer holds at least one message and one byte")
        self.inner = inner
        self.max_bytes = max_bytes
        self.max_messages = max_messages
        self._timeout_s = recv_timeout_s
        self.niceness = niceness
        self.reader_niceness: int | None = None  # what the reader thread got, once it runs
        self._queue: deque[Message] = deque()
        self._bytes = 0
        self._lock = threading.Lock()
        self._arrived = asyncio.Event()
        self._room: asyncio.Event | None = None  # the reader loop's, made there
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reader_loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._closed = False
        self.peak_messages = 0
        self.peak_bytes = 0
        self.times_full = 0
        self.wmem_max = wmem_max
        self.largest_message_bytes = 0
        self.last_message_at: float | None = None
        self.watch = peer_watch(self) if peer_watch is not None else None

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
        """Open the socket in the reader thread; raises what opening it raised."""
        self._loop = asyncio.get_running_loop()
        opened: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._reader_main(opened),), name="socket-reader", daemon=True
        )
        self._thread.start()
        await asyncio.wrap_future(opened)

    async def _reader_main(self, opened: concurrent.futures.Future[None]) -> None:
        """The reader thread's event loop: the socket, its peer watch and the read loop."""
        self._reader_loop = asyncio.get_running_loop()
        self._room = asyncio.Event()
        self.reader_niceness = set_thread_niceness(self.niceness)
        try:
            await self.inner.open()
            if self.watch is not None:
                self.watch.attach()
        except BaseException as exc:
            with contextlib.suppress(concurrent.futures.InvalidStateError):  # open() cancelled
                opened.set_exception(exc)
            self.inner.close()
            return
        with contextlib.suppress(concurrent.futures.InvalidStateError):
            opened.set_result(None)
        watch = None
        if self.watch is not None:
            watch = self._reader_loop.create_task(self.watch.run(), name="peer-watch")
        try:
            await self._read()
        except BaseException as exc:  # handed to the ingress loop by receive()
            if not self._closed:  # closing cancels a pending zmq poll: not an error
                self._error = exc
                self._notify()
        finally:
            self._shutdown()
            if watch is not None:  # closing its monitor socket cancels its pending poll
                with contextlib.suppress(asyncio.CancelledError):
                    await watch

    async def _read(self) -> None:
        """Read the socket whenever the buffer has room."""
        room = self._room
        assert room is not None
        while not self._closed:
            if self.full:
                self.times_full += 1
                logger.warning(
                    "receive buffer full (%d messages, %d bytes): not reading the socket until "
                    "the ingress catches up",
                    len(self._queue),
                    self._bytes,
                )
                room.clear()
                if self.full and not self._closed:  # receive() may have made room meanwhile
                    await room.wait()
                continue
            payload = await self.inner.receive()
            if payload is None:
                continue
            nbytes = memoryview(payload).nbytes
            with self._lock:
                self._queue.append(payload)
                self._bytes += nbytes
                self.peak_messages = max(self.peak_messages, len(self._queue))
                self.peak_bytes = max(self.peak_bytes, self._bytes)
            self.last_message_at = time.time()
            self._notify()
            if nbytes > self.largest_message_bytes:
                self._note_largest(nbytes)

    def _note_largest(self, nbytes: int) -> None:
        """Keep the largest message size; warn the first time the send-buffer limit is short."""
        if send_buffer_too_small(nbytes, self.wmem_max) and not send_buffer_too_small(
            self.largest_message_bytes, self.wmem_max
        ):
            logger.warning(
                "messages of %d bytes arrive and this host's TCP send buffers grow to at most %d "
                "bytes (net.ipv4.tcp_wmem): a pusher on a host with that limit that exits right "
                "after its last send without lingering (LCLStreamer main: LINGER 0) can lose its "
                "last batch. On the pusher's host raise the limit (the third field of "
                "net.ipv4.tcp_wmem, sysctl) to at least %d, or give its socket a linger "
                "(docs/operations.md)",
                nbytes,
                self.wmem_max,
                HEADROOM * nbytes,
            )
        self.largest_message_bytes = nbytes

    def _notify(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the ingress loop is closing
                loop.call_soon_threadsafe(self._arrived.set)

    async def receive(self) -> Message | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout_s
        while not self._queue and not self._closed and self._error is None:
            self._arrived.clear()  # a wake-up for a message already taken is spurious
            remaining = deadline - loop.time()
            if self._queue or remaining <= 0:
                break
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                break
        if self._error is not None:
            raise self._error
        with self._lock:
            if not self._queue:
                return None
            payload = self._queue.popleft()
            self._bytes -= memoryview(payload).nbytes
        self._wake_reader()
        return payload

    def _wake_reader(self) -> None:
        reader_loop, room = self._reader_loop, self._room
        if reader_loop is not None and room is not None and not reader_loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the reader has just ended
                reader_loop.call_soon_threadsafe(room.set)

    def _shutdown(self) -> None:
        """Close the peer watch and the socket (in the reader thread, which owns them)."""
        if self.watch is not None:
            self.watch.close()
        self.inner.close()
        if self._room is not None:
            self._room.set()

    def close(self) -> None:
        """Stop reading and close the socket; what is buffered can still be received.

        The reader is not cancelled (that could drop a message it has just read): closing the
        socket ends its pending receive, and the thread leaves its loop; ``close`` waits for it
        (at most ``recv_timeout_s`` and a second), so nothing is added after it returns.
        """
        self._closed = True
        reader_loop, thread = self._reader_loop, self._thread
        if reader_loop is not None and thread is not None and thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the thread's loop has just ended
                reader_loop.call_soon_threadsafe(self._shutdown)
            thread.join(self._timeout_s + 1.0)
        else:
            self._shutdown()
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
            "reader_niceness": self.reader_niceness,
            "largest_message_bytes": self.largest_message_bytes,
            "tcp_wmem_max": self.wmem_max,
        }


def set_thread_niceness(niceness: int | None) -> int:
    """Give the calling thread (and the threads it starts later) Linux niceness ``niceness``.

    On Linux ``setpriority(PRIO_PROCESS, tid)`` acts on one thread (setpriority(2), "Bugs").
    Lowering the niceness below the current one needs CAP_SYS_NICE or RLIMIT_NICE: without them the
    thread keeps its niceness and a warning says how to grant it. Returns the niceness the thread
    runs at.
    """
    thread = threading.get_native_id()
    current = os.getpriority(os.PRIO_PROCESS, thread)
    if niceness is None or niceness == current:
        return current
    try:
        os.setpriority(os.PRIO_PROCESS, thread, niceness)
    except PermissionError:
        logger.warning(
            "the socket reader stays at niceness %d: going to source.reader_niceness=%d needs "
            "CAP_SYS_NICE or RLIMIT_NICE (ulimit -e %d), or start Ray with RAY_worker_niceness=0 "
            "in its environment; on a node with busy cores a pusher that exits right after its "
            "last send may then lose what it still queues",
            current,
            niceness,
            20 - niceness,
        )
        return current
    return os.getpriority(os.PRIO_PROCESS, thread)


def buffered_source(config: SourceConfig) -> BufferedSource:
    """The configured socket behind a receive buffer of ``buffer_bytes`` / ``buffer_messages``,
    with a ``PeerWatch`` on it and this host's TCP send-buffer limit to check messages against."""
    inner = make_source(config)
    return BufferedSource(
        inner,
        max_bytes=config.buffer_bytes,
        max_messages=config.buffer_messages,
        recv_timeout_s=config.recv_timeout_s,
        peer_watch=lambda buffer: PeerWatch(inner, config, lambda: buffer.last_message_at),
        niceness=config.reader_niceness,
        wmem_max=tcp_wmem_max(),
    )
