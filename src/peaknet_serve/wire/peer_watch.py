"""Who is connected to the source socket, and loud messages when nobody (or the wrong kind) is.

A pusher speaking the other transport, or on the wrong side of the connection, is otherwise
silent: LCLStreamer main (zmq) dialling an nng listener blocks forever, and both sides of a
``role: server`` / ``mode: listen`` pair wait for a dial that never comes.

- zmq: the socket monitor. A connection accepted (or made) that closes without a ZMTP handshake
  and without a handshake-failure event is a peer that does not speak zmq (libzmq ends it on the
  bad greeting). One that fails with ``EVENT_HANDSHAKE_FAILED_AUTH`` was refused by
  ``source.allowed_peers`` (``wire.peers`` counts it, as ``peers_rejected``). One that fails
  with ``..._NO_DETAIL`` ended before its greeting was complete, as a port check (``nc -z``, a
  load balancer) does: counted as ``closed_before_handshake``, not as a wrong protocol (with
  ``mode: dial`` it is the listener that hung up, and it counts as one). libzmq emits the
  failure event right before that connection's ``EVENT_DISCONNECTED``; neither names the
  other, so a failure is matched to the next disconnect.
- nng: the listener's and dialer's statistics (``pipes``, and ``proto``: connections that failed
  the SP handshake, i.e. not nng). A port check ends under ``other``, with a pusher's ordinary
  close, and is counted nowhere.

``PeerWatch.snapshot()`` is what ``/status`` and ``/readyz`` show. Each problem is logged with the
settings that fix it: once when a wrong-protocol peer is first seen (then at most once a minute),
once per period without any peer longer than ``source.no_peer_warning_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import pynng
import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from peaknet_serve.wire.config import SourceConfig
from peaknet_serve.wire.source import NngSource, ZmqSource

logger = logging.getLogger(__name__)

POLL_S = 0.5
PROTOCOL_LOG_INTERVAL_S = 60.0
HANDSHAKE_FAILURES = (
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL,
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
    zmq.EVENT_HANDSHAKE_FAILED_AUTH,
)


def wrong_protocol_fix(config: SourceConfig) -> str:
    """What to change when a peer speaks the other transport."""
    if config.transport == "zmq":
        return (
            "a peer connected but did not speak ZeroMQ: it is most likely nng (LCLStreamer <= "
            "0.3, whose data handler defaults to library: nng). Set source.transport: nng here, "
            "or library: zmq in LCLStreamer's BinaryDataStreamingDataHandler"
        )
    return (
        "a peer connected but did not speak nng (SP protocol): it is most likely ZeroMQ "
        "(LCLStreamer main pushes with zmq only; 0.3 with library: zmq). Set source.transport: "
        "zmq here, or library: nng in LCLStreamer 0.3's BinaryDataStreamingDataHandler"
    )


def no_peer_fix(config: SourceConfig, waited_s: float) -> str:
    """What to check when no pusher has connected for ``waited_s``."""
    where = ", ".join(config.addresses)
    if config.mode == "listen":
        return (
            f"no pusher has connected to {where} ({config.transport}) for {waited_s:.0f} s. "
            "Check LCLStreamer's BinaryDataStreamingDataHandler: role: client, urls: "
            f"[tcp://THIS_HOST:PORT], library: {config.transport} (LCLStreamer main speaks zmq "
            "only: set source.transport: zmq). If LCLStreamer has role: server (its default), "
            "set source.mode: dial and source.addresses to its URL"
        )
    return (
        f"no pusher is listening at {where} ({config.transport}) after {waited_s:.0f} s of "
        "dialling. With source.mode: dial, LCLStreamer needs role: server on those URLs and "
        f"library: {config.transport}; with role: client, set source.mode: listen"
    )


class PeerWatch:
    """Counts the peers of an open nng or zmq source and logs mismatches with their fix.

    Args:
        source: the socket source it watches (attaches once the source is open).
        config: the ``source`` section (``transport``, ``mode``, ``addresses``,
            ``no_peer_warning_s``).
        last_message_at: wall-clock time of the last message read, or None.
    """

    def __init__(
        self,
        source: NngSource | ZmqSource,
        config: SourceConfig,
        last_message_at: Callable[[], float | None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._config = config
        self._last_message_at = last_message_at
        self._clock = clock
        self.connected = 0
        self.wrong_protocol = 0
        self.closed_before_handshake = 0
        self.warning: str | None = None
        self._no_peer_since = clock()
        self._warned_no_peer = False
        self._protocol_logged_at: float | None = None
        self._monitor: zmq.asyncio.Socket | None = None
        self._pending: deque[int] = deque()
        self._handshaken: set[int] = set()
        self._failure: int | None = None
        self._closed = False

    def attach(self) -> None:
        """Start the zmq socket monitor; call it right after the source opens, before the event
        loop runs again, so that a pusher already dialling is not accepted unseen (its
        connection would never be counted, and a false no-peer warning would follow)."""
        sock = self._source.socket
        if self._monitor is None and not self._closed and isinstance(sock, zmq.asyncio.Socket):
            self._monitor = sock.get_monitor_socket()

    async def run(self) -> None:
        """Watch until ``close``; never raises (a broken watch must not stop the ingress)."""
        try:
            while not self._source.is_open and not self._closed:
                await asyncio.sleep(POLL_S)
            self.attach()
            while not self._closed:
                if self._monitor is not None:
                    await self._read_monitor()
                else:
                    self._read_nng_stats()
                    await asyncio.sleep(POLL_S)
                self._check()
        except Exception:
            if not self._closed:
                logger.exception("the peer watch stopped; peer counts in /status are stale")

    async def _read_monitor(self) -> None:
        monitor = self._monitor
        assert monitor is not None
        if not await monitor.poll(round(POLL_S * 1000)):
            return
        event = parse_monitor_message(await monitor.recv_multipart())
        kind, fd = event["event"], event["value"]
        if kind in (zmq.EVENT_ACCEPTED, zmq.EVENT_CONNECTED):
            self._pending.append(fd)
        elif kind == zmq.EVENT_HANDSHAKE_SUCCEEDED and self._pending:
            self._handshaken.add(self._pending.popleft())
        elif kind in HANDSHAKE_FAILURES:
            self._failure = kind
        elif kind == zmq.EVENT_DISCONNECTED:
            self._disconnected(fd)
        self.connected = len(self._handshaken)

    def _disconnected(self, fd: int) -> None:
        """Count a closed connection by how its handshake ended (``_failure``: the event just
        before, if any)."""
        failure, self._failure = self._failure, None
        if fd in self._handshaken:
            self._handshaken.discard(fd)
            if failure is None:
                return  # a pusher that had shaken hands left
            if self._pending:  # the success taken for this one was another connection's
                self._handshaken.add(self._pending.popleft())
        elif fd in self._pending:
            self._pending.remove(fd)
        else:
            return
        if failure == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL and self._config.mode == "listen":
            self.closed_before_handshake += 1
            logger.debug("zmq source: a connection closed before its handshake (a port check?)")
        elif failure != zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            self.wrong_protocol += 1

    def _read_nng_stats(self) -> None:
        sock = self._source.socket
        if not isinstance(sock, pynng.Socket):
            return
        pipes = proto = 0
        root_ptr = pynng.ffi.new("nng_stat **")
        if pynng.lib.nng_stats_get(root_ptr) != 0:
            return
        root = root_ptr[0]
        try:
            found = [pynng.lib.nng_stat_find_listener(root, li.listener) for li in sock.listeners]
            found += [pynng.lib.nng_stat_find_dialer(root, d.dialer) for d in sock.dialers]
            for stat in found:
                values = _children(stat)
                pipes += values.get("pipes", 0)
                proto += values.get("proto", 0)
        finally:
            pynng.lib.nng_stats_free(root)
        self.connected, self.wrong_protocol = pipes, proto

    def _check(self) -> None:
        now = self._clock()
        if self.wrong_protocol and (
            self._protocol_logged_at is None
            or now - self._protocol_logged_at >= PROTOCOL_LOG_INTERVAL_S
        ):
            self._protocol_logged_at = now
            self.warning = wrong_protocol_fix(self._config)
            logger.error("%s (%d such connection(s) so far)", self.warning, self.wrong_protocol)
        if self.connected:
            self._no_peer_since = now
            self._warned_no_peer = False
            return
        waited = now - self._no_peer_since
        if waited >= self._config.no_peer_warning_s and not self._warned_no_peer:
            self._warned_no_peer = True
            if not self.wrong_protocol:
                self.warning = no_peer_fix(self._config, waited)
            logger.warning("%s", self.warning)

    def snapshot(self) -> dict[str, Any]:
        """``connected_peers``, ``wrong_protocol_connections``, ``closed_before_handshake``
        (zmq; None for nng, whose statistics lump such a connection with a pusher's ordinary
        close), ``last_message_age_s``, ``no_peer_for_s`` and the latest ``peer_warning`` (None
        when all is well)."""
        last = self._last_message_at()
        now = self._clock()
        return {
            "connected_peers": self.connected,
            "wrong_protocol_connections": self.wrong_protocol,
            "closed_before_handshake": (
                self.closed_before_handshake if isinstance(self._source, ZmqSource) else None
            ),
            "last_message_age_s": None if last is None else round(time.time() - last, 1),
            "no_peer_for_s": 0.0 if self.connected else round(now - self._no_peer_since, 1),
            "peer_warning": None if self.connected and not self.wrong_protocol else self.warning,
        }

    def close(self) -> None:
        """Stop watching; the zmq monitor socket is closed (before its context ends)."""
        self._closed = True
        if self._monitor is not None:
            sock = self._source.socket
            if sock is not None:
                with contextlib.suppress(zmq.ZMQError):
                    sock.disable_monitor()
            self._monitor.close(linger=0)
            self._monitor = None


def _children(stat: Any) -> dict[str, int]:
    """Numeric child statistics of an nng stat node, by name."""
    out: dict[str, int] = {}
    if stat == pynng.ffi.NULL:
        return out
    child = pynng.lib.nng_stat_child(stat)
    while child != pynng.ffi.NULL:
        if pynng.lib.nng_stat_type(child) != pynng.lib.NNG_STAT_STRING:
            name = pynng.ffi.string(pynng.lib.nng_stat_name(child)).decode()
            out[name] = int(pynng.lib.nng_stat_value(child))
        child = pynng.lib.nng_stat_next(child)
    return out
