"""1,000 fuzzed messages interleaved with good ones: the good frames all come out, the bad
messages are counted and quarantined, and the service keeps running."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pynng
import pytest

from peaknet_serve.wire import encode_batch
from peaknet_serve.wire.crafted import good_message, raw_hdf5, raw_npz
from tests.conftest import free_port
from tests.serve_app import (
    FRAME_SHAPE,
    Pusher,
    app_config,
    cxi_timestamps,
    deploy,
    get,
    hit_timestamps,
    settled,
    status,
    undeploy,
    wait_for,
    wait_ready,
)

FUZZED = 1000
MAX_MESSAGE_BYTES = 400_000


def fuzzed_messages(seed: int) -> tuple[list[bytes], int]:
    """``FUZZED`` messages of five kinds; returns them and how many frames are all NaN.

    Every fourth-kind message (NaNs) decodes fine: its all-NaN frame is failed, not rejected.
    """
    rng = np.random.default_rng(seed)
    messages: list[bytes] = []
    nan_frames = 0
    for i in range(FUZZED):
        kind = i % 5
        if kind == 0:  # random bytes, sometimes with a valid signature in front
            body = rng.bytes(int(rng.integers(0, 2000)))
            messages.append((b"\x89HDF\r\n\x1a\n" if i % 2 else b"PK\x03\x04") + body)
        elif kind == 1:  # a real message cut short
            whole = good_message(rng, shape=FRAME_SHAPE, first=10**12 + i)
            messages.append(whole[: int(rng.integers(1, len(whole) - 1))])
        elif kind == 2:  # wrong shapes: 1-D image, 5-D image, metadata of the wrong length
            shape = [(64,), (1, 1, 1, 8, 8), (3, 8, 8)][i % 3]
            fields = {"/data/data": np.zeros(shape, np.float32)}
            if i % 3 == 2:
                fields["/data/timestamp"] = np.arange(5, dtype=np.uint64)
            messages.append(raw_npz(fields) if i % 2 else raw_hdf5(fields))
        elif kind == 3:  # a NaN or inf pixel (masked) and a frame of NaN (failed)
            images = rng.random((2, 1, *FRAME_SHAPE), dtype=np.float32)
            images[0, 0, 5, 5] = np.nan if i % 2 else np.inf
            images[1] = np.nan
            nan_frames += 1
            messages.append(
                encode_batch(
                    {
                        "/data/data": images,
                        "/data/timestamp": np.arange(2, dtype=np.uint64) + 2 * 10**12 + 2 * i,
                    },
                    fmt="hdf5",
                )
            )
        else:  # huge: over max_message_bytes, or an NPZ header declaring a huge array
            if i % 2:
                messages.append(b"\x89HDF\r\n\x1a\n" + bytes(MAX_MESSAGE_BYTES))
            else:
                whole = encode_batch({"data": np.zeros((2, 8, 8), np.float32)}, fmt="npz")
                messages.append(whole.replace(b"(2, 8, 8)", b"(2000000, 8000, 8)", 1))
    return messages, nan_frames


@pytest.mark.slow
def test_fuzzed_messages_are_counted_and_quarantined_and_good_frames_all_come_out(
    ray_cluster: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    deploy(
        ray_cluster,
        app_config(
            tmp_path,
            port,
            decode={"max_message_bytes": MAX_MESSAGE_BYTES},
            output={"write_mode": "all"},
        ),
    )
    messages, nan_frames = fuzzed_messages(seed=3)
    nan_messages = FUZZED // 5
    try:
        wait_ready(ray_cluster)
        pusher = Pusher(port, frames=48, batch_size=4, seed=9, rate=12.0)
        pusher.start()
        with pynng.Push0(dial=f"tcp://127.0.0.1:{port}", send_timeout=60_000) as fuzzer:
            for message in messages:
                fuzzer.send(message)
            summary = pusher.result()
            # nng has no linger: closing the socket drops a message still queued in it
            wait_for(
                lambda: status(ray_cluster)["messages_received"] >= FUZZED + summary.messages,
                timeout=240,
                what="every message taken before the fuzzer's socket closes",
            )
        frames = 48 + 2 * nan_messages
        wait_for(lambda: settled(ray_cluster, frames), timeout=240, what="every frame to settle")
        # a message is counted when pulled, and rejected only after its decode
        wait_for(
            lambda: status(ray_cluster)["messages_rejected"] >= FUZZED - nan_messages,
            timeout=60,
            what="every bad message decoded",
        )
        s = status(ray_cluster)
        assert s["received"] == frames
        assert s["received"] == s["hits_written"] + s["non_hits"] + s["failed"]
        assert s["failed_by_reason"] == {"invalid_pixels": nan_frames}
        assert s["messages_rejected"] == FUZZED - nan_messages
        assert s["messages_received"] == FUZZED + summary.messages
        assert get(ray_cluster, "/healthz").json() == {"alive": True}
        assert s["hits_written"] >= len(hit_timestamps(summary))
    finally:
        undeploy(ray_cluster)
    quarantine = tmp_path / "quarantine"
    assert len(list(quarantine.glob("*.bin"))) == 100  # the default cap
    assert len(list((quarantine / "batches").glob("*.npz"))) == 100  # NaN frames, capped too
    written = set(cxi_timestamps(tmp_path / "out"))  # write_mode all: every valid frame
    assert {t.timestamp for t in summary.truth} <= written
    assert len(written) == frames - nan_frames
