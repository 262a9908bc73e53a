"""``peaknet-serve push``: CLI flags, truth files, ranks, timeouts, rate."""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import time

import h5py
import numpy as np
import pytest

from peaknet_serve import cli
from peaknet_serve.cli import push as push_cli
from peaknet_serve.errors import ConfigError, PeakNetServeError
from peaknet_serve.pusher import push_frames
from peaknet_serve.wire import FrameBatch, SourceConfig, decode_message, make_source


def free_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


async def receive_all(address: str, transport: str, frames: int) -> list[FrameBatch]:
    source = make_source(SourceConfig(transport=transport, addresses=[address], recv_timeout_s=0.1))
    await source.open()
    batches: list[FrameBatch] = []
    try:
        deadline = time.monotonic() + 20
        while sum(len(b) for b in batches) < frames and time.monotonic() < deadline:
            payload = await source.receive()
            if payload is not None:
                batches.append(decode_message(payload))
    finally:
        source.close()
    return batches


def test_cli_push_sends_panels_and_writes_jsonl_truth(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(cli.SUBCOMMANDS, "push", "peaknet_serve.cli.push")
    address = free_address()
    truth = tmp_path / "truth.jsonl"
    argv = [
        "push", "--address", address, "--transport", "zmq", "--format", "npz",
        "--compression", "deflate", "--dtype", "uint16", "--frames", "5", "--batch-size", "2",
        "--shape", "3", "32", "40", "--peaks", "4", "--hit-fraction", "1", "--seed", "9",
        "--rank", "2", "--truth", str(truth), "--linger", "0.2", "--no-progress",
    ]  # fmt: skip

    async def scenario() -> tuple[int, list[FrameBatch]]:
        return await asyncio.gather(
            asyncio.to_thread(cli.main, argv), receive_all(address, "zmq", 5)
        )

    code, batches = asyncio.run(scenario())
    assert code == 0
    assert "pushed 5 frames in 3 messages" in capsys.readouterr().out
    assert [b.images.shape for b in batches] == [(2, 3, 32, 40), (2, 3, 32, 40), (1, 3, 32, 40)]
    assert batches[0].images.dtype == np.uint16
    records = [json.loads(line) for line in truth.read_text().splitlines()]
    assert [r["event"] for r in records] == [2_000_000_000 + i for i in range(5)]
    stamps = np.concatenate([b.metadata["timestamp"] for b in batches]).tolist()
    assert stamps == [r["timestamp"] for r in records]
    assert all(r["n_peaks"] == 4 and len(r["peaks"]) == 4 for r in records)
    assert {p["panel"] for r in records for p in r["peaks"]} <= {0, 1, 2}


def test_hdf5_truth_and_two_ranks_never_share_events(tmp_path) -> None:
    address = free_address()
    common = dict(address=address, peaks=3, shape=(48, 48), frames=6, batch_size=4, linger_s=0.2)

    async def scenario() -> tuple:
        return await asyncio.gather(
            asyncio.to_thread(push_frames, rank=0, truth_path=tmp_path / "r0.h5", **common),
            asyncio.to_thread(push_frames, rank=1, truth_path=tmp_path / "r1.hdf5", **common),
            receive_all(address, "nng", 12),
        )

    first, second, batches = asyncio.run(scenario())
    stamps = np.concatenate([b.metadata["timestamp"] for b in batches])
    assert len(set(stamps.tolist())) == 12
    with h5py.File(tmp_path / "r0.h5") as a, h5py.File(tmp_path / "r1.hdf5") as b:
        assert not set(a["timestamp"][()]) & set(b["timestamp"][()])
        np.testing.assert_array_equal(a["timestamp"][()], [t.timestamp for t in first.truth])
        assert a["peak_y"].shape == (int(a["n_peaks"][()].sum()),)
        assert b["event"][0] == second.first_event


def test_image_goes_out_as_b1hw_and_without_channel_axis_on_request() -> None:
    address = free_address()

    async def scenario(channel_axis: bool) -> list[FrameBatch]:
        results = await asyncio.gather(
            asyncio.to_thread(
                push_frames, address=address, peaks=3, shape=(32, 48), frames=3, batch_size=3,
                channel_axis=channel_axis, linger_s=0.2, fmt="npz", compression="none",
            ),
            receive_all(address, "nng", 3),
        )  # fmt: skip
        return results[1]

    # the decoder squeezes (B, 1, H, W): both arrive as (B, H, W), identical
    with_axis = asyncio.run(scenario(True))
    without = asyncio.run(scenario(False))
    np.testing.assert_array_equal(with_axis[0].images, without[0].images)
    assert with_axis[0].images.shape == (3, 32, 48)


def test_cli_cycle_repeats_images_under_new_timestamps() -> None:
    address = free_address()
    args = cli.build_parser().parse_args(
        ["push", "--address", address, "--frames", "6", "--batch-size", "3", "--shape", "32", "48",
         "--peaks", "3", "--cycle", "2", "--linger", "0.2", "--no-progress"]
    )  # fmt: skip

    async def scenario() -> list[FrameBatch]:
        results = await asyncio.gather(
            asyncio.to_thread(push_cli.run, args), receive_all(address, "nng", 6)
        )
        assert results[0] == 0
        return results[1]

    batches = asyncio.run(scenario())
    images = np.concatenate([b.images for b in batches])
    stamps = np.concatenate([b.metadata["timestamp"] for b in batches])
    assert len(set(stamps.tolist())) == 6
    np.testing.assert_array_equal(images[0], images[2])
    np.testing.assert_array_equal(images[1], images[5])
    assert not np.array_equal(images[0], images[1])


def test_dial_without_listener_waits_then_fails_clearly() -> None:
    started = time.monotonic()
    with pytest.raises(PeakNetServeError, match="connect-timeout"):
        push_frames(
            address=free_address(), frames=2, peaks=3, shape=(48, 48), connect_timeout_s=0.5
        )
    assert 0.4 < time.monotonic() - started < 5


def test_dial_waits_for_a_late_listener() -> None:
    address = free_address()

    async def scenario() -> tuple:
        pushing = asyncio.create_task(
            asyncio.to_thread(
                push_frames,
                address=address,
                frames=4,
                batch_size=2,
                peaks=3,
                shape=(48, 48),
                linger_s=0.2,
            )
        )
        await asyncio.sleep(0.5)  # the pusher is already retrying its dial
        batches = await receive_all(address, "nng", 4)
        return await pushing, batches

    summary, batches = asyncio.run(scenario())
    assert summary.frames == 4
    assert sum(len(b) for b in batches) == 4


def test_rate_limits_the_send_speed() -> None:
    address = free_address()

    async def scenario():
        return await asyncio.gather(
            asyncio.to_thread(
                push_frames, address=address, frames=6, batch_size=1, peaks=3, shape=(48, 48),
                rate=20.0, linger_s=0.0,
            ),
            receive_all(address, "nng", 6),
        )  # fmt: skip

    summary, _ = asyncio.run(scenario())
    assert summary.seconds >= 5 / 20.0


def test_run_reports_errors_with_exit_code_1() -> None:
    parser = argparse.ArgumentParser()
    push_cli.add_arguments(parser)
    args = parser.parse_args(
        ["--address", free_address(), "--connect-timeout", "0.2", "--frames", "1", "--no-progress"]
    )
    assert push_cli.run(args) == 1
    assert push_cli.run(parser.parse_args(["--shape", "4"])) == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fmt": "npz", "compression": "gzip"}, "not valid for npz"),
        ({"transport": "tcp"}, "transport"),
        ({"batch_size": 0}, "batch_size"),
        ({"dtype": "int8"}, "dtype"),
    ],
)
def test_invalid_options_are_config_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        push_frames(address=free_address(), connect_timeout_s=0.1, **kwargs)
