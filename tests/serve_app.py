"""Deploying the application through the Serve REST API (as ``serve deploy`` does), pushing to
it and reading its state and files, for the tests that run the whole service (frames of 128x128
with 8 peaks per hit: the shipped demo model finds them)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import httpx

from peaknet_serve.pusher import PushSummary, push_frames

APP = "peaknet"
FRAME_SHAPE = (128, 128)
PEAKS_PER_HIT = 8
MIN_PEAKS = 5


def app_config(
    tmp_path: Path,
    port: int,
    *,
    peaknet_replicas: int = 1,
    writer_replicas: int = 1,
    ingress: dict[str, Any] | None = None,
    output: dict[str, Any] | None = None,
    decode: dict[str, Any] | None = None,
    ingress_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The embedded default with the demo model, shrunk for a 2-core CI machine."""
    ingress_options: dict[str, Any] = {"num_cpus": 0.25}
    if ingress_env:
        ingress_options["runtime_env"] = {"env_vars": ingress_env}
    return {
        "name": APP,
        "route_prefix": "/",
        "import_path": "deployments.app:build_app",
        "args": {
            "source": {"addresses": [f"tcp://127.0.0.1:{port}"], "recv_timeout_s": 0.2},
            "decode": decode or {},
            "model": {"preset": "peaknet-demo", "weights": "builtin:peaknet-demo"},
            "engine": {"device": "cpu", "batch_buckets": [1, 2, 4, 8]},
            "hits": {"min_peaks": MIN_PEAKS},
            "output": {
                "output_dir": str(tmp_path / "out"),
                "events_per_file": 40,
                **(output or {}),
            },
            "quarantine_dir": str(tmp_path / "quarantine"),
            "ingress": {
                "max_in_flight_batches": 3,
                "drain_timeout_s": 30,
                "request_timeout_s": 120,
                "max_retries": 4,
                "write_retry_interval_s": 0.5,
                **(ingress or {}),
            },
        },
        "deployments": [
            {"name": "Ingress", "ray_actor_options": ingress_options},
            {
                "name": "PeakNet",
                "num_replicas": peaknet_replicas,
                "ray_actor_options": {"num_cpus": 0.5},
                "user_config": {"max_batch_frames": 8, "batch_wait_timeout_s": 0.01},
            },
            {
                "name": "PeakFinderWriter",
                "num_replicas": writer_replicas,
                "ray_actor_options": {"num_cpus": 0.25},
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
    """Delete the application, as ``serve shutdown`` does: replicas drain and close files."""
    response = httpx.delete(f"{cluster['dashboard']}/api/serve/applications/", timeout=60)
    response.raise_for_status()
    wait_for(lambda: not applications(cluster), timeout=180, what="application deletion")


def applications(cluster: dict[str, str]) -> dict[str, Any]:
    response = httpx.get(f"{cluster['dashboard']}/api/serve/applications/", timeout=30)
    response.raise_for_status()
    return response.json().get("applications") or {}


def running_replicas(cluster: dict[str, str], deployment: str) -> int:
    app = applications(cluster).get(APP, {})
    replicas = app.get("deployments", {}).get(deployment, {}).get("replicas", [])
    return sum(1 for r in replicas if r.get("state") == "RUNNING")


def wait_for(predicate: Callable[[], object], *, timeout: float, what: str) -> None:
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
    return s["received"] >= frames and s["in_flight"] == 0


def wait_ready(cluster: dict[str, str]) -> None:
    wait_for(lambda: get(cluster, "/readyz").status_code == 200, timeout=240, what="readiness")


def cxi_timestamps(out_dir: Path) -> list[int]:
    """Every event's timestamp in the finished CXI files, sorted (duplicates kept)."""
    found: list[int] = []
    for path in sorted(out_dir.glob("*.cxi")):
        with h5py.File(path, "r") as f:
            found.extend(int(t) for t in f["/LCLS/timestamp"][()])
            assert f["/entry_1/data_1/data"].shape[0] == f["/LCLS/timestamp"].shape[0]
    return sorted(found)


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


def hit_timestamps(*summaries: PushSummary) -> list[int]:
    return sorted(t.timestamp for s in summaries for t in s.truth if t.is_hit)


def shutdown_reports(out_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(out_dir.glob("peaknet-shutdown-*.json"))]


class Pusher(threading.Thread):
    """``push_frames`` in a thread; ``summary`` holds its PushSummary, ``error`` what it raised."""

    def __init__(self, port: int, **kwargs: Any) -> None:
        super().__init__(daemon=True)
        self.kwargs = {
            "address": f"tcp://127.0.0.1:{port}",
            "shape": FRAME_SHAPE,
            "peaks": PEAKS_PER_HIT,
            "hit_fraction": 0.5,
            **kwargs,
        }
        self.summary: PushSummary | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.summary = push_frames(**self.kwargs)
        except BaseException as exc:  # reported by the test
            self.error = exc

    def run_now(self, timeout: float = 300) -> PushSummary:
        """Push in this thread's place: start, then wait for the result."""
        self.start()
        return self.result(timeout)

    def result(self, timeout: float = 300) -> PushSummary:
        self.join(timeout)
        assert not self.is_alive(), "the pusher did not finish"
        assert self.error is None, f"the pusher failed: {self.error!r}"
        assert self.summary is not None
        return self.summary
