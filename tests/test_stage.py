"""The writer stage (``PeakStage``: ``BatchJudge`` then ``BatchWriter``) without Ray: frames
judged, a write that fails handed back, a batch sent again not written again, no flock."""

from __future__ import annotations

import errno
import fcntl
import shutil
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from peaknet_serve.cxi.format import (
    BATCHES_PATH,
    DATA_PATH,
    EVENT_BATCH_PATH,
    batch_records,
)
from peaknet_serve.peaks import Judged, PeaksConfig
from peaknet_serve.service.judge import BatchJudge
from tests.stage_helpers import batch, config, make_stage, masks_for, timestamps


def test_the_judge_keeps_batch_order_and_counts_a_frame_it_cannot_judge(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    judge = BatchJudge(PeaksConfig(), config(Path("unused"), min_peaks=1).hits)
    frames = batch(0, 3)
    frames.images[2, 4:6, 4:6] += 100.0  # a bright peak: a hit
    calls = iter([None, RuntimeError("broken label"), None])
    find = judge._finder.find

    def flaky(mask, image):
        error = next(calls)
        if error is not None:
            raise error
        return find(mask, image)

    monkeypatch.setattr(judge._finder, "find", flaky)
    judgement = judge(masks_for(frames), frames)
    assert [(frame.index, frame.hit) for frame in judgement.judged] == [(0, False), (2, True)]
    assert all(isinstance(frame, Judged) for frame in judgement.judged)
    assert judgement.failed == {"peak_finding": 1} and "broken label" in judgement.error
    outcome = judgement.outcome("w0")
    assert (outcome.hits, outcome.non_hits, outcome.frames) == (1, 1, 3)
    assert judgement.live is not None
    assert (judgement.live.frames, judgement.live.hits) == (2, 1)


def test_the_frames_judged_are_written_with_their_own_images_whether_or_not_one_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stage = make_stage(config(tmp_path / "out"), writer_id="w0")
    writer = stage._writer._writer
    handed: list[np.ndarray] = []
    write_batch = writer.write_batch

    def recording(images: np.ndarray, *args: Any, **kwargs: Any) -> None:
        handed.append(images)
        write_batch(images, *args, **kwargs)

    monkeypatch.setattr(writer, "write_batch", recording)
    whole, holed = batch(100), batch(200)
    stage.process(masks_for(whole), whole, batch_id="whole")
    assert handed[0] is whole.images  # every frame judged: no copy of the batch's frames
    find = stage._judge._finder.find
    calls = iter([None, RuntimeError("broken label"), None])

    def flaky(mask: np.ndarray, image: np.ndarray) -> Any:
        error = next(calls)
        if error is not None:
            raise error
        return find(mask, image)

    monkeypatch.setattr(stage._judge._finder, "find", flaky)
    outcome = stage.process(masks_for(holed), holed, batch_id="holed")
    assert outcome.failed == {"peak_finding": 1} and outcome.hits == 2
    stage.close()
    (path,) = (tmp_path / "out").glob("*.cxi")
    with h5py.File(path, "r") as f:
        stamps = [int(t) for t in f["/LCLS/timestamp"][()]]
        data = f[DATA_PATH][()]
    assert stamps == [100, 101, 102, 200, 202]
    expected = np.concatenate([whole.images, holed.images[[0, 2]]])
    np.testing.assert_array_equal(data, expected)


def test_a_batch_that_cannot_be_written_is_handed_back_and_written_once_the_disk_is_back(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    out.write_text("a file where the output directory should be")  # root ignores chmod
    stage = make_stage(config(out), writer_id="w0")
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
    assert [p.name for p in out.iterdir()] == ["peaknet-w0-00000.cxi"]  # no log, lock, probe


def test_a_directory_removed_mid_run_is_recreated_and_nothing_is_written_twice(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    stage = make_stage(config(out, events_per_file=4), writer_id="w0")
    first = batch(0, 4)  # fills and closes file 0
    assert stage.process(masks_for(first), first, batch_id="a").hits == 4
    moved = tmp_path / "moved"
    shutil.move(out, moved)  # the directory goes away under the writer
    second = batch(10, 3)
    outcome = stage.process(masks_for(second), second, batch_id="b")
    stage.close()
    assert outcome.write_error is None  # the next file recreated the directory
    assert timestamps(moved) + timestamps(out) == [0, 1, 2, 3, 10, 11, 12]


def test_a_batch_sent_to_a_second_writer_after_the_first_wrote_it_is_written_once(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    first = make_stage(config(out), writer_id="first")
    second = make_stage(config(out), writer_id="second")
    frames = batch(0)
    assert first.process(masks_for(frames), frames, batch_id="x").hits == 3
    again = second.process(masks_for(frames), frames, batch_id="x")  # as Ray Serve resends
    assert (again.hits, again.writer_id) == (3, "first")
    assert first.process(masks_for(frames), frames, batch_id="x").writer_id == "first"
    first.close()
    second.close()
    assert timestamps(out) == [0, 1, 2]


def test_every_event_carries_its_batch_id_and_each_batch_its_outcome(tmp_path: Path) -> None:
    out = tmp_path / "out"
    stage = make_stage(config(out, events_per_file=4, min_peaks=1), writer_id="w0")
    for first, batch_id in ((0, "a"), (3, "b")):
        frames = batch(first, 3)
        frames.images[:2, 4:6, 4:6] += 100.0  # two hits, one non-hit per batch
        assert stage.process(masks_for(frames), frames, batch_id=batch_id).hits == 2
    stage.close()
    with h5py.File(out / "peaknet-w0-00000.cxi", "r") as f:
        assert f[EVENT_BATCH_PATH].asstr()[()].tolist() == ["a", "a", "b", "b"]
        records = batch_records(f)
        assert f[BATCHES_PATH].shape == (2,)
    assert [(r["batch"], r["first"], r["events"]) for r in records] == [("a", 0, 2), ("b", 2, 2)]
    assert (records[1]["hits"], records[1]["non_hits"], records[1]["offered"]) == (2, 1, 2)


def test_a_writer_of_non_hits_only_leaves_no_empty_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    stage = make_stage(config(out, min_peaks=1), writer_id="w0")
    frames = batch(0, 3)
    assert stage.process(np.zeros_like(masks_for(frames)), frames, batch_id="n").non_hits == 3
    assert len(list(out.glob("*.cxi.inprogress"))) == 1  # the batch is on record meanwhile
    stage.close()
    assert list(out.iterdir()) == []


def test_writing_needs_no_flock_on_the_output_file_system(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_flock(fd: int, operation: int) -> None:  # Lustre mounted without -o flock
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    monkeypatch.setenv("HDF5_USE_FILE_LOCKING", "TRUE")  # the writer opens its files without
    out = tmp_path / "out"
    first = make_stage(config(out), writer_id="w0")
    second = make_stage(config(out), writer_id="w1")
    frames = batch(0)
    outcome = first.process(masks_for(frames), frames, batch_id="x")
    assert (outcome.hits, outcome.write_error) == (3, None)
    assert second.process(masks_for(frames), frames, batch_id="x").writer_id == "w0"
    first.close()
    second.close()
    assert timestamps(out) == [0, 1, 2]
