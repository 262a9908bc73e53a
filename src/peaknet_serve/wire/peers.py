"""Who may push: an allowlist of peer addresses for the nng and zmq sources.

nng: pynng calls a pre-pipe-connect callback with each new connection (pipe) and its
``remote_address``; a pipe from elsewhere is closed there, before any message is read. zmq: the
socket gets a ZAP domain, so libzmq asks a ZAP handler (RFC 27, https://rfc.zeromq.org/spec/27/)
on ``inproc://zeromq.zap.01`` about every new connection with its peer address; a refusal ("400")
ends the handshake. Non-IP transports (ipc, inproc) are local and let through.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Sequence

import pynng
import zmq
import zmq.asyncio

from peaknet_serve.errors import ConfigError

logger = logging.getLogger(__name__)

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
ZAP_DOMAIN = "peaknet-serve"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class PeerAllowlist:
    """IP addresses or networks (``10.0.0.0/16``, ``192.168.1.7``) allowed to connect.

    ``rejected`` counts connections closed because their peer was not allowed.
    """

    def __init__(self, allowed: Sequence[str]) -> None:
        try:
            self.networks: list[Network] = [ipaddress.ip_network(a, strict=False) for a in allowed]
        except ValueError as exc:
            raise ConfigError(f"source.allowed_peers: {exc}") from exc
        self.rejected = 0
        self._reported: set[str] = set()

    def allows(self, host: str) -> bool:
        """Whether ``host`` (an IP address; anything else is not allowed) may push."""
        try:
            ip = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.networks)

    def refuse(self, host: str, transport: str) -> None:
        """Count a refused connection; the first from each host is logged."""
        self.rejected += 1
        if host not in self._reported:
            self._reported.add(host)
            logger.warning(
                "%s source: closed a connection from %s, not in source.allowed_peers %s",
                transport,
                host,
                [str(n) for n in self.networks],
            )


def guard_nng(sock: pynng.Socket, allowlist: PeerAllowlist) -> None:
    """Close every new pipe of ``sock`` whose TCP peer ``allowlist`` does not allow."""

    def check(pipe: pynng.Pipe) -> None:
        address = pipe.remote_address
        if address.family_as_str not in ("inet", "inetv6"):
            return
        host = str(address).rsplit(":", 1)[0]
        if not allowlist.allows(host):
            allowlist.refuse(host, "nng")
            pipe.close()

    sock.add_pre_pipe_connect_cb(check)


class ZapGuard:
    """Answers libzmq's ZAP requests of one context with ``allowlist``'s verdict (a task).

    Request frames (RFC 27): version, request id, domain, address, identity, mechanism,
    credentials...; reply: version, request id, status code, status text, user id, metadata.
    ``start`` binds the handler: call it before the guarded socket binds, and give that socket
    ``zap_domain = ZAP_DOMAIN`` (libzmq asks no handler about NULL connections without one).
    """

    def __init__(self, allowlist: PeerAllowlist) -> None:
        self.allowlist = allowlist
        self._task: asyncio.Task[None] | None = None
        self._handler: zmq.asyncio.Socket | None = None

    def start(self, ctx: zmq.asyncio.Context) -> None:
        handler = ctx.socket(zmq.REP)
        handler.setsockopt(zmq.LINGER, 0)
        handler.bind(ZAP_ENDPOINT)
        self._handler = handler
        self._task = asyncio.get_running_loop().create_task(self._serve(handler), name="zap")

    async def _serve(self, handler: zmq.asyncio.Socket) -> None:
        while True:
            frames = await handler.recv_multipart()
            request_id = frames[1] if len(frames) > 1 else b""
            address = frames[3].decode(errors="replace") if len(frames) > 3 else "?"
            ok = frames[0] == b"1.0" and self.allowlist.allows(address)
            if not ok:
                self.allowlist.refuse(address, "zmq")
            status = (b"200", b"OK") if ok else (b"400", b"address not allowed")
            await handler.send_multipart([b"1.0", request_id, *status, b"", b""])

    def stop(self) -> None:
        """Cancel the handler and close its socket (the context cannot end while it is open)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._handler is not None:
            self._handler.close(linger=0)
            self._handler = None
