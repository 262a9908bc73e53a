"""A two-node Ray cluster on this machine (``ray start --head`` + ``ray start --address``, one
fake GPU each): the app is deployed across both nodes through the head's REST API, and frames
go through PeakNet replicas on both.

The cluster is apart from the session ``ray_cluster`` (its own ports and temp dir), and each
node is a ``ray start --block`` in its own process group, which teardown ends: ``ray stop``
would stop every Ray on the machine.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from peaknet_serve.pusher import push_frames
from tests.conftest import free_port
from tests.serve_app import (
    APP,
    FRAME_SHAPE,
    PEAKS_PER_HIT,
    app_config,
    applications,
    cxi_events,
    get,
    settled,
    status,
    undeploy,
    wait_for,
)

RAY = str(Path(sys.executable).with_name("ray"))


def ray_start(*args: str, log: Path) -> subprocess.Popen[bytes]:
    """One Ray node in the foreground (``--block``), in a process group of its own."""
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_metrics_report_interval_ms": "1000",  # Serve's counters reach /metrics sooner
    }
    with log.open("wb") as out:
        return subprocess.Popen(
            [RAY, "start", "--block", "--min-worker-port=0", "--max-worker-port=0", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )


def stop(node: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the node's group (GCS, raylet, workers exit at once), SIGKILL 5 s later:
    ``ray start --block`` itself takes about 30 s to notice."""
    for sig, wait_s in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
        try:
            os.killpg(node.pid, sig)
        except ProcessLookupError:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            node.wait(wait_s)


def node_ids(dashboard: str) -> list[str]:
    response = httpx.get(f"{dashboard}/nodes?view=summary", timeout=30)
    response.raise_for_status()
    summary = response.json()["data"]["summary"]
    return [n["raylet"]["nodeId"] for n in summary if n["raylet"]["state"] == "ALIVE"]


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[dict[str, str]]:
    """Head and worker, 2 logical CPUs and 1 fake GPU each; yields URLs like ``ray_cluster``."""
    temp = Path(tempfile.mkdtemp(prefix="ray2n-", dir="/tmp"))  # unix socket paths stay short
    gcs, dashboard, http = free_port(), free_port(), free_port()
    metrics = [free_port(), free_port()]
    common = ["--num-cpus=2", "--num-gpus=1", f"--temp-dir={temp}", "--disable-usage-stats"]
    nodes = [
        ray_start(
            "--head",
            f"--port={gcs}",
            "--node-ip-address=127.0.0.1",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--ray-client-server-port={free_port()}",
            f"--metrics-export-port={metrics[0]}",
            *common,
            log=temp / "head.out",
        )
    ]
    cluster = {
        "dashboard": f"http://127.0.0.1:{dashboard}",
        "http_port": str(http),
        "http": f"http://127.0.0.1:{http}",
        "metrics": " ".join(f"http://127.0.0.1:{port}/metrics" for port in metrics),
    }
    try:
        wait_for(lambda: len(node_ids(cluster["dashboard"])) == 1, timeout=120, what="the head")
        nodes.append(
            ray_start(
                f"--address=127.0.0.1:{gcs}",
                "--node-ip-address=127.0.0.1",
                f"--dashboard-agent-listen-port={free_port()}",
                f"--metrics-export-port={metrics[1]}",
                *common,
                log=temp / "worker.out",
            )
        )
        wait_for(lambda: len(node_ids(cluster["dashboard"])) == 2, timeout=120, what="a worker")
        yield cluster
    finally:
        for node in reversed(nodes):
            stop(node)
        shutil.rmtree(temp, ignore_errors=True)


def deploy_head_only(cluster: dict[str, str], app: dict[str, Any]) -> None:
    """Both nodes share one host here, so one HTTP proxy (on the head) serves the endpoints."""
    body = {
        "proxy_location": "HeadOnly",
        "http_options": {"host": "127.0.0.1", "port": int(cluster["http_port"])},
        "applications": [app],
    }
    response = httpx.put(f"{cluster['dashboard']}/api/serve/applications/", json=body, timeout=60)
    response.raise_for_status()


def across_two_nodes(tmp_path: Path, port: int) -> dict[str, Any]:
    """The test app, with two PeakNet replicas that each take a node's (fake) GPU."""
    app = app_config(tmp_path, port)
    for deployment in app["deployments"]:
        options = deployment["ray_actor_options"]
        if deployment["name"] == "PeakNet":
            deployment["num_replicas"] = 2
            options.update(num_cpus=0.5, num_gpus=1)
        else:
            options["num_cpus"] = 0.25
    return app


def replica_nodes(cluster: dict[str, str], deployment: str) -> list[str]:
    app = applications(cluster).get(APP, {})
    replicas = app.get("deployments", {}).get(deployment, {}).get("replicas", [])
    return [r["node_id"] for r in replicas if r.get("state") == "RUNNING"]


def frame_requests_by_replica(cluster: dict[str, str]) -> dict[str, int]:
    """Requests each PeakNet replica has run for the pump, from Serve's per-replica request
    counter on the nodes' Prometheus endpoints: the pump's calls carry no HTTP route
    (``route=""``), unlike the readiness probes made from ``/readyz``."""
    counts: dict[str, int] = {}
    for url in cluster["metrics"].split():
        for line in httpx.get(url, timeout=30).text.splitlines():
            if not line.startswith("ray_serve_deployment_request_counter"):
                continue
            labels, value = line.rsplit(" ", 1)
            if 'deployment="PeakNet"' in labels and 'route=""' in labels:
                replica = re.search(r'replica="([^"]+)"', labels)
                assert replica is not None, line
                counts[replica.group(1)] = max(counts.get(replica.group(1), 0), int(float(value)))
    return counts


@pytest.mark.cluster
@pytest.mark.slow
def test_the_app_runs_across_two_nodes_with_a_peaknet_replica_on_each(
    two_nodes: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    deploy_head_only(two_nodes, across_two_nodes(tmp_path, port))
    try:
        wait_for(
            lambda: get(two_nodes, "/readyz").status_code == 200, timeout=240, what="readiness"
        )
        wait_for(
            lambda: len(replica_nodes(two_nodes, "PeakNet")) == 2, timeout=120, what="2 PeakNets"
        )
        nodes = replica_nodes(two_nodes, "PeakNet")
        assert len(set(nodes)) == 2, f"both PeakNet replicas are on one node: {nodes}"
        assert set(nodes) == set(node_ids(two_nodes["dashboard"]))

        summary: dict[str, Any] = {}

        def push(rank: int) -> None:
            summary[rank] = push_frames(
                address=f"tcp://127.0.0.1:{port}",
                frames=48,
                batch_size=4,
                shape=FRAME_SHAPE,
                peaks=PEAKS_PER_HIT,
                hit_fraction=0.5,
                seed=21,
                rank=rank,
            )

        pushers = [threading.Thread(target=push, args=(rank,)) for rank in (0, 1)]
        for thread in pushers:
            thread.start()
        for thread in pushers:
            thread.join(120)
        wait_for(lambda: settled(two_nodes, 96), timeout=240, what="96 frames to settle")
        s = status(two_nodes)
        truth = [t for result in summary.values() for t in result.truth]
        assert (s["hits_written"], s["non_hits"], s["failed"]) == (
            sum(t.is_hit for t in truth),
            sum(not t.is_hit for t in truth),
            0,
        )

        def both_replicas_inferred() -> bool:
            counts = frame_requests_by_replica(two_nodes)  # one request per message of 4 frames
            return len(counts) == 2 and sum(counts.values()) == 96 // 4

        wait_for(both_replicas_inferred, timeout=60, what="frames through both PeakNet replicas")
        gpus = status(two_nodes)["gpus"]  # each replica posts every few seconds
        assert len({g["replica"] for g in gpus}) == 2, gpus
        assert all(g["healthy"] for g in gpus)
    finally:
        undeploy(two_nodes)

    events = cxi_events(tmp_path / "out")
    assert sorted(events["timestamps"]) == sorted(t.timestamp for t in truth if t.is_hit)
