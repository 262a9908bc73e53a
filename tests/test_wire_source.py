"""Real sockets on 127.0.0.1: the pusher -> FrameSource -> decoder path, nng and zmq."""

from __future__ import annotations

import asyncio
import functools
import gc
import socket
import weakref

import numpy as np
import pynng
import pytest

from peaknet_serve.errors import ConfigError, DecodeError
from peaknet_serve.pusher import PushSummary, push_frames
from peaknet_serve.synthetic import SyntheticFrames
from peaknet_serve.wire import (
    HDF5_COMPRESSIONS,
    LOSSLESS,
    DecodeConfig,
    FrameBatch,
    FrameSource,
    Quarantine,
    SourceConfig,
    decode_message,
    make_source,
)
from peaknet_serve.wire.source import message_body

SHAPE = (32, 48)
TRANSPORTS = ["nng", "zmq"]
MODES = ["listen", "dial"]


def free_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def source_config(address: str, transport: str, mode: str, **kw) -> SourceConfig:
    return SourceConfig(
        transport=transport, mode=mode, addresses=[address], **({"recv_timeout_s": 0.1} | kw)
    )


def push_kwargs(address: str, transport: str, source_mode: str, **kw) -> dict:
    """The pusher takes the opposite role to the source."""
    base = dict(
        address=address,
        transport=transport,
        mode="dial" if source_mode == "listen" else "listen",
        shape=SHAPE,
        frames=10,
        batch_size=4,
        peaks=3,
        hit_fraction=0.5,
        connect_timeout_s=10.0,
        linger_s=0.2,
    )
    return base | kw


async def collect(
    source: FrameSource, frames: int, *, config: DecodeConfig | None = None, timeout: float = 15
) -> list[FrameBatch]:
    batches: list[FrameBatch] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while sum(len(b) for b in batches) < frames:
        assert loop.time() < deadline, f"got {sum(len(b) for b in batches)} of {frames} frames"
        payload = await source.receive()
        if payload is not None:
            batches.append(decode_message(payload, config))
    return batches


def assert_matches(batches: list[FrameBatch], summary: PushSummary, *, exact: bool = True) -> None:
    """Every pushed frame arrived once, bit-identical, with its own timestamp and energy."""
    images = np.concatenate([b.images for b in batches])
    stamps = np.concatenate([b.metadata["timestamp"] for b in batches])
    energy = np.concatenate([b.metadata["photon_energy_ev"] for b in batches])
    truth = {t.timestamp: t for t in summary.truth}
    assert sorted(stamps.tolist()) == sorted(truth)
    generator = SyntheticFrames(shape=SHAPE, peaks=3, hit_fraction=0.5, seed=0)
    for image, stamp, ev in zip(images, stamps, energy, strict=True):
        t = truth[int(stamp)]
        expected, _ = generator.frame(t.event)
        if exact:
            np.testing.assert_array_equal(image, expected)
        else:
            np.testing.assert_allclose(image, expected, atol=1.0)
        assert ev == pytest.approx(1239.84198 / t.wavelength_nm)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("fmt", "compression"), [("hdf5", "none"), ("npz", "deflate")])
async def test_push_receive_decode_roundtrip(
    transport: str, mode: str, fmt: str, compression: str
) -> None:
    address = free_address()
    source = make_source(source_config(address, transport, mode))
    assert isinstance(source, FrameSource)
    assert not source.is_open
    await source.open()
    assert source.is_open
    try:
        pushing = asyncio.to_thread(
            push_frames, **push_kwargs(address, transport, mode, fmt=fmt, compression=compression)
        )
        summary, batches = await asyncio.gather(pushing, collect(source, 10))
    finally:
        source.close()
    assert not source.is_open
    assert [len(b) for b in batches] == [4, 4, 2]  # the last batch is partial
    assert summary.messages == 3 and source.received == 3
    assert source.bytes_received == summary.bytes_sent
    assert_matches(batches, summary)


@pytest.mark.parametrize("compression", HDF5_COMPRESSIONS)
async def test_every_hdf5_compression_over_a_socket(compression: str) -> None:
    transport = "zmq" if HDF5_COMPRESSIONS.index(compression) % 2 else "nng"
    address = free_address()
    source = make_source(source_config(address, transport, "listen"))
    await source.open()
    try:
        kwargs = push_kwargs(address, transport, "listen", compression=compression, frames=5)
        summary, batches = await asyncio.gather(
            asyncio.to_thread(push_frames, **kwargs), collect(source, 5)
        )
    finally:
        source.close()
    assert_matches(batches, summary, exact=compression in LOSSLESS)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_several_pushers_into_one_listener(transport: str) -> None:
    address = free_address()
    source = make_source(source_config(address, transport, "listen"))
    await source.open()
    try:
        pushers = [
            asyncio.to_thread(push_frames, **push_kwargs(address, transport, "listen", rank=r))
            for r in range(3)
        ]
        *summaries, batches = await asyncio.gather(*pushers, collect(source, 30))
    finally:
        source.close()
    merged = PushSummary(
        frames=30,
        messages=9,
        bytes_sent=0,
        seconds=1,
        first_event=0,
        truth=[t for s in summaries for t in s.truth],
    )
    assert len({t.event for t in merged.truth}) == 30
    assert_matches(batches, merged)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("mode", MODES)
async def test_source_first_then_pusher_restarts_mid_stream(transport: str, mode: str) -> None:
    """The puller is up before any pusher; a pusher stops and a new one comes on the same port."""
    address = free_address()
    source = make_source(source_config(address, transport, mode))
    await source.open()
    try:
        assert await source.receive() is None  # a timeout just means "no data yet"
        first = await asyncio.to_thread(
            push_frames, **push_kwargs(address, transport, mode, frames=8, rank=0)
        )
        got_first = await collect(source, 8)
        assert await source.receive() is None
        second = await asyncio.to_thread(
            push_frames, **push_kwargs(address, transport, mode, frames=6, rank=1)
        )
        got_second = await collect(source, 6)
    finally:
        source.close()
    assert_matches(got_first, first)
    assert_matches(got_second, second)


async def test_pusher_in_listen_mode_started_before_dialling_source() -> None:
    address = free_address()
    pushing = asyncio.create_task(
        asyncio.to_thread(push_frames, **push_kwargs(address, "nng", "dial", frames=4))
    )
    await asyncio.sleep(0.3)
    source = make_source(source_config(address, "nng", "dial"))
    await source.open()
    try:
        batches = await collect(source, 4)
    finally:
        source.close()
    assert_matches(batches, await pushing)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_bad_and_oversize_messages_are_counted_and_the_stream_goes_on(
    transport: str, tmp_path
) -> None:
    address = free_address()
    source = make_source(source_config(address, transport, "listen"))
    await source.open()
    config = DecodeConfig(max_message_bytes=50_000)
    quarantine = Quarantine(tmp_path)
    errors: list[str] = []
    try:
        # garbage first, then an oversize batch, then a good one
        raw = pynng.Push0() if transport == "nng" else None
        if raw is not None:
            raw.dial(address, block=True)
            raw.send(b"garbage that is not a payload")
            raw.close()
            await asyncio.sleep(0.1)
        big = await asyncio.to_thread(
            push_frames, **push_kwargs(address, transport, "listen", shape=(128, 128), frames=4)
        )
        small = await asyncio.to_thread(
            push_frames, **push_kwargs(address, transport, "listen", frames=2, rank=1)
        )
        good: list[FrameBatch] = []
        while sum(len(b) for b in good) < 2:
            payload = await source.receive()
            if payload is None:
                continue
            try:
                good.append(decode_message(payload, config))
            except DecodeError as exc:
                errors.append(exc.reason)
                quarantine.save(payload, exc)
    finally:
        source.close()
    expected = (["unknown_format"] if transport == "nng" else []) + ["too_large"]
    assert errors == expected
    assert big.messages == 1
    assert quarantine.saved == len(expected)
    assert_matches(good, small)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_second_listener_on_a_bound_port_is_a_config_error(transport: str) -> None:
    address = free_address()
    first = make_source(source_config(address, transport, "listen"))
    await first.open()
    second = make_source(source_config(address, transport, "listen"))
    try:
        with pytest.raises(ConfigError, match="dial"):
            await second.open()
        assert not second.is_open
    finally:
        first.close()
        second.close()
    assert await first.receive() is None  # receive after close: no data, no crash


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_receive_never_blocks_the_event_loop(transport: str) -> None:
    source = make_source(source_config(free_address(), transport, "listen", recv_timeout_s=0.5))
    await source.open()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        for _ in range(20):
            await asyncio.sleep(0.01)
            ticks += 1

    try:
        payload, _ = await asyncio.gather(source.receive(), ticker())
    finally:
        source.close()
    assert payload is None
    assert ticks == 20


def test_multiple_addresses_are_all_served() -> None:
    addresses = [free_address(), free_address()]

    async def scenario() -> tuple[list[FrameBatch], list[PushSummary]]:
        config = SourceConfig(transport="zmq", addresses=addresses, recv_timeout_s=0.1)
        source = make_source(config)
        await source.open()
        try:
            runs = [
                asyncio.to_thread(
                    functools.partial(
                        push_frames, **push_kwargs(a, "zmq", "listen", frames=4, rank=i)
                    )
                )
                for i, a in enumerate(addresses)
            ]
            *summaries, batches = await asyncio.gather(*runs, collect(source, 8))
        finally:
            source.close()
        return batches, summaries

    batches, summaries = asyncio.run(scenario())
    for summary in summaries:
        mine = [
            b
            for b in batches
            if int(b.metadata["timestamp"][0]) in {t.timestamp for t in summary.truth}
        ]
        assert_matches(mine, summary)


async def test_nng_messages_arrive_as_read_only_views_that_keep_their_message_alive() -> None:
    address = free_address()
    source = make_source(source_config(address, "nng", "listen"))
    await source.open()
    sent = [bytes(range(256)) * 4096, b"second message"]
    try:
        with pynng.Push0(dial=address) as push:
            for payload in sent:
                await push.asend(payload)
            first = await source.receive()
            second = await source.receive()
    finally:
        source.close()
    assert isinstance(first, memoryview) and first.readonly
    gc.collect()  # nothing but the views holds the nng messages now
    assert bytes(first) == sent[0] and bytes(second) == sent[1]
    assert source.bytes_received == sum(len(payload) for payload in sent)
    with pytest.raises(TypeError):
        first[0] = 1


def test_an_nng_message_is_freed_once_the_last_array_made_from_its_view_goes() -> None:
    with (
        pynng.Pair0(listen="inproc://message-body") as a,
        pynng.Pair0(dial="inproc://message-body") as b,
    ):
        a.send(np.arange(8, dtype=np.float32).tobytes())
        message = b.recv_msg()
    alive = weakref.ref(message)
    array = np.frombuffer(message_body(message), dtype=np.float32)
    del message
    gc.collect()
    assert alive() is not None
    np.testing.assert_array_equal(array, np.arange(8, dtype=np.float32))
    del array
    gc.collect()
    assert alive() is None
