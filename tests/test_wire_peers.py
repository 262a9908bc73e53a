"""Who may push: ``source.allowed_peers`` closes and counts connections from other addresses, on
real sockets from 127.0.0.x peers (zmq dials from a chosen source address; nng from 127.0.0.1);
and the peer watch counts a refused pusher, a port check and a wrong-protocol peer apart."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time

import pynng
import pytest
import zmq

from peaknet_serve.errors import ConfigError
from peaknet_serve.wire import SourceConfig, make_source
from peaknet_serve.wire.buffer import buffered_source
from peaknet_serve.wire.peers import PeerAllowlist
from tests.conftest import free_port


def zmq_push(port: int, source_ip: str, n: int) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDTIMEO, 300)
    sock.connect(f"tcp://{source_ip}:0;127.0.0.1:{port}")  # libzmq's source-address syntax
    for _ in range(n):
        with contextlib.suppress(zmq.Again):  # nobody took it: the connection was refused
            sock.send(b"frames")
        time.sleep(0.05)
    time.sleep(1.0)
    sock.close()
    ctx.term()


def nng_push(port: int, n: int) -> None:
    with pynng.Push0(dial=f"tcp://127.0.0.1:{port}", send_timeout=300) as sock:
        for _ in range(n):
            with contextlib.suppress(pynng.Timeout):
                sock.send(b"frames")
        time.sleep(1.0)


async def pull(transport: str, allowed: list[str], push) -> tuple[int, int]:
    """Messages received and connections refused while ``push(port)`` runs in a thread."""
    port = free_port()
    source = make_source(
        SourceConfig(
            transport=transport,
            addresses=[f"tcp://127.0.0.1:{port}"],
            recv_timeout_s=0.2,
            allowed_peers=allowed,
        )
    )
    await source.open()
    thread = threading.Thread(target=push, args=(port,), daemon=True)
    thread.start()
    received = 0
    try:
        while thread.is_alive():
            received += await source.receive() is not None
        while await source.receive() is not None:
            received += 1
    finally:
        source.close()
    return received, source.peers.rejected


@pytest.mark.parametrize(
    ("allowed", "peer", "expect_received"),
    [
        (["127.0.0.2"], "127.0.0.2", 3),
        (["127.0.0.2"], "127.0.0.3", 0),
        (["127.0.0.0/30"], "127.0.0.3", 3),
        ([], "127.0.0.3", 3),
    ],
)
async def test_zmq_takes_messages_only_from_allowed_peers(
    allowed: list[str], peer: str, expect_received: int
) -> None:
    received, rejected = await pull("zmq", allowed, lambda port: zmq_push(port, peer, 3))
    assert received == expect_received
    assert (rejected > 0) == (expect_received == 0)


@pytest.mark.parametrize(
    ("allowed", "expect_received"),
    [(["127.0.0.1"], 3), (["127.0.0.2/32"], 0), (["10.0.0.0/8", "127.0.0.0/8"], 3), ([], 3)],
)
async def test_nng_closes_pipes_from_peers_not_allowed(
    allowed: list[str], expect_received: int
) -> None:
    received, rejected = await pull("nng", allowed, lambda port: nng_push(port, 3))
    assert received == expect_received
    assert (rejected > 0) == (expect_received == 0)


def test_allowlist_reads_addresses_networks_and_mapped_ipv6() -> None:
    allowlist = PeerAllowlist(["172.21.0.0/16", "::1"])
    assert allowlist.allows("172.21.4.9") and allowlist.allows("::ffff:172.21.0.1")
    assert allowlist.allows("[::1]") and not allowlist.allows("172.22.0.1")
    assert not allowlist.allows("not-an-ip")
    with pytest.raises(ConfigError, match="allowed_peers"):
        PeerAllowlist(["172.21.0.300"])


def test_event_loop_closes_cleanly_after_a_guarded_zmq_source() -> None:
    """The ZAP handler's socket is closed with the source, so the context can end."""

    async def open_and_close() -> None:
        source = make_source(
            SourceConfig(
                transport="zmq",
                addresses=[f"tcp://127.0.0.1:{free_port()}"],
                allowed_peers=["127.0.0.1"],
            )
        )
        await source.open()
        source.close()

    asyncio.run(asyncio.wait_for(open_and_close(), 10))


async def watch_while(config: SourceConfig, peer, caplog) -> dict:
    """The peer watch's snapshot once ``peer(port)`` has run in a thread and the monitor has
    caught up; error logs of the watch land in ``caplog``."""
    port = int(config.addresses[0].rsplit(":", 1)[1])
    source = buffered_source(config)
    with caplog.at_level(logging.DEBUG, logger="peaknet_serve.wire.peer_watch"):
        await source.open()
        try:
            await asyncio.to_thread(peer, port)
            await asyncio.sleep(1.5)  # the watch polls every 0.5 s
            return source.watch.snapshot() | {"peers_rejected": source.peers.rejected}
        finally:
            source.close()


def zmq_listen(allowed: list[str]) -> SourceConfig:
    return SourceConfig(
        transport="zmq",
        addresses=[f"tcp://127.0.0.1:{free_port()}"],
        recv_timeout_s=0.2,
        allowed_peers=allowed,
    )


def port_checks(port: int, n: int = 3) -> None:
    """Connect and close without a byte, as ``nc -z`` or a load balancer's TCP check does."""
    for _ in range(n):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        time.sleep(0.1)


def nng_dialling(port: int) -> None:
    """An nng pusher (LCLStreamer 0.3's default) dialling for a second (its dial fails the SP
    handshake, so it does not block)."""
    with pynng.Push0(dial=f"tcp://127.0.0.1:{port}", block_on_dial=False):
        time.sleep(1.0)


def protocol_errors(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_zmq_pusher_refused_by_the_allowlist_is_not_a_wrong_protocol(caplog) -> None:
    status = await watch_while(
        zmq_listen(["127.0.0.3"]), lambda port: zmq_push(port, "127.0.0.2", 3), caplog
    )
    assert status["peers_rejected"] >= 1
    assert status["wrong_protocol_connections"] == 0
    assert status["closed_before_handshake"] == 0 and status["peer_warning"] is None
    assert not protocol_errors(caplog)


@pytest.mark.parametrize("allowed", [[], ["127.0.0.1"]])
async def test_a_zmq_port_check_counts_once_and_not_as_a_wrong_protocol(
    allowed: list[str], caplog
) -> None:
    status = await watch_while(zmq_listen(allowed), port_checks, caplog)
    assert status["wrong_protocol_connections"] == 0 and status["peers_rejected"] == 0
    assert status["closed_before_handshake"] == 3
    assert status["peer_warning"] is None and not protocol_errors(caplog)


async def test_an_nng_pusher_into_zmq_is_a_wrong_protocol_and_not_a_port_check(caplog) -> None:
    status = await watch_while(zmq_listen([]), nng_dialling, caplog)
    assert status["wrong_protocol_connections"] >= 1
    assert status["closed_before_handshake"] == 0
    assert "source.transport: nng" in status["peer_warning"]
    assert any("source.transport: nng" in m for m in protocol_errors(caplog))


async def test_an_nng_port_check_is_not_a_wrong_protocol(caplog) -> None:
    config = SourceConfig(
        transport="nng", addresses=[f"tcp://127.0.0.1:{free_port()}"], recv_timeout_s=0.2
    )
    status = await watch_while(config, port_checks, caplog)
    assert status["wrong_protocol_connections"] == 0 and status["peer_warning"] is None
    assert status["closed_before_handshake"] is None  # nng cannot tell it from a close
    assert not protocol_errors(caplog)


async def test_a_port_check_open_while_a_pusher_shakes_hands_leaves_the_pusher_counted() -> None:
    """libzmq's handshake events name no connection: the success of a pusher accepted after a
    port check is first taken for the port check's; its close (a failed handshake) sets that
    right, so the pusher stays connected and the port check counts once."""
    config = zmq_listen([])
    port = int(config.addresses[0].rsplit(":", 1)[1])
    source = buffered_source(config)
    await source.open()
    check = socket.create_connection(("127.0.0.1", port), timeout=5)  # accepted first, silent
    await asyncio.sleep(0.5)
    ctx = zmq.Context()
    pusher = ctx.socket(zmq.PUSH)
    pusher.setsockopt(zmq.LINGER, 0)
    pusher.connect(config.addresses[0])
    try:
        pusher.send(b"frames")
        assert await source.receive() == b"frames"
        await asyncio.sleep(1.0)
        check.close()
        await asyncio.sleep(1.5)
        status = source.watch.snapshot()
        assert status["connected_peers"] == 1, status
        assert status["closed_before_handshake"] == 1 and status["wrong_protocol_connections"] == 0
    finally:
        pusher.close()
        ctx.term()
        source.close()
