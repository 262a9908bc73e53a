"""Async sockets that pull LCLStreamer messages: nng ``Pull0`` or ZeroMQ ``PULL``.

Both implement ``FrameSource`` and are chosen by ``SourceConfig.transport`` through ``SOURCES``.
Constructors are cheap; ``open()`` binds or dials. ``receive()`` never blocks the event loop and
returns None when ``recv_timeout_s`` passes without a message ("no data yet"). Both libraries
re-accept (listen) or re-dial (dial) a pusher that restarts, so the source survives it.

Size cap: the decoder enforces ``DecodeConfig.max_message_bytes`` (a counted
``DecodeError(reason="too_large")``); the source only applies ``transport_max_bytes``, a hard
memory guard the socket library enforces by dropping the message and its connection, uncounted.
"""

from __future__ import annotations

import ctypes
import logging
from typing import Protocol, runtime_checkable

import numpy as np
import pynng
import zmq
import zmq.asyncio

from peaknet_serve.errors import ConfigError, PeakNetServeError
from peaknet_serve.wire.config import SourceConfig
from peaknet_serve.wire.peers import ZAP_DOMAIN, PeerAllowlist, ZapGuard, guard_nng

logger = logging.getLogger(__name__)

#: What ``receive`` hands back: the message bytes, a zero-copy memoryview from both libraries
#: (``NngSource``: read-only; ``ZmqSource``: the frame's buffer); tests also pass bytes.
Message = bytes | memoryview


@runtime_checkable
class FrameSource(Protocol):
    """A socket that yields one LCLStreamer message (one batch) per ``receive``."""

    received: int
    bytes_received: int
    peers: PeerAllowlist

    @property
    def is_open(self) -> bool:
        """True once every address is bound or dialled, until ``close``."""
        ...

    async def open(self) -> None:
        """Bind (listen) or connect (dial) every configured address."""
        ...

    async def receive(self) -> Message | None:
        """The next message, or None when none came within ``recv_timeout_s`` or when closed."""
        ...

    def close(self) -> None:
        """Release the socket; safe to call twice."""
        ...


class NngSource:
    """pynng ``Pull0``; dial mode uses non-blocking dials that nng retries in the background."""

    def __init__(self, config: SourceConfig) -> None:
        self.config = config
        self.received = 0
        self.bytes_received = 0
        self.peers = PeerAllowlist(config.allowed_peers)
        self._sock: pynng.Pull0 | None = None

    @property
    def is_open(self) -> bool:
        return self._sock is not None

    @property
    def socket(self) -> pynng.Pull0 | None:
        """The open socket (for ``wire.peer_watch``), None until ``open``."""
        return self._sock

    async def open(self) -> None:
        cfg = self.config
        sock = pynng.Pull0(
            recv_timeout=max(1, round(cfg.recv_timeout_s * 1000)),
            recv_max_size=cfg.transport_max_bytes,
            recv_buffer_size=cfg.recv_buffer_messages,
            reconnect_time_min=max(1, round(cfg.reconnect_time_min_s * 1000)),
            reconnect_time_max=max(1, round(cfg.reconnect_time_max_s * 1000)),
        )
        if cfg.allowed_peers:
            guard_nng(sock, self.peers)
        try:
            for address in cfg.addresses:
                if cfg.mode == "listen":
                    sock.listen(address)
                else:
                    sock.dial(address, block=False)
        except pynng.NNGException as exc:
            sock.close()
            raise ConfigError(_open_error(cfg, exc)) from exc
        self._sock = sock
        logger.info("nng source %s on %s", cfg.mode, ", ".join(cfg.addresses))

    async def receive(self) -> Message | None:
        if self._sock is None:
            return None
        try:
            payload = message_body(await self._sock.arecv_msg())
        except (pynng.Timeout, pynng.Closed):
            return None
        self.received += 1
        self.bytes_received += payload.nbytes
        return payload

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def message_body(message: pynng.Message) -> memoryview:
    """The body of an nng message, read-only and without a copy; the view keeps the message
    alive (nng frees it when the last array decoded from it goes).

    Why: pynng's ``arecv`` copies the body into ``bytes`` while holding the GIL, a second copy of
    every batch (hundreds of MB) after nng's own read from the socket. ``Message._buffer`` is
    pynng's view of the body (its docstring: valid until the message is sent or freed); a
    ctypes array over the same memory can carry a reference to the message.
    """
    body = message._buffer
    address = np.frombuffer(body, dtype=np.uint8).ctypes.data if len(body) else 0
    if not address:
        return memoryview(b"")
    owner = (ctypes.c_ubyte * len(body)).from_address(address)
    owner.message = message  # type: ignore[attr-defined]
    return memoryview(owner).cast("B").toreadonly()


class ZmqSource:
    """pyzmq ``PULL`` on an asyncio context; messages come back as zero-copy memoryviews."""

    def __init__(self, config: SourceConfig) -> None:
        self.config = config
        self.received = 0
        self.bytes_received = 0
        self._ctx: zmq.asyncio.Context | None = None
        self._sock: zmq.asyncio.Socket | None = None
        self.peers = PeerAllowlist(config.allowed_peers)
        self._zap = ZapGuard(self.peers)

    @property
    def is_open(self) -> bool:
        return self._sock is not None

    @property
    def socket(self) -> zmq.asyncio.Socket | None:
        """The open socket (for ``wire.peer_watch``), None until ``open``."""
        return self._sock

    async def open(self) -> None:
        cfg = self.config
        ctx = zmq.asyncio.Context()
        if cfg.allowed_peers:
            self._zap.start(ctx)
        sock = ctx.socket(zmq.PULL)
        sock.setsockopt(zmq.LINGER, 0)
        if cfg.allowed_peers:
            sock.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN.encode())
        sock.setsockopt(zmq.RCVHWM, cfg.recv_buffer_messages)
        sock.setsockopt(zmq.MAXMSGSIZE, cfg.transport_max_bytes or -1)
        sock.setsockopt(zmq.RECONNECT_IVL, max(1, round(cfg.reconnect_time_min_s * 1000)))
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, max(1, round(cfg.reconnect_time_max_s * 1000)))
        try:
            for address in cfg.addresses:
                if cfg.mode == "listen":
                    sock.bind(address)
                else:
                    sock.connect(address)
        except zmq.ZMQError as exc:
            sock.close(linger=0)
            self._zap.stop()
            ctx.term()
            raise ConfigError(_open_error(cfg, exc)) from exc
        self._ctx, self._sock = ctx, sock
        logger.info("zmq source %s on %s", cfg.mode, ", ".join(cfg.addresses))

    async def receive(self) -> Message | None:
        sock = self._sock
        if sock is None:
            return None
        try:
            if not await sock.poll(round(self.config.recv_timeout_s * 1000), zmq.POLLIN):
                return None
            frame = await sock.recv(copy=False)
        except zmq.ZMQError as exc:
            if self._sock is None:  # closed while waiting
                return None
            raise PeakNetServeError(f"zmq source failed while receiving: {exc}") from exc
        self.received += 1
        self.bytes_received += len(frame)
        return frame.buffer

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None
        self._zap.stop()
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None


#: Transport name -> implementation; the only place a transport is chosen.
SOURCES: dict[str, type[NngSource] | type[ZmqSource]] = {"nng": NngSource, "zmq": ZmqSource}


def make_source(config: SourceConfig) -> FrameSource:
    """The source for ``config.transport`` (not opened yet: call ``await source.open()``)."""
    try:
        cls = SOURCES[config.transport]
    except KeyError as exc:
        raise ConfigError(
            f"source.transport={config.transport!r} is unknown; choose one of {sorted(SOURCES)}"
        ) from exc
    return cls(config)


def _open_error(cfg: SourceConfig, exc: Exception) -> str:
    verb = "listen on" if cfg.mode == "listen" else "dial"
    hint = (
        "is another process (or replica) bound to that port? use mode 'dial' or one port per "
        "replica"
        if cfg.mode == "listen"
        else "check the address syntax (tcp://HOST:PORT)"
    )
    return f"{cfg.transport} source cannot {verb} {cfg.addresses}: {exc}; {hint}"
