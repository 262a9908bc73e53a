"""The kernel's TCP send-buffer limit: whether a pusher's last batch survives its exit.

A pusher that closes its socket right after its last send without lingering (LCLStreamer main:
zmq ``LINGER 0``) keeps only what its kernel has already taken: the socket library writes a
message into the TCP send buffer, and at close it drops the part still waiting for room there.
Linux grows that buffer up to the third field of ``net.ipv4.tcp_wmem`` (tcp(7)), and it also holds
bytes sent but not yet acknowledged, so a message survives the close reliably only when the limit
is above the message with room to spare. Twice the message is the margin asked for: over loopback
1.25 times sufficed and 1.0 did not (the real LCLStreamer: docs/benchmarks.md, "The producer
host's TCP send buffer"); over a network the buffer also holds what is on the wire. The receiver
cannot raise the sender's limit; it can say so.
"""

from __future__ import annotations

from pathlib import Path

TCP_WMEM = Path("/proc/sys/net/ipv4/tcp_wmem")
HEADROOM = 2
"""How many times a message the send-buffer limit should hold (see the module docstring)."""


def tcp_wmem_max(path: Path = TCP_WMEM) -> int | None:
    """The largest TCP send buffer, in bytes, Linux grows a socket to on this host.

    ``path`` holds ``min default max`` (tcp(7), ``tcp_wmem``). Returns None where it cannot be
    read or parsed (not Linux, a restricted /proc).
    """
    try:
        return int(path.read_text().split()[2])
    except (OSError, IndexError, ValueError):
        return None


def send_buffer_too_small(message_bytes: int, wmem_max: int | None) -> bool:
    """Whether a send buffer limited to ``wmem_max`` bytes may not take a whole message of
    ``message_bytes`` before a pusher closing right after its send drops the rest."""
    return wmem_max is not None and HEADROOM * message_bytes > wmem_max
