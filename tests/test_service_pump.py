"""The ingress loop without Ray: real sockets, real decoding, a submit function we control."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from peaknet_serve.pusher import push_frames
from peaknet_serve.service.accounting import FrameLedger
from peaknet_serve.service.outcome import BatchOutcome
from peaknet_serve.service.pump import Pump
from peaknet_serve.wire import FrameBatch, Quarantine, SourceConfig, decode_message, make_source
from tests.conftest import free_port


def listening_source(port: int):
    return make_source(
        SourceConfig(addresses=[f"tcp://127.0.0.1:{port}"], mode="listen", recv_timeout_s=0.2)
    )


async def wait_until(predicate, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


def push_in_thread(**kwargs) -> threading.Thread:
    thread = threading.Thread(target=push_frames, kwargs=kwargs, daemon=True)
    thread.start()
    return thread


async def count_non_hits(batch: FrameBatch) -> BatchOutcome:
    return BatchOutcome(non_hits=len(batch))


async def started_pump(
    submit, *, max_in_flight: int = 2, quarantine: Quarantine | None = None
) -> tuple[Pump, FrameLedger, str]:
    """A running pump listening on a free port, its ledger, and the address to push to."""
    port = free_port()
    ledger = FrameLedger()
    pump = Pump(
        source=listening_source(port),
        decode=decode_message,
        submit=submit,
        ledger=ledger,
        max_in_flight=max_in_flight,
        quarantine=quarantine,
    )
    pump.start()
    await wait_until(lambda: pump.source.is_open)
    return pump, ledger, f"tcp://127.0.0.1:{port}"


async def test_every_frame_is_accounted_and_in_flight_is_bounded() -> None:
    seen_timestamps: list[int] = []
    concurrent = 0
    most_concurrent = 0

    async def submit(batch: FrameBatch) -> BatchOutcome:
        nonlocal concurrent, most_concurrent
        concurrent += 1
        most_concurrent = max(most_concurrent, concurrent)
        await asyncio.sleep(0.05)  # a slow downstream: the window must fill
        concurrent -= 1
        seen_timestamps.extend(int(t) for t in batch.metadata["timestamp"])
        hits = int(np.count_nonzero(batch.metadata["timestamp"] % 7 < 3))
        return BatchOutcome(hits=hits, non_hits=len(batch) - hits)

    pump, ledger, address = await started_pump(submit, max_in_flight=2)
    summary_holder: dict[str, object] = {}

    def push() -> None:
        summary_holder["summary"] = push_frames(
            address=address,
            frames=45,
            batch_size=4,
            shape=(64, 64),
            peaks=3,
            hit_fraction=0.5,
            seed=3,
        )

    thread = threading.Thread(target=push, daemon=True)
    thread.start()
    await wait_until(lambda: ledger.received == 45 and ledger.in_flight == 0)
    await pump.stop(drain_timeout_s=5)
    thread.join(5)

    summary = summary_holder["summary"]
    assert most_concurrent <= 2
    assert ledger.messages_received == 12  # 11 full batches and a partial one of 1
    assert ledger.received == ledger.hits_written + ledger.non_hits + ledger.failed
    assert sorted(seen_timestamps) == sorted(t.timestamp for t in summary.truth)
    assert ledger.hits_written == sum(t.timestamp % 7 < 3 for t in summary.truth)
    assert 0 < ledger.hits_written < 45


async def test_bad_messages_are_counted_quarantined_and_do_not_stop_the_loop(tmp_path) -> None:
    import pynng

    pump, ledger, address = await started_pump(count_non_hits, quarantine=Quarantine(tmp_path))
    with pynng.Push0(dial=address) as push:
        await push.asend(b"not an hdf5 file at all")
        await push.asend(b"\x89HDF\r\n\x1a\n" + b"\x00" * 100)  # truncated HDF5
        # nng has no linger: closing the socket drops a message still queued in it
        await wait_until(lambda: sum(ledger.rejected_messages_by_reason.values()) == 2)
    thread = push_in_thread(
        address=address, frames=8, batch_size=4, shape=(32, 32), peaks=0, seed=1
    )
    await wait_until(lambda: ledger.received == 8 and ledger.in_flight == 0)
    thread.join(5)
    assert pump.alive
    await pump.stop(drain_timeout_s=5)
    assert ledger.non_hits == 8
    assert sum(ledger.rejected_messages_by_reason.values()) == 2
    assert len(list(tmp_path.glob("*.bin"))) == 2


async def test_a_failing_submit_fails_its_frames_with_the_reason() -> None:
    async def submit(batch: FrameBatch) -> BatchOutcome:
        raise ConnectionError("replica gone")

    pump, ledger, address = await started_pump(submit, max_in_flight=1)
    thread = push_in_thread(address=address, frames=6, batch_size=4, shape=(32, 32), peaks=0)
    await wait_until(lambda: ledger.received == 6 and ledger.in_flight == 0)
    thread.join(5)
    await pump.stop(drain_timeout_s=5)
    assert ledger.failed_by_reason == {"ConnectionError": 6}
    assert "replica gone" in ledger.last_error


async def test_pause_stops_reading_until_resumed() -> None:
    pump, ledger, address = await started_pump(count_non_hits)
    pump.pause()
    await asyncio.sleep(0.3)  # let the loop park at the pause point
    received_before = ledger.received
    thread = push_in_thread(address=address, frames=8, batch_size=4, shape=(32, 32), peaks=0)
    await asyncio.sleep(1.0)
    assert ledger.received <= received_before + 4  # at most one message read before parking
    pump.resume()
    await wait_until(lambda: ledger.received == 8 and ledger.in_flight == 0)
    thread.join(5)
    await pump.stop(drain_timeout_s=5)


@pytest.mark.parametrize("seconds", [0.0])
def test_ledger_rate_counts_only_the_last_minute(seconds: float) -> None:
    now = [1000.0 + seconds]
    ledger = FrameLedger(clock=lambda: now[0])
    ledger.frames_received(10)
    ledger.settle(hits=4, non_hits=6)
    now[0] += 120
    ledger.frames_received(5)
    ledger.settle(hits=0, non_hits=5)
    assert ledger.frames_per_second() == pytest.approx(5 / 60)
    assert ledger.snapshot()["received"] == 15
    assert ledger.hit_rate() == pytest.approx(4 / 15)


async def test_any_failure_to_decode_one_message_is_that_messages_and_the_loop_goes_on(
    tmp_path,
) -> None:
    """An empty message, and a decoder that raises something other than DecodeError (as the
    replica metrics did on a 0-byte message), are counted and quarantined; good frames follow."""
    import pynng

    def fragile_decode(payload) -> FrameBatch:
        if memoryview(payload).nbytes == 3:
            raise ValueError("value must be >0, got 0")
        return decode_message(payload)

    port = free_port()
    ledger = FrameLedger()
    pump = Pump(
        source=listening_source(port),
        decode=fragile_decode,
        submit=count_non_hits,
        ledger=ledger,
        max_in_flight=2,
        quarantine=Quarantine(tmp_path),
    )
    pump.start()
    await wait_until(lambda: pump.source.is_open)
    address = f"tcp://127.0.0.1:{port}"
    with pynng.Push0(dial=address) as push:
        await push.asend(b"")
        await push.asend(b"abc")
        await wait_until(lambda: ledger.messages_received == 2)
        await wait_until(lambda: sum(ledger.rejected_messages_by_reason.values()) == 2)
    thread = push_in_thread(address=address, frames=8, batch_size=4, shape=(32, 32), peaks=0)
    await wait_until(lambda: ledger.received == 8 and ledger.in_flight == 0)
    thread.join(5)
    assert pump.alive and pump.failure() is None
    await pump.stop(drain_timeout_s=5)
    assert ledger.rejected_messages_by_reason == {"empty": 1, "internal": 1}
    assert ledger.non_hits == 8
    assert len(list(tmp_path.glob("*.bin"))) == 2


def test_replica_metrics_take_zero_negative_and_nan_without_raising() -> None:
    """Ray's counters raise on inc(0); an empty message has 0 bytes (issue 19)."""
    from deployments.metrics import IngressMetrics, PeakNetMetrics, WriterMetrics

    ingress = IngressMetrics()
    ingress.message_received(0)
    ingress.message_rejected("empty")
    ingress.frames_received(0)
    ingress.settled(hits=0, non_hits=-1, failed={"x": 0, "y": float("nan")})
    WriterMetrics().judged([], hits=0)
    WriterMetrics().error("write", 0)
    PeakNetMetrics().batch(frames=0, seconds=0.0)


class Recorder:
    """A ``LedgerListener`` that keeps what it is told, as the Ray metrics would count it."""

    def __init__(self) -> None:
        self.bytes = 0
        self.messages: dict[str, int] = {}
        self.frames: dict[str, int] = {}

    def message_received(self, n_bytes: int) -> None:
        self.bytes += n_bytes

    def message_rejected(self, reason: str) -> None:
        self.messages[reason] = self.messages.get(reason, 0) + 1

    def frames_received(self, n: int) -> None:
        self.messages["decoded"] = self.messages.get("decoded", 0) + 1
        self.frames["received"] = self.frames.get("received", 0) + n

    def settled(self, *, hits: int, non_hits: int, failed) -> None:
        for outcome, n in {"hit": hits, "non_hit": non_hits, **failed}.items():
            self.frames[outcome] = self.frames.get(outcome, 0) + n


async def test_the_ledgers_listener_is_told_every_count_it_makes() -> None:
    """Frames are counted once, in the ledger: its listener (the ingress's Ray metrics) sees
    the same messages, bytes and frames by outcome, failed batches and rejections included."""
    import pynng

    calls = []

    async def every_other_fails(batch: FrameBatch) -> BatchOutcome:
        calls.append(len(batch))
        if len(calls) % 2 == 0:
            raise ConnectionError("replica gone")
        return BatchOutcome(hits=1, non_hits=len(batch) - 1)

    recorder = Recorder()
    pump, ledger, address = await started_pump(every_other_fails, max_in_flight=1)
    ledger.listener = recorder
    with pynng.Push0(dial=address) as push:
        await push.asend(b"not an hdf5 file at all")
        await wait_until(lambda: ledger.messages_received == 1)
    thread = push_in_thread(address=address, frames=12, batch_size=4, shape=(32, 32), peaks=0)
    await wait_until(lambda: ledger.received == 12 and ledger.in_flight == 0)
    thread.join(5)
    await pump.stop(drain_timeout_s=5)
    assert recorder.bytes == ledger.bytes_received > 0
    assert recorder.messages == {"unknown_format": 1, "decoded": 3}
    assert recorder.messages["decoded"] == ledger.messages_received - 1
    assert recorder.frames == {"received": 12, "hit": 2, "non_hit": 6, "ConnectionError": 4}
    assert (ledger.hits_written, ledger.non_hits, dict(ledger.failed_by_reason)) == (
        2,
        6,
        {"ConnectionError": 4},
    )
