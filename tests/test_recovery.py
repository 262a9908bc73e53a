"""Commits and recovery without locks, with real writer processes killed mid-batch and real
HDF5: a dead writer's file is trimmed to what it acknowledged and renamed; a batch written by
two writers keeps its events once; ``inspect`` names batches held by more than one file."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import time
from pathlib import Path

import h5py
import pytest

from peaknet_serve import cli
from peaknet_serve.cxi import CXIWriter
from peaknet_serve.cxi.format import COMMITTED_EVENTS, batch_records
from peaknet_serve.cxi.recovery import process_alive, recover_orphans
from tests.stage_helpers import batch, config, make_stage, masks_for, one_peak, timestamps

SPAWN = multiprocessing.get_context("spawn")


def _die_mid_file(out: str) -> None:
    """A writer process that commits two batches, half-writes a third, and is killed."""
    stage = make_stage(config(Path(out), events_per_file=100), writer_id="dead")
    for first, batch_id in ((0, "a"), (3, "b")):
        frames = batch(first)
        stage.process(masks_for(frames), frames, batch_id=batch_id)
    frames = batch(6)
    writer = stage._writer._writer
    writer.begin("c")
    writer.write_batch(  # rows of a batch the writer never acknowledges
        frames.images, [one_peak()] * 3, frames.metadata, [True] * 3, batch_id="c"
    )
    writer.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def test_the_file_of_a_killed_writer_is_trimmed_to_what_it_committed_and_renamed(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    child = SPAWN.Process(target=_die_mid_file, args=(str(out),))
    child.start()
    child.join(60)
    assert child.exitcode == -9
    assert len(list(out.glob("*.cxi.inprogress"))) == 1
    survivor = make_stage(config(out), writer_id="alive")  # recovers at start
    assert not list(out.glob("*.inprogress"))
    assert timestamps(out) == list(range(6))  # batches a and b; the half-written one is gone
    # the retry of committed batch "b" is answered from the dead writer's file, not rewritten
    frames = batch(3)
    again = survivor.process(masks_for(frames), frames, batch_id="b")
    assert (again.hits, again.writer_id) == (3, "dead")
    retried = batch(6)  # the batch the dead writer never acknowledged
    assert survivor.process(masks_for(retried), retried, batch_id="c").hits == 3
    survivor.close()
    assert timestamps(out) == list(range(9))
    assert survivor.status()["recovered_files"] == {"peaknet-dead-00000.cxi": 6}


def _write_until_killed(out: str, writer_id: str, acked) -> None:
    """A writer that writes batches of three frames as fast as it can, reporting each batch
    it acknowledged, until it is killed."""
    stage = make_stage(config(Path(out), events_per_file=7), writer_id=writer_id)
    for n in range(10_000):
        frames = batch(1000 * (1 + int(writer_id[1:])) + 3 * n, shape=(64, 64))
        stage.process(masks_for(frames), frames, batch_id=f"{writer_id}-{n}")
        acked.put(int(frames.metadata["timestamp"][0]))


def test_writers_killed_mid_batch_leave_exactly_what_they_acknowledged(tmp_path: Path) -> None:
    out = tmp_path / "out"
    acked = SPAWN.Queue()
    writers = [
        SPAWN.Process(target=_write_until_killed, args=(str(out), f"w{i}", acked))
        for i in range(3)
    ]
    for process in writers:
        process.start()
    first_acks = [acked.get(timeout=60) for _ in range(3)]  # every writer is writing
    rng = random.Random(17)
    for process in writers:
        time.sleep(rng.uniform(0.05, 0.4))
        os.kill(process.pid, signal.SIGKILL)
        process.join(30)
        assert process.exitcode == -9
    firsts = set(first_acks)
    while not acked.empty():
        firsts.add(acked.get(timeout=5))
    acknowledged = sorted(t for first in firsts for t in range(first, first + 3))
    survivor = make_stage(config(out), writer_id="survivor")  # recovers at start
    survivor.close()
    assert not list(out.glob("*.inprogress"))
    assert not list(out.glob("*.unreadable"))
    for orphaned in out.glob("*.orphaned"):  # killed before its first commit: nothing acked
        with h5py.File(orphaned, "r") as f:
            assert f.attrs[COMMITTED_EVENTS] == 0
    found = timestamps(out)
    assert len(found) == len(set(found)), "an event was written twice"
    assert set(acknowledged) <= set(found), "an acknowledged frame is missing"
    # beyond them, at most the batch each writer had committed but not yet reported, whole
    extra = sorted(set(found) - set(acknowledged))
    batches = {t - (t % 1000) % 3 for t in extra}
    assert len(batches) <= 3 and len(extra) == 3 * len(batches)


def _orphan_writers(out: str, dead: dict[str, int]) -> None:
    """Writers that each commit one batch and die with their files open (the process exits
    without closing them)."""
    for writer_id, events in dead.items():
        frames = batch(1000 * len(writer_id), events)
        writer = CXIWriter(config(Path(out), events_per_file=100).output, writer_id=writer_id)
        peaks, hits = [one_peak()] * events, [True] * events
        writer.write_batch(frames.images, peaks, frames.metadata, hits, batch_id=writer_id)
        writer.commit(writer_id, {"hits": events, "non_hits": 0, "failed": {}}, (16, 16))
    os._exit(0)


def _recover_when_told(out: str, recoverer: str, go) -> None:
    go.wait(30)
    recover_orphans(Path(out), file_prefix="peaknet", own_id=recoverer)


def test_writers_recovering_the_same_orphans_at_once_finish_each_file_exactly_once(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    dead = {"w" * (i + 1): 2 + i % 3 for i in range(32)}
    orphans = SPAWN.Process(target=_orphan_writers, args=(str(out), dead))
    orphans.start()
    orphans.join(60)
    assert orphans.exitcode == 0 and len(list(out.glob("*.inprogress"))) == 32
    go = SPAWN.Event()
    writers = [
        SPAWN.Process(target=_recover_when_told, args=(str(out), f"r{i}", go)) for i in range(4)
    ]
    for process in writers:
        process.start()
    time.sleep(2)  # every process has imported h5py and waits
    go.set()
    for process in writers:
        process.join(60)
        assert process.exitcode == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"peaknet-{writer_id}-00000.cxi" for writer_id in dead
    )
    for writer_id, events in dead.items():
        with h5py.File(out / f"peaknet-{writer_id}-00000.cxi", "r") as f:
            assert f["/LCLS/timestamp"].shape == (events,)


def _write_x_slowly(out: str, ready, go) -> None:
    """A writer that writes batch "x", lets the test go on, then commits and closes."""
    frames = batch(0)
    writer = CXIWriter(config(Path(out)).output, writer_id="first")
    writer.begin("x")
    writer.write_batch(frames.images, [one_peak()] * 3, frames.metadata, [True] * 3, batch_id="x")
    writer.flush()
    ready.set()
    go.wait(30)
    writer.commit("x", {"hits": 3, "non_hits": 0, "failed": {}}, (16, 16))
    writer.close()


def test_a_batch_two_writers_wrote_at_once_keeps_its_events_once(tmp_path: Path) -> None:
    out = tmp_path / "out"
    ready, go = SPAWN.Event(), SPAWN.Event()
    first = SPAWN.Process(target=_write_x_slowly, args=(str(out), ready, go))
    first.start()
    assert ready.wait(60)
    second = make_stage(config(out), writer_id="second")
    frames = batch(0)  # Ray Serve resends "x" while the first writer still writes it
    assert second.process(masks_for(frames), frames, batch_id="x").writer_id == "second"
    go.set()
    first.join(30)
    assert first.exitcode == 0
    second.close()  # finished after the first writer's file: its copy goes
    assert timestamps(out) == [0, 1, 2]
    with h5py.File(out / "peaknet-second-00000.cxi", "r") as f:
        [record] = batch_records(f)
        assert f["/LCLS/timestamp"].shape == (0,)
    assert record["duplicate_of"] == "peaknet-first-00000.cxi" and record["events"] == 0


def test_inspect_names_batches_held_by_more_than_one_file(tmp_path: Path, capsys) -> None:
    frames = batch(0)
    paths = []
    for writer_id in ("a", "b"):  # files of two runs' directories, gathered later
        cfg = config(tmp_path / writer_id).output
        with CXIWriter(cfg, writer_id=writer_id) as writer:
            writer.write_batch(
                frames.images, [one_peak()] * 3, frames.metadata, [True] * 3, batch_id="x"
            )
            writer.commit("x", {"hits": 3, "non_hits": 0, "failed": {}}, (16, 16))
        paths += [str(p) for p in writer.files_written]
    assert cli.main(["inspect", "--json", *paths]) == 0
    total = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert total["duplicate_batches"] == {"x": paths} and total["batches"] == 2
    assert cli.main(["inspect", *paths]) == 0
    assert "DUPLICATES: 1 batches in more than one file" in capsys.readouterr().out


def test_a_process_is_dead_once_it_exited_and_unknown_on_another_host() -> None:
    child = SPAWN.Process(target=os.getpid)
    child.start()
    child.join(30)
    assert process_alive(os.uname().nodename, os.getpid()) is True
    assert process_alive(os.uname().nodename, child.pid) is False
    assert process_alive("another-host", os.getpid()) is None


@pytest.mark.parametrize("verdict", [True, False])
def test_the_deployments_word_on_a_writer_overrides_the_pid(tmp_path: Path, verdict) -> None:
    out = tmp_path / "out"
    orphans = SPAWN.Process(target=_orphan_writers, args=(str(out), {"elsewhere": 2}))
    orphans.start()
    orphans.join(60)
    recovered = recover_orphans(
        out, file_prefix="peaknet", own_id="me", alive=lambda writer_id: not verdict
    ).recovered
    assert recovered == ({} if not verdict else {"peaknet-elsewhere-00000.cxi": 2})


def test_a_file_left_while_being_created_goes_after_a_minute(tmp_path: Path) -> None:
    old = tmp_path / "peaknet-a-00000.cxi.creating"
    young = tmp_path / "peaknet-b-00000.cxi.creating"
    for path in (old, young):
        path.write_bytes(b"HDF5 metadata of a writer killed while creating its file")
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    recover_orphans(tmp_path, file_prefix="peaknet", own_id="me")
    assert [p.name for p in tmp_path.iterdir()] == [young.name]
