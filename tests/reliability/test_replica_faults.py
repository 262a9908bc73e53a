"""Replicas killed mid-stream and a writer that cannot write: every frame is still accounted
for, and the CXI files hold exactly the hits pushed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.serve_app import (
    APP,
    Pusher,
    app_config,
    cxi_timestamps,
    deploy,
    get,
    hit_timestamps,
    running_replicas,
    settled,
    status,
    undeploy,
    wait_for,
    wait_ready,
)


def kill_a_replica(cluster: dict[str, str], deployment: str) -> str:
    """``ray.kill`` one live replica actor of ``deployment``; returns its actor name."""
    import ray
    from ray.util.state import list_actors

    actors = list_actors(
        address=cluster["dashboard"],
        filters=[("class_name", "=", f"ServeReplica:{APP}:{deployment}"), ("state", "=", "ALIVE")],
    )
    assert actors, f"no live {deployment} replica to kill"
    name = actors[0].name
    ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)
    return name


@pytest.mark.slow
def test_killing_model_and_writer_replicas_mid_stream_loses_no_frame(
    ray_cluster: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    deploy(ray_cluster, app_config(tmp_path, port, peaknet_replicas=2, writer_replicas=2))
    killed: list[str] = []
    try:
        wait_ready(ray_cluster)
        wait_for(
            lambda: (
                running_replicas(ray_cluster, "PeakNet") == 2
                and running_replicas(ray_cluster, "PeakFinderWriter") == 2
            ),
            timeout=120,
            what="two replicas of each",
        )
        pusher = Pusher(port, frames=240, batch_size=4, rate=24.0, seed=21)
        pusher.start()
        for target, after in (
            ("PeakNet", 30),
            ("PeakFinderWriter", 80),
            ("PeakNet", 130),
            ("PeakFinderWriter", 180),
        ):
            wait_for(
                lambda a=after: status(ray_cluster)["received"] >= a,
                timeout=120,
                what=f"{after} frames",
            )
            killed.append(kill_a_replica(ray_cluster, target))
        summary = pusher.result()
        wait_for(lambda: settled(ray_cluster, 240), timeout=240, what="240 frames to settle")
        s = status(ray_cluster)
        assert s["received"] == 240
        assert s["received"] == s["hits_written"] + s["non_hits"] + s["failed"]
        assert s["failed"] == 0, s["failed_by_reason"]
        assert s["hits_written"] == len(hit_timestamps(summary))
    finally:
        undeploy(ray_cluster)
    assert len(killed) == 4
    out = tmp_path / "out"
    assert not list(out.glob("*.inprogress")), "a killed writer's file was left unfinished"
    set_aside = [p.name for p in out.iterdir() if p.suffix in (".orphaned", ".unreadable")]
    assert not set_aside, f"recovery set files aside: {set_aside}"
    assert cxi_timestamps(out) == hit_timestamps(summary)


@pytest.mark.slow
def test_a_writer_that_cannot_write_is_reported_keeps_its_frames_and_catches_up(
    ray_cluster: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    out = tmp_path / "out"
    out.write_text("a file where the output directory should be")  # root ignores chmod
    deploy(ray_cluster, app_config(tmp_path, port))
    try:
        wait_for(
            lambda: get(ray_cluster, "/healthz").status_code == 200, timeout=240, what="the ingress"
        )
        wait_for(lambda: get(ray_cluster, "/readyz").json()["model"], timeout=240, what="the model")
        ready = get(ray_cluster, "/readyz")
        assert ready.status_code == 503
        assert ready.json()["writer"] is False and ready.json()["writer_errors"]
        pusher = Pusher(port, frames=24, batch_size=4, seed=5)
        pusher.start()
        wait_for(lambda: status(ray_cluster)["writers"], timeout=60, what="a write failure")
        time.sleep(2)
        s = status(ray_cluster)
        assert s["in_flight"] > 0 and s["failed"] == 0  # kept for retry, not dropped
        assert s["writer"]["writable"] is False
        assert any(not w["ok"] for w in s["writers"].values())
        assert get(ray_cluster, "/readyz").status_code == 503
        out.unlink()  # the problem clears
        summary = pusher.result()
        wait_for(lambda: settled(ray_cluster, 24), timeout=120, what="24 frames to settle")
        s = status(ray_cluster)
        assert (s["received"], s["failed"]) == (24, 0)
        assert s["hits_written"] == len(hit_timestamps(summary))
        wait_ready(ray_cluster)
    finally:
        undeploy(ray_cluster)
    assert cxi_timestamps(out) == hit_timestamps(summary)
