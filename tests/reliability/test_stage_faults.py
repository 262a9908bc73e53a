"""The writer stage under faults, without Ray: unwritable output, a writer that dies mid-file,
a batch sent again after it was committed or while another writer writes it, writers
recovering at once, NaN frames, quarantined batches."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from peaknet_serve.config import ServiceConfig
from peaknet_serve.peaks import PeaksConfig, PixelScreen
from peaknet_serve.service.commits import CommitLog, recover_orphans, writer_alive
from peaknet_serve.service.health import WriterHealth
from peaknet_serve.service.outcome import BatchOutcome
from peaknet_serve.service.quarantine import BatchQuarantine
from peaknet_serve.service.screen import screen_batch
from peaknet_serve.service.stage import PeakStage
from peaknet_serve.wire import FrameBatch
from tests.serve_app import wait_for


def config(out: Path, *, events_per_file: int = 5) -> ServiceConfig:
    return ServiceConfig.model_validate(
        {
            "model": {"random_weights_seed": 0},
            "hits": {"min_peaks": 0},
            "output": {"output_dir": str(out), "events_per_file": events_per_file},
        }
    )


def batch(first: int, n: int = 3, *, shape=(16, 16)) -> FrameBatch:
    rng = np.random.default_rng(first)
    images = rng.random((n, *shape), dtype=np.float32)
    stamps = np.arange(first, first + n, dtype=np.uint64)
    return FrameBatch(images=images, metadata={"timestamp": stamps})


def masks_for(frames: FrameBatch) -> np.ndarray:
    masks = np.zeros(frames.images.shape, dtype=np.uint8)
    masks[:, 4:6, 4:6] = 1  # one peak per frame: every frame is a hit with min_peaks=0
    return masks


def timestamps(out: Path) -> list[int]:
    found: list[int] = []
    for path in sorted(out.glob("*.cxi")):
        with h5py.File(path, "r") as f:
            found.extend(int(t) for t in f["/LCLS/timestamp"][()])
    return sorted(found)


def test_a_batch_that_cannot_be_written_is_handed_back_and_written_once_the_disk_is_back(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    out.write_text("a file where the output directory should be")  # root ignores chmod
    stage = PeakStage(config(out), writer_id="w0")
    frames = batch(100)
    failed = stage.process(masks_for(frames), frames, batch_id="b1")
    assert failed.write_error is not None and failed.frames == 0
    assert stage.status()["writable"] is False
    assert stage.status()["write_error"] == failed.write_error
    out.unlink()  # the problem clears
    done = stage.process(masks_for(frames), frames, batch_id="b1")
    assert (done.hits, done.write_error) == (3, None)
    assert stage.status()["write_error"] is None
    stage.close()
    assert timestamps(out) == [100, 101, 102]
    assert not list(out.glob(".peaknet-writer-*"))  # a clean close leaves no log nor lock


def test_a_directory_removed_mid_run_is_recreated_and_nothing_is_written_twice(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    stage = PeakStage(config(out, events_per_file=4), writer_id="w0")
    first = batch(0, 4)  # fills and closes file 0
    assert stage.process(masks_for(first), first, batch_id="a").hits == 4
    moved = tmp_path / "moved"
    shutil.move(out, moved)  # the directory goes away under the writer
    second = batch(10, 3)
    outcome = stage.process(masks_for(second), second, batch_id="b")
    assert writer_alive(out, "w0")  # the lock moved away too: other writers must still see it
    stage.close()
    assert outcome.write_error is None  # the next file recreated the directory
    assert timestamps(moved) + timestamps(out) == [0, 1, 2, 3, 10, 11, 12]


def _die_mid_file(out: str) -> None:
    """A writer process that commits two batches, half-writes a third, and is killed."""
    stage = PeakStage(config(Path(out), events_per_file=100), writer_id="dead")
    for first, batch_id in ((0, "a"), (3, "b")):
        frames = batch(first)
        stage.process(masks_for(frames), frames, batch_id=batch_id)
    frames = batch(6)
    stage._writer.write_batch(  # rows of a batch the writer never acknowledges
        frames.images,
        [_one_peak()] * 3,
        {"timestamp": frames.metadata["timestamp"]},
        [True] * 3,
    )
    stage._writer.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _one_peak():
    from peaknet_serve.peaks import find_peaks
    from peaknet_serve.peaks.config import PeaksConfig

    frames = batch(0, 1)
    return find_peaks(masks_for(frames)[0], frames.images[0], PeaksConfig())


def test_the_file_of_a_killed_writer_is_trimmed_to_what_it_committed_and_renamed(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    child = multiprocessing.get_context("spawn").Process(target=_die_mid_file, args=(str(out),))
    child.start()
    child.join(60)
    assert child.exitcode == -9
    assert len(list(out.glob("*.cxi.inprogress"))) == 1
    survivor = PeakStage(config(out), writer_id="alive")  # recovers at start
    assert not list(out.glob("*.inprogress"))
    assert timestamps(out) == list(range(6))  # batches a and b; the half-written one is gone
    # the retry of committed batch "b" is answered from the dead writer's log, not rewritten
    frames = batch(3)
    again = survivor.process(masks_for(frames), frames, batch_id="b")
    assert (again.hits, again.writer_id) == (3, "dead")
    retried = batch(6)  # the batch the dead writer never acknowledged
    assert survivor.process(masks_for(retried), retried, batch_id="c").hits == 3
    survivor.close()
    assert timestamps(out) == list(range(9))
    assert survivor.status()["recovered_files"]


def test_screen_masks_gap_pixels_and_splits_out_hopeless_frames() -> None:
    frames = batch(0, 4)
    images = frames.images.copy()
    images[1, 3, 3] = np.nan  # a gap pixel: masked, the frame goes on
    images[2] = np.nan  # no valid pixel: failed
    images[3, 0, 0] = np.inf
    screened = screen_batch(
        FrameBatch(images=images, metadata=frames.metadata), PixelScreen(PeaksConfig())
    )
    assert screened.kept is not None and screened.failed is not None
    assert screened.kept.metadata["timestamp"].tolist() == [0, 1, 3]
    assert screened.failed.metadata["timestamp"].tolist() == [2]
    assert "no valid pixel" in screened.failures[0]
    assert screened.masked_pixels.tolist() == [0, 1, images[2].size, 1]
    ints = FrameBatch(images=np.zeros((2, 4, 4), np.uint16), metadata={})
    same = screen_batch(ints, PixelScreen(PeaksConfig()))
    assert same.kept is ints and same.failed is None


def test_batch_quarantine_keeps_frames_and_reason_up_to_its_cap(tmp_path: Path) -> None:
    quarantine = BatchQuarantine(tmp_path, max_files=2)
    for i in range(3):
        quarantine.save(batch(i), reason="replica_died", message="gone")
    assert (quarantine.saved, quarantine.skipped) == (2, 1)
    [first, _] = sorted(tmp_path.glob("*.npz"))
    with np.load(first) as data:
        assert data["images"].shape == (3, 16, 16)
        assert data["metadata/timestamp"].tolist() == [0, 1, 2]
    assert json.loads(first.with_suffix(".json").read_text())["reason"] == "replica_died"


@pytest.mark.parametrize("error", [None, "disk full"])
def test_writer_health_reports_the_latest_result_per_writer(error: str | None) -> None:
    now = [0.0]
    health = WriterHealth(stale_s=10, clock=lambda: now[0])
    health.report(BatchOutcome(writer_id="w", write_error=error))
    assert health.failing() == ({"w": error} if error else {})
    now[0] = 11
    assert health.snapshot() == {}


def _orphan(out: Path, writer_id: str, events: int) -> None:
    """Leave the open file and commit log of a writer that died with ``events`` committed."""
    from peaknet_serve.cxi import CXIWriter

    frames = batch(1000 * len(writer_id), events)
    with CXIWriter(config(out, events_per_file=100).output, writer_id=writer_id) as writer:
        writer.write_batch(
            frames.images,
            [_one_peak()] * events,
            {"timestamp": frames.metadata["timestamp"]},
            [True] * events,
        )
    [final] = out.glob(f"*-{writer_id}-*.cxi")
    inprogress = final.with_name(final.name + ".inprogress")
    final.rename(inprogress)
    CommitLog(out, writer_id).record(
        "last", BatchOutcome(hits=events), current=inprogress, events=events
    )


def _recover_when_told(out: str, go) -> None:
    go.wait(30)
    recover_orphans(Path(out), file_prefix="peaknet")


def test_writers_recovering_the_same_orphans_at_once_finish_each_file_exactly_once(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    dead = {"w" * (i + 1): 2 + i % 3 for i in range(32)}
    for writer_id, events in dead.items():
        _orphan(out, writer_id, events)
    context = multiprocessing.get_context("spawn")
    go = context.Event()
    writers = [context.Process(target=_recover_when_told, args=(str(out), go)) for _ in range(4)]
    for process in writers:
        process.start()
    time.sleep(2)  # every process has imported h5py and waits
    go.set()
    for process in writers:
        process.join(60)
        assert process.exitcode == 0
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == sorted(
        f"peaknet-{writer_id}-00000.cxi" for writer_id in dead
    )
    for writer_id, events in dead.items():
        with h5py.File(out / f"peaknet-{writer_id}-00000.cxi", "r") as f:
            assert f["/LCLS/timestamp"].shape == (events,)


def test_a_batch_sent_to_a_second_writer_after_the_first_wrote_it_is_written_once(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    first = PeakStage(config(out), writer_id="first")
    second = PeakStage(config(out), writer_id="second")
    frames = batch(0)
    assert first.process(masks_for(frames), frames, batch_id="x").hits == 3
    again = second.process(masks_for(frames), frames, batch_id="x")  # as Ray Serve resends
    assert (again.hits, again.writer_id) == (3, "first")
    first.close()
    second.close()
    assert timestamps(out) == [0, 1, 2]


def _claim_then(out: str, batch_id: str, then: str) -> None:
    """A writer that claims ``batch_id``, takes a second, then commits it or is killed."""
    from peaknet_serve.service.commits import WriterLock

    WriterLock(Path(out), "slow").acquire()
    log = CommitLog(Path(out), "slow")
    log.claim(batch_id)
    time.sleep(1.0)
    if then == "killed":
        os.kill(os.getpid(), signal.SIGKILL)
    log.record(batch_id, BatchOutcome(hits=3), current=None, events=0)


@pytest.mark.parametrize("then", ["commits", "killed"])
def test_a_batch_claimed_by_a_live_writer_is_waited_for(tmp_path: Path, then: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    slow = multiprocessing.get_context("spawn").Process(
        target=_claim_then, args=(str(out), "x", then)
    )
    slow.start()
    stage = PeakStage(config(out), writer_id="w0")
    claim = out / ".peaknet-writer-slow.claim"
    wait_for(claim.exists, timeout=30, what="the slow writer's claim of its batch")
    frames = batch(0)
    outcome = stage.process(masks_for(frames), frames, batch_id="x")
    slow.join(30)
    stage.close()
    if then == "commits":
        assert (outcome.hits, outcome.writer_id) == (3, "slow")
        assert timestamps(out) == []  # the slow writer's rows are its own business
    else:
        assert (outcome.hits, outcome.writer_id) == (3, "w0")
        assert timestamps(out) == [0, 1, 2]


def test_a_claim_that_outlives_the_wait_hands_the_batch_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from peaknet_serve.service import stage as stage_module
    from peaknet_serve.service.commits import WriterLock

    monkeypatch.setattr(stage_module, "CLAIM_WAIT_S", 0.3)
    out = tmp_path / "out"
    busy = WriterLock(out, "busy")  # a live writer, stuck on batch x
    busy.acquire()
    CommitLog(out, "busy").claim("x")
    stage = PeakStage(config(out), writer_id="w0")
    frames = batch(0)
    outcome = stage.process(masks_for(frames), frames, batch_id="x")
    assert outcome.write_error is not None and "busy" in outcome.write_error
    assert outcome.frames == 0
    stage.close()
    busy.release()
    assert timestamps(out) == []


def test_logs_of_dead_writers_go_ten_minutes_after_their_files_are_finished(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    _orphan(out, "old", 2)
    CommitLog(out, "young").record("y", BatchOutcome(hits=1), current=None, events=0)
    old_log = out / ".peaknet-writer-old.commits.json"
    an_hour_ago = time.time() - 3600
    os.utime(old_log, (an_hour_ago, an_hour_ago))
    recovery = recover_orphans(out, file_prefix="peaknet")
    assert recovery.recovered == {"peaknet-old-00000.cxi": 2}
    assert not old_log.exists()
    assert (out / ".peaknet-writer-young.commits.json").exists()


def test_a_file_system_without_flock_gives_a_write_error_that_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import fcntl

    def no_flock(fd: int, operation: int) -> None:  # Lustre mounted without -o flock
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    stage = PeakStage(config(tmp_path / "out"), writer_id="w0")
    frames = batch(0)
    outcome = stage.process(masks_for(frames), frames, batch_id="x")
    assert outcome.write_error is not None and "-o flock" in outcome.write_error
    assert stage.status()["write_error"] == outcome.write_error
    assert timestamps(tmp_path / "out") == []
