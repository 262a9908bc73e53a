"""Through the running service: uint32 sentinel gaps, NaN gaps and hot pixels in the bad-pixel
mask and the geometry's bad regions are masked, and the spots of the rest of each frame are
written; a frame of NaN fails as ``invalid_pixels`` and is quarantined."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pynng
import pytest

from peaknet_serve.accuracy import match_frame
from peaknet_serve.peaks import Peaks
from peaknet_serve.wire import encode_batch
from tests.conftest import free_port
from tests.serve_app import app_config, deploy, get, settled, status, undeploy, wait_for, wait_ready
from tests.test_invalid_pixels import SENTINEL, away_from, frames, gap_geometry, gap_mask


def message(images: np.ndarray, first_timestamp: int) -> bytes:
    n = len(images)
    return encode_batch(
        {
            "/data/data": images[:, None],
            "/data/wavelength": np.full(n, 0.13),
            "/data/timestamp": np.arange(first_timestamp, first_timestamp + n, dtype=np.uint64),
        },
        fmt="hdf5",
    )


def written_peaks(out_dir: Path) -> dict[int, Peaks]:
    found: dict[int, Peaks] = {}
    for path in sorted(out_dir.glob("*.cxi")):
        with h5py.File(path, "r") as f:
            result = f["/entry_1/result_1"]
            for row, timestamp in enumerate(f["/LCLS/timestamp"][()]):
                n = int(result["nPeaks"][row])
                x = result["peakXPosRaw"][row, :n].astype(float)
                y = result["peakYPosRaw"][row, :n].astype(float)
                zeros = np.zeros(n)
                found[int(timestamp)] = Peaks(
                    x, y, zeros, zeros.astype(np.int32), zeros, zeros, zeros.astype(np.int32)
                )
    return found


@pytest.mark.slow
def test_service_masks_invalid_pixels_and_finds_the_other_spots(
    ray_cluster: dict[str, str], tmp_path: Path
) -> None:
    images, truths = frames()
    rest = [away_from(t, gap_mask()) for t in truths]
    gaps = gap_mask()
    # The gap rows come from a mask file, the columns from the geometry's bad regions.
    rows = np.zeros_like(gaps)
    rows[127:129] = True
    mask_file = tmp_path / "mask.npy"
    np.save(mask_file, (~rows).astype(np.uint8))  # Cheetah convention: 1 good
    sentinel = np.rint(images).astype(np.uint32)
    sentinel[:, gaps] = SENTINEL
    nan_gaps = images.astype(np.float32)
    nan_gaps[:, gaps] = np.nan
    hot = np.rint(images).astype(np.uint16)
    hot[:, gaps] = 65535
    kinds = {"clean": (images, 100), "sentinel": (sentinel, 200), "nan": (nan_gaps, 300)}
    kinds["hot"] = (hot, 400)

    port = free_port()
    geometry = gap_geometry(tmp_path / "gaps.geom", rows=False)
    app = app_config(tmp_path, port, output={"write_mode": "all", "geometry_file": str(geometry)})
    app["args"]["peaks"] = {"flag_morethan": SENTINEL - 1, "bad_pixel_mask": str(mask_file)}
    deploy(ray_cluster, app)
    try:
        wait_ready(ray_cluster)
        with pynng.Push0(dial=f"tcp://127.0.0.1:{port}", send_timeout=60_000) as pusher:
            for kind_images, first in kinds.values():
                pusher.send(message(kind_images, first))
            pusher.send(message(np.full((1, *gaps.shape), np.nan, np.float32), 900))
            frames_sent = 4 * len(images) + 1
            wait_for(lambda: settled(ray_cluster, frames_sent), timeout=240, what="every frame")
        s = status(ray_cluster)
        metrics = get(ray_cluster, "/metrics").text
    finally:
        undeploy(ray_cluster)
    assert s["failed_by_reason"] == {"invalid_pixels": 1}
    assert s["hits_written"] + s["non_hits"] == 4 * len(images)
    assert len(list((tmp_path / "quarantine" / "batches").glob("*.npz"))) == 1
    masked = [
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("peaknet_masked_pixels_total")
    ]
    # sentinel, NaN and hot frames: the gaps; clean frames: mask file and geometry; the NaN frame
    assert masked == [float(4 * len(images) * gaps.sum() + gaps.size)]

    found = written_peaks(tmp_path / "out")
    matched = {
        kind: sum(
            match_frame(truth, found[first + i]).n_matched for i, truth in enumerate(rest)
        )
        for kind, (_, first) in kinds.items()
    }
    assert matched["clean"] >= 0.9 * sum(t.n_peaks for t in rest)
    for kind in ("sentinel", "nan", "hot"):
        assert matched[kind] >= 0.9 * matched["clean"], matched


@pytest.mark.slow
def test_service_fails_frames_a_bad_pixel_mask_does_not_fit_with_their_reason(
    ray_cluster: dict[str, str], tmp_path: Path
) -> None:
    images, _ = frames()
    mask_file = tmp_path / "small.npy"
    np.save(mask_file, np.ones((16, 16), dtype=np.uint8))  # readable, fits no frame sent
    port = free_port()
    app = app_config(tmp_path, port)
    app["args"]["peaks"] = {"bad_pixel_mask": str(mask_file)}
    deploy(ray_cluster, app)
    try:
        wait_ready(ray_cluster)
        with pynng.Push0(dial=f"tcp://127.0.0.1:{port}", send_timeout=60_000) as pusher:
            pusher.send(message(images.astype(np.float32), 100))
            pusher.send(message(images.astype(np.float32), 200))
            wait_for(
                lambda: settled(ray_cluster, 2 * len(images)), timeout=240, what="every frame"
            )
        s = status(ray_cluster)
    finally:
        undeploy(ray_cluster)
    assert s["failed_by_reason"] == {"bad_pixel_mask": 2 * len(images)}
    assert s["last_error"].startswith("bad_pixel_mask: peaks.bad_pixel_mask has shape (16, 16)")


@pytest.mark.slow
def test_frames_the_geometry_does_not_fit_fail_as_geometry(
    ray_cluster: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    geometry = gap_geometry(tmp_path / "gaps.geom", rows=False)  # one 256 x 256 panel
    app = app_config(tmp_path, port, output={"write_mode": "all", "geometry_file": str(geometry)})
    deploy(ray_cluster, app)
    try:
        wait_ready(ray_cluster)
        with pynng.Push0(dial=f"tcp://127.0.0.1:{port}", send_timeout=60_000) as pusher:
            pusher.send(message(np.ones((2, 512, 512), np.float32), 100))  # outside the panel
            pusher.send(message(np.ones((3, 512, 512), np.float32), 200))
            wait_for(lambda: settled(ray_cluster, 5), timeout=240, what="every frame")
        s = status(ray_cluster)
    finally:
        undeploy(ray_cluster)
    assert s["failed_by_reason"] == {"geometry": 5}
    assert s["hits_written"] + s["non_hits"] == 0
    assert len(list((tmp_path / "quarantine" / "batches").glob("*.npz"))) in (1, 2)  # merged?
