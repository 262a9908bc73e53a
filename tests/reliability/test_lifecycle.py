"""Pushers that come and go, control endpoints behind a token, backpressure from a slow
writer, and a shutdown mid-stream that leaves complete files and an exact account."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.serve_app import (
    Pusher,
    app_config,
    cxi_timestamps,
    deploy,
    get,
    hit_timestamps,
    settled,
    shutdown_reports,
    status,
    undeploy,
    wait_for,
    wait_ready,
)

TOKEN_ENV = "PEAKNET_TEST_TOKEN"


@pytest.mark.slow
def test_pushers_before_and_after_the_service_and_restarted_all_get_through(
    ray_cluster: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    early = Pusher(port, frames=16, batch_size=4, seed=1, rank=0, connect_timeout_s=240)
    early.start()  # dials a listener that does not exist yet
    time.sleep(1)
    deploy(
        ray_cluster,
        app_config(
            tmp_path,
            port,
            ingress_env={TOKEN_ENV: "s3cret"},
            ingress={"control_token_env": TOKEN_ENV},
        ),
    )
    try:
        first = early.result()
        wait_ready(ray_cluster)
        second = Pusher(port, frames=12, batch_size=4, seed=2, rank=1).run_now()
        third = Pusher(port, frames=8, batch_size=4, seed=3, rank=2).run_now()  # restarted
        wait_for(lambda: settled(ray_cluster, 36), timeout=180, what="36 frames to settle")
        s = status(ray_cluster)
        assert (s["received"], s["failed"]) == (36, 0)

        url = ray_cluster["http"]
        refused = httpx.post(f"{url}/pause", timeout=30)
        assert refused.status_code == 401 and TOKEN_ENV in refused.json()["detail"]
        wrong = httpx.post(f"{url}/pause", headers={"Authorization": "Bearer nope"}, timeout=30)
        assert wrong.status_code == 401
        assert status(ray_cluster)["paused"] is False
        good = {"Authorization": "Bearer s3cret"}
        assert httpx.post(f"{url}/pause", headers=good, timeout=30).json() == {"paused": True}
        assert get(ray_cluster, "/readyz").status_code == 503  # read-only endpoints stay open
        assert httpx.post(f"{url}/resume", headers=good, timeout=30).json() == {"paused": False}
    finally:
        undeploy(ray_cluster)
    assert cxi_timestamps(tmp_path / "out") == hit_timestamps(first, second, third)


def ingress_rss(cluster: dict[str, str]) -> int:
    """Resident memory of the ingress replica's process, in bytes (Linux /proc)."""
    from ray.util.state import list_actors

    [actor] = list_actors(
        address=cluster["dashboard"],
        filters=[("class_name", "=", "ServeReplica:peaknet:Ingress"), ("state", "=", "ALIVE")],
    )
    for line in Path(f"/proc/{actor.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for the ingress process {actor.pid}")


@pytest.mark.slow
def test_a_slow_writer_slows_the_pusher_and_nothing_piles_up(
    ray_cluster: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    # gzip level 9 of every 256x256 frame ("all"): a writer far slower than the pusher
    app = app_config(
        tmp_path,
        port,
        output={"write_mode": "all", "compression": "gzip", "compression_level": 9},
        ingress={"max_in_flight_batches": 2},
    )
    app["args"]["source"]["buffer_messages"] = 4  # full long before the 40 messages are in
    deploy(ray_cluster, app)
    try:
        wait_ready(ray_cluster)
        Pusher(port, frames=8, batch_size=4, seed=4, shape=(256, 256)).run_now()  # warm up
        wait_for(lambda: settled(ray_cluster, 8), timeout=120, what="warm-up frames")
        rss_before = ingress_rss(ray_cluster)
        frames, batch = 160, 4
        most_in_flight = 0
        done = threading.Event()

        def watch() -> None:
            nonlocal most_in_flight
            while not done.is_set():
                most_in_flight = max(most_in_flight, status(ray_cluster)["in_flight"])
                time.sleep(0.2)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        summary = Pusher(
            port,
            frames=frames,
            batch_size=batch,
            seed=6,
            rank=1,
            shape=(256, 256),
            connect_timeout_s=240,
        ).run_now()
        pushed = status(ray_cluster)  # what the service had taken in when the pusher finished
        taken_when_pushed = pushed["received"] + pushed["receive_buffer"]["messages"] * batch
        wait_for(lambda: settled(ray_cluster, 8 + frames), timeout=300, what="frames to settle")
        done.set()
        watcher.join(5)
        rss_after = ingress_rss(ray_cluster)
        s = status(ray_cluster)
        assert (s["received"], s["failed"]) == (8 + frames, 0)
        # the pusher could only finish once all but a few socket buffers' worth was taken in
        # (received, or in the receive buffer): a full buffer stops reading the socket
        assert taken_when_pushed >= 8 + frames - 12 * batch, taken_when_pushed
        assert s["receive_buffer"]["times_full"] >= 1
        assert s["receive_buffer"]["peak_messages"] <= 4
        assert most_in_flight <= 2 * batch
        assert rss_after - rss_before < 64 * 2**20, (rss_before, rss_after)
        assert summary.frames == frames
    finally:
        undeploy(ray_cluster)
    assert len(cxi_timestamps(tmp_path / "out")) == 8 + frames


@pytest.mark.slow
def test_shutdown_mid_stream_leaves_complete_files_and_an_exact_account(
    ray_cluster: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    deploy(ray_cluster, app_config(tmp_path, port, output={"write_mode": "all"}))
    wait_ready(ray_cluster)
    pusher = Pusher(port, frames=400, batch_size=4, seed=8, rate=40.0, connect_timeout_s=5)
    pusher.start()
    wait_for(lambda: status(ray_cluster)["received"] >= 60, timeout=120, what="60 frames")
    undeploy(ray_cluster)  # what `serve shutdown` does: every replica is asked to stop
    pusher.join(60)
    out = tmp_path / "out"
    assert not list(out.glob("*.inprogress"))
    [report] = shutdown_reports(out)
    assert report["received"] == (
        report["hits_written"] + report["non_hits"] + report["failed"] + report["in_flight"]
    )
    assert report["unsettled_frames"] == report["in_flight"]
    written = cxi_timestamps(out)  # write_mode all: every judged frame is in a file
    assert len(written) == len(set(written)) == report["hits_written"] + report["non_hits"]
    assert report["received"] < 400
