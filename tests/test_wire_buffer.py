"""The receive buffer between the socket and the ingress loop: bounded in messages and bytes,
stops reading (backpressure) only when full, keeps what it holds across ``close``."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading

import pytest

from peaknet_serve.pusher import push_frames
from peaknet_serve.wire import SourceConfig, decode_message, make_source
from peaknet_serve.wire.buffer import BufferedSource
from peaknet_serve.wire.tcp_send_buffer import TCP_WMEM, tcp_wmem_max
from tests.conftest import free_port

FRAMES, BATCH, SHAPE = 48, 4, (32, 32)
MESSAGES = FRAMES // BATCH


def start_pusher(port: int, transport: str) -> threading.Thread:
    thread = threading.Thread(
        target=push_frames,
        kwargs={
            "address": f"tcp://127.0.0.1:{port}",
            "transport": transport,
            "frames": FRAMES,
            "batch_size": BATCH,
            "shape": SHAPE,
            "peaks": 2,
            "linger_s": 3.0,
        },
        daemon=True,
    )
    thread.start()
    return thread


async def settle(source: BufferedSource, seconds: float = 1.0) -> None:
    """Let the reader run until the backlog has grown and stopped growing."""
    for _ in range(300):
        if source.backlog:
            break
        await asyncio.sleep(0.1)
    last, still = -1, 0.0
    while still < seconds:
        await asyncio.sleep(0.1)
        still = still + 0.1 if source.backlog == last else 0.0
        last = source.backlog


@pytest.mark.parametrize("transport", ["nng", "zmq"])
@pytest.mark.parametrize("limit", ["messages", "bytes"])
async def test_the_buffer_stops_at_its_limit_and_everything_arrives_once_drained(
    transport: str, limit: str
) -> None:
    port = free_port()
    config = SourceConfig(
        transport=transport,
        addresses=[f"tcp://127.0.0.1:{port}"],
        recv_timeout_s=0.2,
        recv_buffer_messages=1,
    )
    message_bytes = 32 * 32 * 4 * BATCH  # the image alone: a message is a bit larger
    source = BufferedSource(
        make_source(config),
        max_messages=3 if limit == "messages" else 1000,
        max_bytes=10**9 if limit == "messages" else 2 * message_bytes,
        recv_timeout_s=0.2,
    )
    await source.open()
    pusher = start_pusher(port, transport)
    await settle(source)
    assert source.full and source.times_full >= 1
    if limit == "messages":
        assert source.backlog == 3
    else:  # reading stops once the bytes reach the limit: one message past it at most
        assert source.snapshot()["bytes"] < 2 * message_bytes + 2 * message_bytes
        assert source.backlog == 2
    frames = 0
    while frames < FRAMES:
        payload = await source.receive()
        assert payload is not None, f"only {frames} of {FRAMES} frames arrived"
        frames += len(decode_message(payload))
        snapshot = source.snapshot()
        assert snapshot["messages"] <= snapshot["max_messages"]
    pusher.join(30)
    assert source.received == MESSAGES
    source.close()


async def test_close_keeps_what_is_buffered_then_receive_returns_none_at_once() -> None:
    port = free_port()
    config = SourceConfig(
        transport="zmq", addresses=[f"tcp://127.0.0.1:{port}"], recv_timeout_s=5.0
    )
    source = BufferedSource(
        make_source(config), max_messages=1000, max_bytes=10**9, recv_timeout_s=5.0
    )
    await source.open()
    pusher = start_pusher(port, "zmq")
    pusher.join(30)
    await settle(source)
    assert source.backlog == MESSAGES
    source.close()
    assert not source.is_open
    got = [await source.receive() for _ in range(MESSAGES)]
    assert sum(len(decode_message(p)) for p in got) == FRAMES
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await source.receive() is None
    assert loop.time() - started < 1.0  # not the 5 s receive timeout: a drain ends at once


@pytest.mark.parametrize("limit_in_images", [1.5, 4.0])
async def test_messages_too_large_for_the_hosts_send_buffer_limit_are_warned_about_once(
    limit_in_images: float, caplog: pytest.LogCaptureFixture
) -> None:
    """A pusher closing right after its send keeps what its kernel took: a TCP send-buffer limit
    under twice a message is logged once, with the sysctl to raise it, and shown in /status."""
    port = free_port()
    config = SourceConfig(transport="zmq", addresses=[f"tcp://127.0.0.1:{port}"])
    image_bytes = 32 * 32 * 4 * BATCH  # a message is a bit larger: its HDF5 container
    wmem_max = int(limit_in_images * image_bytes)
    source = BufferedSource(
        make_source(config),
        max_messages=1000,
        max_bytes=10**9,
        recv_timeout_s=5.0,
        wmem_max=wmem_max,
    )
    await source.open()
    pusher = start_pusher(port, "zmq")
    sizes = []
    for _ in range(MESSAGES):
        payload = await source.receive()
        assert payload is not None
        sizes.append(memoryview(payload).nbytes)
    pusher.join(30)
    source.close()
    snapshot = source.snapshot()
    assert snapshot["largest_message_bytes"] == max(sizes)
    assert snapshot["tcp_wmem_max"] == wmem_max
    warnings = [r.getMessage() for r in caplog.records if "net.ipv4.tcp_wmem" in r.getMessage()]
    if limit_in_images < 2:
        assert len(warnings) == 1
        assert f"net.ipv4.tcp_wmem, sysctl) to at least {2 * sizes[0]}," in warnings[0]
    else:
        assert warnings == []


def test_tcp_wmem_max_reads_the_third_field_and_none_when_unreadable(tmp_path) -> None:
    sysctl = tmp_path / "tcp_wmem"
    sysctl.write_text("4096\t16384\t4194304\n")
    assert tcp_wmem_max(sysctl) == 4194304
    sysctl.write_text("4096 16384\n")
    assert tcp_wmem_max(sysctl) is None
    assert tcp_wmem_max(tmp_path / "missing") is None
    host = tcp_wmem_max()
    assert host is None or host == int(TCP_WMEM.read_text().split()[2])


NICE_READER = """
import asyncio, json, os, sys, threading
from pathlib import Path
from peaknet_serve.pusher import push_frames
from peaknet_serve.wire import SourceConfig, decode_message
from peaknet_serve.wire.buffer import buffered_source

def threads():  # native id -> (name, niceness: field 19 of stat, proc(5))
    out = {}
    for task in Path("/proc/self/task").iterdir():
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        out[int(task.name)] = ((task / "comm").read_text().strip(), int(fields[16]))
    return out

async def main(transport, port, wanted):
    before = threads()
    source = buffered_source(SourceConfig(
        transport=transport, addresses=[f"tcp://127.0.0.1:{port}"], recv_timeout_s=0.2,
        reader_niceness=wanted))
    await source.open()
    started = {tid: t for tid, t in threads().items() if tid not in before}
    reader = next(t.native_id for t in threading.enumerate() if t.name == "socket-reader")
    pusher = threading.Thread(target=push_frames, kwargs=dict(
        address=f"tcp://127.0.0.1:{port}", transport=transport, frames=8, batch_size=4,
        shape=(32, 32), peaks=2, linger_s=3.0), daemon=True)
    pusher.start()
    frames = 0
    while frames < 8 and (payload := await source.receive()) is not None:
        frames += len(decode_message(payload))
    source.close()
    print(json.dumps({
        "reader": started.pop(reader)[1],
        "started": sorted(started.values()),
        "loop": os.getpriority(os.PRIO_PROCESS, threading.get_native_id()),
        "status": source.snapshot()["reader_niceness"], "frames": frames}))

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"""


@pytest.mark.parametrize("transport", ["nng", "zmq"])
def test_the_reader_and_the_threads_it_starts_run_at_the_configured_niceness(
    transport: str,
) -> None:
    """Ray starts workers at niceness 15; the reader is given its own so that it gets a core
    before the model and the writers, and so are the socket library's I/O threads, which it
    starts (nng's pool is the process's: a fresh process shows it). A niceness above the
    current one needs no privilege."""
    current = os.getpriority(os.PRIO_PROCESS, 0)
    wanted = min(current + 3, 19)
    done = subprocess.run(
        [sys.executable, "-c", NICE_READER, transport, str(free_port()), str(wanted)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    library = "nng:" if transport == "nng" else "ZMQbg/"
    assert any(name.startswith(library) for name, _ in got["started"]), got
    assert got["reader"] == wanted
    assert {nice for _, nice in got["started"]} == {wanted}, got
    assert got["loop"] == current and got["status"] == wanted
    assert got["frames"] == 8


UNPRIVILEGED_READER = """
import logging, os, resource, threading
from peaknet_serve.wire.buffer import set_thread_niceness
logging.basicConfig()
os.nice(5)
resource.setrlimit(resource.RLIMIT_NICE, (0, 0))
if os.geteuid() == 0:
    os.setuid(65534)  # drops CAP_SYS_NICE
got = []
thread = threading.Thread(target=lambda: got.append(
    (set_thread_niceness(0), os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))))
thread.start()
thread.join()
print(*got[0])
"""


def test_a_reader_refused_a_lower_niceness_keeps_its_own_and_says_how_to_grant_it() -> None:
    done = subprocess.run(
        [sys.executable, "-c", UNPRIVILEGED_READER], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    kept = str(min(os.getpriority(os.PRIO_PROCESS, 0) + 5, 19))  # nice(2) adds to the current
    assert done.stdout.split() == [kept, kept]
    assert "source.reader_niceness=0 needs CAP_SYS_NICE or RLIMIT_NICE (ulimit -e 20)" in (
        done.stderr
    )
