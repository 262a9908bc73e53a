"""The whole Serve application on a real local Ray: sockets in, CXI files out, every frame counted.

Applications are deployed the way operators do it, through the Serve REST API (what
``serve deploy`` calls), so a redeploy that only changes ``num_replicas`` is tested as such.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import h5py
import httpx
import numpy as np
import pynng
import pytest

from peaknet_serve.pusher import push_frames
from tests.conftest import free_port

APP = "peaknet"


FRAME_SHAPE = (128, 128)
PEAKS_PER_HIT = 8


def app_config(tmp_path: Path, port: int, *, writer_replicas: int = 1) -> dict[str, Any]:
    """The embedded default shrunk for a 2-core CI machine, with the shipped demo model: a frame
    is a hit when it has at least 5 peaks, and the pusher's hit frames have 8."""
    return {
        "name": APP,
        "route_prefix": "/",
        "import_path": "deployments.app:build_app",
        "args": {
            "source": {"addresses": [f"tcp://127.0.0.1:{port}"], "recv_timeout_s": 0.2},
            "model": {"preset": "peaknet-demo", "weights": "builtin:peaknet-demo"},
            "engine": {"device": "cpu", "batch_buckets": [1, 2, 4, 8]},
            "hits": {"min_peaks": 5},
            "output": {"output_dir": str(tmp_path / "out"), "events_per_file": 40},
            "quarantine_dir": str(tmp_path / "quarantine"),
            "ingress": {"max_in_flight_batches": 3, "drain_timeout_s": 30},
        },
        "deployments": [
            {"name": "Ingress", "ray_actor_options": {"num_cpus": 0.5}},
            {
                "name": "PeakNet",
                "ray_actor_options": {"num_cpus": 1},
                "user_config": {"max_batch_frames": 8, "batch_wait_timeout_s": 0.01},
            },
            {
                "name": "PeakFinderWriter",
                "num_replicas": writer_replicas,
                "ray_actor_options": {"num_cpus": 0.5},
            },
        ],
    }


def deploy(cluster: dict[str, str], app: dict[str, Any]) -> None:
    body = {
        "http_options": {"host": "127.0.0.1", "port": int(cluster["http_port"])},
        "applications": [app],
    }
    response = httpx.put(f"{cluster['dashboard']}/api/serve/applications/", json=body, timeout=60)
    response.raise_for_status()


def undeploy(cluster: dict[str, str]) -> None:
    response = httpx.delete(f"{cluster['dashboard']}/api/serve/applications/", timeout=60)
    response.raise_for_status()
    wait_for(lambda: not serve_applications(cluster), timeout=120, what="application deletion")


def serve_applications(cluster: dict[str, str]) -> dict[str, Any]:
    response = httpx.get(f"{cluster['dashboard']}/api/serve/applications/", timeout=30)
    response.raise_for_status()
    return response.json().get("applications") or {}


def running_replicas(cluster: dict[str, str], deployment: str) -> int:
    app = serve_applications(cluster).get(APP, {})
    replicas = app.get("deployments", {}).get(deployment, {}).get("replicas", [])
    return sum(1 for r in replicas if r.get("state") == "RUNNING")


def wait_for(predicate, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def get(cluster: dict[str, str], path: str) -> httpx.Response:
    return httpx.get(f"{cluster['http']}{path}", timeout=30)


def status(cluster: dict[str, str]) -> dict[str, Any]:
    response = get(cluster, "/status")
    response.raise_for_status()
    return response.json()


def settled(cluster: dict[str, str], frames: int) -> bool:
    s = status(cluster)
    return s["received"] == frames and s["in_flight"] == 0


def cxi_events(out_dir: Path) -> dict[str, Any]:
    """Timestamps, photon energies and peak counts of every event in the finished CXI files."""
    timestamps, energies, n_peaks, files = [], [], [], []
    for path in sorted(out_dir.glob("*.cxi")):
        with h5py.File(path, "r") as f:
            timestamps.extend(int(t) for t in f["/LCLS/timestamp"][()])
            energies.extend(f["/LCLS/photon_energy_eV"][()])
            n = f["/entry_1/result_1/nPeaks"][()]
            n_peaks.extend(n)
            assert f["/entry_1/result_1/peakTotalIntensity"].shape[1] >= max(n, default=0)
            assert f["/entry_1/data_1/data"].shape[0] == len(n)
        files.append(path.name)
    return {"timestamps": timestamps, "energies": energies, "n_peaks": n_peaks, "files": files}


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
        for thread in pushers:
            thread.join(120)
        wait_for(lambda: settled(ray_cluster, 66), timeout=180, what="66 frames to settle")

        pushed = [t for summary in summaries.values() for t in summary.truth]
        s = status(ray_cluster)
        assert s["received"] == s["hits_written"] + s["non_hits"] + s["failed"] + s["in_flight"]
        assert (s["failed"], s["messages_rejected"]) == (0, 1)
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
                rate=20.0,
            )

        pusher = threading.Thread(target=push)
        pusher.start()
        wait_for(lambda: status(ray_cluster)["received"] >= 20, timeout=60, what="frames")
        uptime = status(ray_cluster)["uptime_s"]
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
        assert s["uptime_s"] > uptime, "the ingress restarted: a lightweight update was expected"
    finally:
        undeploy(ray_cluster)

    events = cxi_events(tmp_path / "out")
    assert sorted(events["timestamps"]) == sorted(t.timestamp for t in truth if t.is_hit)
    writer_ids = {name.rsplit("-", 1)[0] for name in events["files"]}
    assert len(writer_ids) == 2, f"expected files from two writers, got {events['files']}"
