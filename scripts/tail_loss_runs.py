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
        sock = pynng.Pull0(listen=address, recv_buffer_size=min(queue, 8192))

    async def receive() -> bool:
        return receive_one(sock, transport)

    clean_runs = asyncio.run(lost_batches(args, lclstreamer, transport, receive))
    sock.close()
    sys.stdout.write(
        f"LCLStreamer {args.version} over {transport} into a bare socket (queue {queue}): "
        f"{clean_runs} of {args.runs} runs lost 0 frames ({args.batch_size} x "
        f"{args.shape[0]}x{args.shape[1]} float32 per batch; producer linger: "
        f"{args.producer_linger_ms or 0} ms)\n"
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

    async def receive() -> bool:
        message = await source.receive()
        if message is None:
            return False
        decode_message(message, decode)
        return True

    clean_runs = await lost_batches(args, lclstreamer, transport, receive)
    source.close()
    sys.stdout.write(
        f"LCLStreamer {args.version} over {transport} into the service's receive path without "
        f"Ray: {clean_runs} of {args.runs} runs lost 0 frames ({args.batch_size} x "
        f"{args.shape[0]}x{args.shape[1]} float32 per batch; source settings changed: "
        f"{args.source or 'none'}; producer linger: {args.producer_linger_ms or 0} ms)\n"
    )
    return 0


async def lost_batches(
    args: argparse.Namespace,
    lclstreamer: Path,
    transport: str,
    receive: Callable[[], Awaitable[bool]],
) -> int:
    """Run LCLStreamer ``--runs`` times into ``receive`` (True: one message taken; False: none
    within its timeout), print each run's lost batches; returns the runs that lost none."""
    rng = random.Random(args.seed)
    clean_runs = 0
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
            received, quiet_since = 0, None
            while quiet_since is None or time.monotonic() - quiet_since < 3.0:
                if await receive():
                    received, quiet_since = received + 1, None
                elif producer.poll() is not None and quiet_since is None:
                    quiet_since = time.monotonic()
            lost = batches - received
            clean_runs += lost == 0
            sys.stdout.write(f"run {run + 1}: {batches} batches, exit {producer.returncode}; ")
            sys.stdout.write(f"lost {lost} batches ({lost * args.batch_size} frames)\n")
            sys.stdout.flush()
    return clean_runs


def receive_one(sock: object, transport: str) -> bool:
    """One message within 0.2 s, or False."""
    import pynng

    if transport == "zmq":
        if not sock.poll(200):
            return False
        sock.recv(copy=False)
        return True
    try:
        sock.recv_timeout = 200
        sock.recv()
    except pynng.Timeout:
        return False
    return True


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
