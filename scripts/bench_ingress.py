"""One ingress's path without the model: socket -> receive buffer -> decode -> screen -> ray.put.

A pusher process sends one encoded batch of synthetic frames over and over on 127.0.0.1; this
process receives them as the Ingress deployment does (``wire.buffered_source``, dial mode),
decodes them, screens their pixels and puts them into a local Ray object store. Prints frames/s
and the CPU time of this process per frame (every thread: the socket library's, the reader's,
the decoder's and Ray's copy into the store), per transport. The first messages are not timed.

    PYTHONPATH=src python scripts/bench_ingress.py      # nng and zmq, 16 x 1920x1920 float32
    PYTHONPATH=src python scripts/bench_ingress.py --transports nng --messages 60

Needs Ray, pynng and pyzmq (no GPU).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import platform
import resource
import socket
import time

import numpy as np

from peaknet_serve.synthetic import SyntheticFrames
from peaknet_serve.wire import encode_batch

UNTIMED = 4
"""Messages received before the clock starts (connection, first allocations)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transports", default="nng,zmq")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=1920)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument(
        "--messages", type=int, default=40, help="timed messages per transport"
    )
    args = parser.parse_args()
    if args.messages < 1:
        parser.error(f"--messages {args.messages}: at least 1")
    logging.basicConfig(level=logging.ERROR)  # the loopback pusher's TCP send-buffer warning
    payload = _payload(args.batch, args.size, args.dtype)
    print(
        f"{args.batch} x {args.size}x{args.size} {args.dtype} per message "
        f"({len(payload) / 1e6:.0f} MB); {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs"
    )
    print(f"{'transport':9} {'frames/s':>9} {'CPU ms/frame':>13}")
    for transport in args.transports.split(","):
        rate, cpu_ms = _run(transport, payload, args.batch, args.messages)
        print(f"{transport:9} {rate:9.1f} {cpu_ms:13.2f}")


def _payload(batch: int, size: int, dtype: str) -> bytes:
    frames = SyntheticFrames(shape=(size, size), peaks=30, hit_fraction=1.0, dtype=dtype, cycle=8)
    images, truth = frames.batch(0, batch)
    fields = {
        "/data/data": images[:, None],
        "/data/wavelength": np.array([t.wavelength_nm for t in truth]),
        "/data/timestamp": np.array([t.timestamp for t in truth], dtype=np.uint64),
    }
    return bytes(encode_batch(fields, fmt="hdf5", compression="none"))


def _run(transport: str, payload: bytes, batch: int, messages: int) -> tuple[float, float]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
    pusher = multiprocessing.get_context("spawn").Process(
        target=_push, args=(transport, address, payload, messages + UNTIMED)
    )
    pusher.start()
    try:
        return asyncio.run(_receive(transport, address, batch, messages))
    finally:
        pusher.terminate()
        pusher.join()


def _push(transport: str, address: str, payload: bytes, messages: int) -> None:
    if transport == "nng":
        import pynng

        with pynng.Push0(listen=address, send_buffer_size=2) as push:
            for _ in range(messages):
                push.send(payload)
            time.sleep(60)  # until terminated: nng drops what is queued at close
    else:
        import zmq

        with zmq.Context() as context, context.socket(zmq.PUSH) as push:
            push.bind(address)
            for _ in range(messages):
                push.send(payload, copy=False)
            time.sleep(60)


async def _receive(transport: str, address: str, batch: int, messages: int) -> tuple[float, float]:
    import ray

    from peaknet_serve.peaks import PeaksConfig, PixelScreen
    from peaknet_serve.service.screen import screen_batch
    from peaknet_serve.wire import DecodeConfig, SourceConfig, decode_message
    from peaknet_serve.wire.buffer import buffered_source

    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    source = buffered_source(SourceConfig(transport=transport, mode="dial", addresses=[address]))
    await source.open()
    screen = PixelScreen(PeaksConfig())
    held: list[ray.ObjectRef] = []  # a few batches in the store, as in flight at the ingress
    started = cpu_started = 0.0
    try:
        for index in range(messages + UNTIMED):
            if index == UNTIMED:
                started, cpu_started = time.perf_counter(), _cpu_s()
            payload = None
            while payload is None:
                payload = await source.receive()
            decoded = await asyncio.to_thread(decode_message, payload, DecodeConfig())
            del payload
            screened = await asyncio.to_thread(screen_batch, decoded, screen)
            held = [*held[-3:], ray.put(screened.kept)]
        seconds, cpu_s = time.perf_counter() - started, _cpu_s() - cpu_started
    finally:
        source.close()
        ray.shutdown()
    frames = messages * batch
    return frames / seconds, cpu_s / frames * 1e3


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
