"""LCLStreamer runs into a receiver without the service, for ``bench_tail_loss.py --bare``.

Each run starts LCLStreamer (``InternalEventSource``, random float32 frames, exiting right after
its last send) and counts the batches the receiver got: a bare PULL socket (the producer's own
loss), or the service's own receive path without Ray (``--buffered``: what the service process
adds).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:
    from peaknet_serve.wire.config import SourceConfig

ROOT = Path(__file__).resolve().parent.parent


def shipped_service_args() -> dict:
    """The application's args in the shipped serve_config.yaml (its sections by name)."""
    return yaml.safe_load((ROOT / "serve_config.yaml").read_text())["applications"][0]["args"]


def source_config(transport: str, port: int, settings: dict[str, object]) -> SourceConfig:
    """serve_config.yaml's source section with this run's transport and 127.0.0.1 address and
    ``settings`` (``--set``) over it; raises pydantic's ``ValidationError`` for a bad one."""
    from peaknet_serve.wire.config import SourceConfig

    address = {"transport": transport, "addresses": [f"tcp://127.0.0.1:{port}"]}
    return SourceConfig.model_validate(
        shipped_service_args().get("source", {}) | address | settings
    )


def bare_socket(args: argparse.Namespace, lclstreamer: Path, transport: str, queue: int) -> int:
    """LCLStreamer into a socket that only receives: the producer's own loss."""
    import pynng
    import zmq

    address = f"tcp://127.0.0.1:{args.port}"
    if transport == "zmq":
        ctx = zmq.Context()
        sock = ctx.socket(zmq.PULL)
        sock.setsockopt(zmq.RCVHWM, queue)
        sock.bind(address)
    else:
        sock = pynng.Pull0(listen=address, recv_buffer_size=min(queue, 8192), recv_max_size=0)

    async def receive() -> int:
        return receive_one(sock, transport)

    clean_runs, largest = asyncio.run(lost_batches(args, lclstreamer, transport, receive))
    sock.close()
    sys.stdout.write(
        f"LCLStreamer {args.version} over {transport} into a bare socket (queue {queue}): "
        f"{clean_runs} of {args.runs} runs lost 0 frames ({args.batch_size} x "
        f"{args.shape[0]}x{args.shape[1]} float32 per batch; producer linger: "
        f"{args.producer_linger_ms or 0} ms; {send_buffer_note(largest)})\n"
    )
    return 0


async def service_receive_path(args: argparse.Namespace, lclstreamer: Path, transport: str) -> int:
    """LCLStreamer into the service's receive path, without Ray: the receiver's own loss."""
    from peaknet_serve.wire.buffer import buffered_source
    from peaknet_serve.wire.config import DecodeConfig
    from peaknet_serve.wire.decode import decode_message

    config = source_config(transport, args.port, args.source)
    decode = DecodeConfig.model_validate(shipped_service_args().get("decode", {}))
    source = buffered_source(config.model_copy(update={"recv_timeout_s": 0.2}))
    await source.open()

    async def receive() -> int:
        message = await source.receive()
        if message is None:
            return 0
        decode_message(message, decode)
        return memoryview(message).nbytes

    clean_runs, largest = await lost_batches(args, lclstreamer, transport, receive)
    source.close()
    sys.stdout.write(
        f"LCLStreamer {args.version} over {transport} into the service's receive path without "
        f"Ray: {clean_runs} of {args.runs} runs lost 0 frames ({args.batch_size} x "
        f"{args.shape[0]}x{args.shape[1]} float32 per batch; source settings changed: "
        f"{args.source or 'none'}; producer linger: {args.producer_linger_ms or 0} ms; "
        f"{send_buffer_note(largest)})\n"
    )
    return 0


async def lost_batches(
    args: argparse.Namespace,
    lclstreamer: Path,
    transport: str,
    receive: Callable[[], Awaitable[int]],
    stuck_s: float = 60.0,
) -> tuple[int, int]:
    """Run LCLStreamer ``--runs`` times into ``receive`` (a message's size in bytes; 0: none
    within its timeout), print each run's lost batches; returns the runs that lost none and the
    largest message. A producer that neither sends nor exits for ``stuck_s`` is killed, and its
    run counts as lossy."""
    rng = random.Random(args.seed)
    clean_runs = largest = 0
    with tempfile.TemporaryDirectory(prefix="peaknet-tail-loss-") as workdir:
        for run in range(args.runs):
            batches = rng.randint(args.min_batches, args.max_batches)
            config = Path(workdir) / f"run{run}.yaml"
            config.write_text(
                yaml.safe_dump(producer_config(args, transport, batches * args.batch_size))
            )
            producer = subprocess.Popen(
                [str(lclstreamer), "--config", str(config)],
                cwd=workdir,
                env=args.producer_env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            received, quiet_since, last_message = 0, None, time.monotonic()
            while quiet_since is None or time.monotonic() - quiet_since < 3.0:
                if size := await receive():
                    received, quiet_since, last_message = received + 1, None, time.monotonic()
                    largest = max(largest, size)
                elif producer.poll() is not None and quiet_since is None:
                    quiet_since = time.monotonic()
                elif quiet_since is None and time.monotonic() - last_message > stuck_s:
                    producer.kill()
                    producer.wait()
                    sys.stdout.write(f"(producer silent {stuck_s:.0f} s, killed) ")
                    quiet_since = time.monotonic()
            lost = batches - received
            clean_runs += lost == 0
            sys.stdout.write(f"run {run + 1}: {batches} batches, exit {producer.returncode}; ")
            sys.stdout.write(f"lost {lost} batches ({lost * args.batch_size} frames)\n")
            sys.stdout.flush()
    return clean_runs, largest


def receive_one(sock: object, transport: str) -> int:
    """The size in bytes of one message within 0.2 s, or 0."""
    import pynng

    if transport == "zmq":
        if not sock.poll(200):
            return 0
        return len(sock.recv(copy=False))
    try:
        sock.recv_timeout = 200
        return len(sock.recv())
    except pynng.Timeout:
        return 0


def send_buffer_note(largest_message: int) -> str:
    """The largest message against this host's TCP send-buffer limit (``wire.tcp_send_buffer``):
    what decides whether a producer closing with LINGER 0 keeps its last batch."""
    from peaknet_serve.wire.tcp_send_buffer import tcp_wmem_max

    wmem_max = tcp_wmem_max()
    limit = "unknown" if wmem_max is None else f"{wmem_max / 1e6:.1f} MB"
    return (
        f"largest message {largest_message / 1e6:.1f} MB, this host's net.ipv4.tcp_wmem max "
        f"{limit}"
    )


def producer_config(args: argparse.Namespace, transport: str, events: int) -> dict[str, object]:
    return {
        "source_identifier": "bench-tail-loss",
        "skip_incomplete_events": False,
        "event_source": {"type": "InternalEventSource", "number_of_events_to_generate": events},
        "data_sources": {
            "detector_data": {
                "type": "GenericRandomNumpyArray",
                "array_shape": f"{args.shape[0]},{args.shape[1]}",
                "array_dtype": "float32",
            },
            "photon_wavelength": {"type": "FloatValue", "value": 0.124},
        },
        "processing_pipeline": {"type": "BatchProcessingPipeline", "batch_size": args.batch_size},
        "data_serializer": {
            "type": "HDF5BinarySerializer",
            "fields": {"detector_data": "/data/data", "photon_wavelength": "/data/wavelength"},
        },
        "data_handlers": [
            {
                "type": "BinaryDataStreamingDataHandler",
                "urls": [f"tcp://127.0.0.1:{args.port}"],
                "role": "client",
                "library": transport,
            }
        ],
    }
