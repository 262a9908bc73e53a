"""Service totals over ingress replicas that live, died or stopped; the quarantines' disk bounds
hold across replicas."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from peaknet_serve.cxi import CXIConfig, CXIWriter
from peaknet_serve.errors import DecodeError
from peaknet_serve.service.accounting import FrameLedger
from peaknet_serve.service.totals import (
    BUFFERED,
    OPEN_BATCHES,
    STOPPED,
    gone,
    render_totals,
    resolve_open_batches,
    service_totals,
)
from peaknet_serve.wire import FrameBatch, Quarantine
from tests.stage_helpers import batch, config, make_stage, masks_for, one_peak


def ledger(received: int, hits: int, non_hits: int, failed: int) -> dict:
    led = FrameLedger()
    led.message_received(100)
    led.frames_received(received)
    led.settle(hits=hits, non_hits=non_hits, failed={"write": failed} if failed else None)
    return led.snapshot()


def test_a_dead_replica_keeps_its_counts_and_its_held_frames_are_lost_at_least() -> None:
    posts = {
        "live": ledger(40, 10, 20, 2),  # 8 in flight
        "dead": ledger(30, 5, 5, 0),  # 20 held when it died
        "stopped": {**ledger(12, 4, 6, 0), STOPPED: True},  # 2 unsettled after its drain
    }
    t = service_totals(posts, dead={"dead"}, resolved={"dead": {}})  # it had no batch out
    assert t["received"] == 82
    assert (t["hits_written"], t["non_hits"], t["failed"]) == (19, 31, 2)
    assert t["in_flight"] == 8
    assert t["lost_by_reason"] == {"ingress_died": 20, "unsettled_at_stop": 2}
    assert t["lost_at_least"] is True
    assert t["received"] == (
        t["hits_written"] + t["non_hits"] + t["failed"] + t["in_flight"] + t["lost"]
    )
    assert (t["ingress_replicas"], t["ingress_replicas_gone"]) == (1, 2)
    assert t["failed_by_reason"] == {"write": 2}


def test_a_dead_replicas_receive_buffer_is_received_and_lost_one_frame_per_message() -> None:
    posts = {
        "live": {**ledger(40, 10, 30, 0), BUFFERED: 5},  # still decoding its buffer
        "dead": {**ledger(30, 5, 5, 0), BUFFERED: 7},  # 20 held, 7 messages undecoded
        "stopped": {**ledger(12, 4, 8, 0), STOPPED: True, BUFFERED: 3},  # drain timed out
    }
    t = service_totals(posts, dead={"dead"}, resolved={"dead": {}})
    assert t["received"] == 40 + 30 + 7 + 12 + 3
    assert t["messages_received"] == 3 + 7 + 3
    assert t["messages_lost"] == 10
    assert t["lost_by_reason"] == {"ingress_died": 27, "unsettled_at_stop": 3}
    assert t["received"] == (
        t["hits_written"] + t["non_hits"] + t["failed"] + t["in_flight"] + t["lost"]
    )
    resolving = service_totals(posts, dead={"dead"})  # looked up later: in flight until then
    assert resolving["in_flight"] == 27 and resolving["lost_by_reason"] == {"unsettled_at_stop": 3}


def test_odd_posts_count_as_zero_instead_of_breaking_the_totals() -> None:
    t = service_totals(
        {"a": {"received": "x", "in_flight": -3, "failed_by_reason": {"r": None}}}, ()
    )
    assert t["received"] == 0 and t["in_flight"] == 0 and t["lost"] == 0


def test_only_silent_replicas_without_a_final_post_are_gone() -> None:
    posts = {"old": (0.0, {}), "fresh": (9.0, {}), "stopped": (0.0, {STOPPED: True})}
    assert gone(posts, now=10.0, max_age_s=5.0) == {"old"}


def test_service_counters_are_prometheus_counters_with_lost_by_reason() -> None:
    totals = service_totals({"dead": ledger(30, 5, 5, 0)}, dead={"dead"}, resolved={"dead": {}})
    text = render_totals(totals).decode()
    assert 'peaknet_service_frames_total{outcome="received"} 30.0' in text
    assert 'peaknet_service_frames_total{outcome="lost"} 20.0' in text
    assert 'peaknet_service_frames_lost_total{reason="ingress_died"} 20.0' in text


def test_the_message_quarantine_bound_counts_files_on_disk_across_instances(
    tmp_path: Path,
) -> None:
    """Two replicas (or a replica and its replacement) share the directory and its bound."""
    first, second = Quarantine(tmp_path, max_files=3), Quarantine(tmp_path, max_files=3)
    error = DecodeError("bad", reason="corrupt")
    assert first.save(b"a" * 10, error) and first.save(b"b" * 10, error)
    assert second.save(b"c" * 10, error)
    assert second.save(b"d" * 10, error) is None and first.save(b"e", error) is None
    assert len(list(tmp_path.glob("*.bin"))) == 3
    by_bytes = Quarantine(tmp_path / "b", max_bytes=25)
    assert by_bytes.save(b"x" * 20, error)
    assert by_bytes.save(b"y" * 10, error) is None  # 20 on disk + 10 > 25
    assert Quarantine(tmp_path / "b", max_bytes=25).save(b"z" * 5, error)


def test_the_batch_quarantine_bound_counts_files_on_disk_across_instances(tmp_path: Path) -> None:
    batch = FrameBatch(images=np.zeros((2, 8, 8), np.float32), metadata={})
    assert Quarantine(tmp_path, max_files=1).save_batch(batch, reason="write", message="m")
    assert Quarantine(tmp_path, max_files=1).save_batch(batch, reason="write", message="m") is None
    assert (
        Quarantine(tmp_path / "b", max_bytes=100).save_batch(batch, reason="w", message="") is None
    )


def test_messages_and_batches_kept_in_one_directory_share_its_bounds(tmp_path: Path) -> None:
    batch = FrameBatch(images=np.zeros((2, 8, 8), np.float32), metadata={})
    quarantine = Quarantine(tmp_path, max_files=2)
    assert quarantine.save(b"m" * 10, DecodeError("bad", reason="corrupt"))
    assert quarantine.save_batch(batch, reason="write", message="m")
    assert quarantine.save(b"n", "late") is None
    assert quarantine.save_batch(batch, reason="write", message="m") is None
    assert (quarantine.saved, quarantine.skipped) == (2, 2)
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".bin", ".json", ".json", ".npz"]


def test_a_dead_replicas_open_batches_committed_by_writers_count_as_written(
    tmp_path: Path,
) -> None:
    """Frames stay in flight until the writers' files are read, then move once: what a writer
    committed is written or judged, the rest of what the replica held is lost."""
    stage = make_stage(config(tmp_path, min_peaks=1), writer_id="w1")
    frames = batch(0, 8)
    frames.images[:3, 4:6, 4:6] += 100.0  # a bright peak in three frames: hits
    masks = masks_for(frames)
    masks[3:] = 0  # five frames without a peak: non-hits
    assert stage.process(masks, frames, batch_id="b1").hits == 3
    dead = {**ledger(40, 10, 10, 0), OPEN_BATCHES: {"b1": 8, "b2": 8}}  # 20 held
    before = service_totals({"dead": dead}, dead={"dead"})
    assert (before["in_flight"], before["lost"], before["ingress_replicas_resolving"]) == (20, 0, 1)
    answer = resolve_open_batches(tmp_path, dead[OPEN_BATCHES])
    assert answer == {"b1": {"hits": 3, "non_hits": 5, "failed": {}}, "b2": None}
    stage.close()
    assert resolve_open_batches(tmp_path, dead[OPEN_BATCHES]) == answer  # closed files too
    after = service_totals({"dead": dead}, dead={"dead"}, resolved={"dead": answer})
    assert (after["hits_written"], after["non_hits"]) == (13, 15)
    assert after["lost_by_reason"] == {"ingress_died": 12} and after["in_flight"] == 0
    assert after["received"] == after["hits_written"] + after["non_hits"] + after["lost"]
    for key in ("received", "hits_written", "non_hits", "failed", "lost"):
        assert after[key] >= before[key], key  # counters never go back


def test_a_batch_a_writer_is_still_writing_is_resolved_later(tmp_path: Path) -> None:
    writer = CXIWriter(CXIConfig(output_dir=str(tmp_path)), writer_id="w1")
    frames = batch(0, 4)
    writer.begin("b1")
    writer.write_batch(frames.images, [one_peak()] * 4, frames.metadata, [True] * 4, batch_id="b1")
    writer.flush()
    assert resolve_open_batches(tmp_path, {"b1": 4}) is None
    writer.commit("b1", {"hits": 4, "non_hits": 0, "failed": {}}, frames.images.shape[1:])
    assert resolve_open_batches(tmp_path, {"b1": 4}) == {
        "b1": {"hits": 4, "non_hits": 0, "failed": {}}
    }
    writer.close()


def test_metrics_say_when_the_frames_lost_are_a_floor() -> None:
    died = {"lost": 5, "lost_by_reason": {"ingress_died": 5}, "messages_lost": 5}
    text = render_totals({**died, "lost_at_least": True}).decode()
    assert "peaknet_service_messages_lost_total 5.0" in text
    assert "peaknet_service_frames_lost_is_lower_bound 1.0" in text
    exact = render_totals({"lost": 0, "messages_lost": 0, "lost_at_least": False}).decode()
    assert "peaknet_service_frames_lost_is_lower_bound 0.0" in exact
