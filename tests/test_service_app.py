"""The whole Serve application on a real local Ray: sockets in, CXI files out, every frame counted.

Applications are deployed the way operators do it, through the Serve REST API (what
``serve deploy`` calls), so a redeploy that only changes ``num_replicas`` is tested as such.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pynng
import pytest

from deployments.board import GPU_POST_INTERVAL_S
from peaknet_serve.pusher import push_frames
from tests.conftest import free_port
from tests.serve_app import (
    FRAME_SHAPE,
    PEAKS_PER_HIT,
    Pusher,
    app_config,
    cxi_events,
    deploy,
    get,
    running_replicas,
    settled,
    status,
    undeploy,
    wait_for,
)


@pytest.mark.slow
def test_frames_flow_from_pushers_to_cxi_files_and_every_frame_is_counted(
    ray_cluster: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    deploy(ray_cluster, app_config(tmp_path, port))
    try:
        wait_for(
            lambda: get(ray_cluster, "/readyz").status_code == 200, timeout=180, what="readiness"
        )
        summaries: dict[int, Any] = {}

        def push(rank: int, frames: int, batch_size: int) -> None:
            summaries[rank] = push_frames(
                address=f"tcp://127.0.0.1:{port}",
                frames=frames,
                batch_size=batch_size,
                shape=FRAME_SHAPE,
                peaks=PEAKS_PER_HIT,
                hit_fraction=0.5,
                seed=7,
                rank=rank,
            )

        pushers = [
            threading.Thread(target=push, args=(0, 37, 8)),  # partial last batch of 5
            threading.Thread(target=push, args=(1, 29, 6)),  # partial last batch of 5
        ]
        for thread in pushers:
            thread.start()
        with pynng.Push0(dial=f"tcp://127.0.0.1:{port}") as bad:
            bad.send(b"this is not an LCLStreamer message")
            # nng has no linger: closing the socket drops a message still queued in it
            wait_for(
                lambda: status(ray_cluster)["messages_rejected"] >= 1,
                timeout=60,
                what="the bad message taken before its socket closes",
            )
        for thread in pushers:
            thread.join(120)
        wait_for(lambda: settled(ray_cluster, 66), timeout=180, what="66 frames to settle")

        pushed = [t for summary in summaries.values() for t in summary.truth]
        s = status(ray_cluster)
        assert s["received"] == s["hits_written"] + s["non_hits"] + s["failed"] + s["in_flight"]
        assert (s["received"], s["failed"], s["messages_rejected"]) == (66, 0, 1)
        assert s["gpu"]["device"] == "cpu" and s["gpu"]["healthy"] is True
        # every PeakNet replica (one here); a replica killed by an earlier test ages out
        wait_for(lambda: len(status(ray_cluster)["gpus"]) == 1, timeout=60, what="one GPU post")
        assert [g["device"] for g in status(ray_cluster)["gpus"]] == ["cpu"]
        counts = ("received", "hits_written", "non_hits", "failed", "in_flight")
        assert {k: s["service"][k] for k in counts} == {k: s[k] for k in counts}
        assert (s["service"]["ingress_replicas"], s["service"]["lost"]) == (1, 0)
        assert s["hits_written"] == sum(t.is_hit for t in pushed), s
        assert 0 < s["hits_written"] < 66
        assert get(ray_cluster, "/healthz").json() == {"alive": True}
        ready = get(ray_cluster, "/readyz")
        assert ready.status_code == 200 and ready.json()["ready"] is True
        metrics = get(ray_cluster, "/metrics").text
        assert 'peaknet_frames_total{outcome="received"} 66.0' in metrics
        assert "peaknet_messages_rejected_total" in metrics
        assert len(list((tmp_path / "quarantine").glob("*.bin"))) == 1
        live = get(ray_cluster, "/live.json").json()
        assert live["totals"]["frames"] == s["hits_written"] + s["non_hits"]
        assert live["replicas"]["PeakNet"] == 1
        assert live["last_hit"] is not None
    finally:
        undeploy(ray_cluster)

    assert not list((tmp_path / "out").glob("*.inprogress"))
    events = cxi_events(tmp_path / "out")
    assert sorted(events["timestamps"]) == sorted(t.timestamp for t in pushed if t.is_hit)
    assert min(events["n_peaks"]) >= 5
    by_timestamp = {t.timestamp: t for t in pushed}
    expected_energy = [1239.84198 / by_timestamp[t].wavelength_nm for t in events["timestamps"]]
    np.testing.assert_allclose(events["energies"], expected_energy, rtol=1e-9)


@pytest.mark.slow
def test_scaling_the_writer_by_config_redeploy_loses_nothing(
    ray_cluster: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    deploy(ray_cluster, app_config(tmp_path, port, writer_replicas=1))
    try:
        wait_for(
            lambda: get(ray_cluster, "/readyz").status_code == 200, timeout=180, what="readiness"
        )
        summary: dict[str, Any] = {}

        def push() -> None:
            summary["s"] = push_frames(
                address=f"tcp://127.0.0.1:{port}",
                frames=160,
                batch_size=4,
                shape=FRAME_SHAPE,
                peaks=PEAKS_PER_HIT,
                hit_fraction=0.5,
                seed=11,
                rate=8.0,  # 20 s of frames: the second writer starts while they flow
            )

        pusher = threading.Thread(target=push)
        pusher.start()
        wait_for(lambda: status(ray_cluster)["received"] >= 20, timeout=60, what="frames")
        before = status(ray_cluster)
        deploy(ray_cluster, app_config(tmp_path, port, writer_replicas=2))
        wait_for(
            lambda: running_replicas(ray_cluster, "PeakFinderWriter") == 2,
            timeout=120,
            what="a second writer replica",
        )
        assert status(ray_cluster)["received"] < 160, "scaled too late to test anything"
        pusher.join(120)
        wait_for(lambda: settled(ray_cluster, 160), timeout=180, what="160 frames to settle")
        s = status(ray_cluster)
        truth = summary["s"].truth
        assert (s["hits_written"], s["non_hits"], s["failed"]) == (
            sum(t.is_hit for t in truth),
            sum(not t.is_hit for t in truth),
            0,
        )
        assert s["replica"] == before["replica"], "the ingress restarted: a lightweight update"
        assert s["uptime_s"] > before["uptime_s"]
    finally:
        undeploy(ray_cluster)

    events = cxi_events(tmp_path / "out")
    assert sorted(events["timestamps"]) == sorted(t.timestamp for t in truth if t.is_hit)
    writer_ids = {name.rsplit("-", 1)[0] for name in events["files"]}
    assert len(writer_ids) == 2, f"expected files from two writers, got {events['files']}"


@pytest.mark.slow
def test_two_ingress_replicas_dial_one_pusher_and_status_adds_them_up(
    ray_cluster: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    app = app_config(tmp_path, port)
    app["args"]["source"]["mode"] = "dial"  # the pusher listens, as LCLStreamer's role: server
    app["deployments"][0]["num_replicas"] = 2
    app["deployments"][1]["health_check_period_s"] = 60  # GPU posts must not wait for it
    deploy(ray_cluster, app)
    try:
        wait_for(lambda: running_replicas(ray_cluster, "Ingress") == 2, timeout=180, what="2")
        wait_for(
            lambda: get(ray_cluster, "/readyz").status_code == 200, timeout=180, what="readiness"
        )
        pusher = Pusher(port, mode="listen", frames=64, batch_size=4, seed=13, linger_s=3.0)
        summary = pusher.run_now()

        def service() -> dict[str, int]:
            return status(ray_cluster)["service"]

        wait_for(
            lambda: service()["received"] == 64 and service()["in_flight"] == 0,
            timeout=180,
            what="64 frames settled over both ingresses",
        )
        totals = service()
        truth = summary.truth
        assert totals["ingress_replicas"] == 2
        assert (totals["hits_written"], totals["non_hits"], totals["failed"]) == (
            sum(t.is_hit for t in truth),
            sum(not t.is_hit for t in truth),
            0,
        )
        for _ in range(4):  # the PeakNet replica keeps its post fresh between health checks
            [gpu] = status(ray_cluster)["gpus"]
            assert gpu["age_s"] <= GPU_POST_INTERVAL_S + 2.5, gpu
            time.sleep(3)
    finally:
        undeploy(ray_cluster)

    events = cxi_events(tmp_path / "out")
    assert sorted(events["timestamps"]) == sorted(t.timestamp for t in truth if t.is_hit)
