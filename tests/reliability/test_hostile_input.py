"""The live service under hostile input and a dying ingress (issue 19): an empty message, bombs
and every crafted kind are counted and the pull loop goes on; an ingress SIGKILLed mid-stream
leaves its counts in service totals that never go back, what it held that no writer committed
as ``ingress_died``, and what a writer committed as written."""

from __future__ import annotations

import copy
import os
import re
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pynng
import pytest

from peaknet_serve.wire import FieldMap
from peaknet_serve.wire.crafted import KINDS, malformed_messages
from tests.conftest import free_port
from tests.serve_app import (
    APP,
    Pusher,
    app_config,
    applications,
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

SERVICE_COUNTER = re.compile(r'^peaknet_service_frames_total\{outcome="(\w+)"\} ([0-9.e+]+)$', re.M)


@pytest.mark.slow
def test_empty_messages_bombs_and_every_crafted_kind_leave_the_loop_running(
    ray_cluster: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    deploy(ray_cluster, app_config(tmp_path, port))
    bad = malformed_messages(4 * len(KINDS))
    try:
        wait_ready(ray_cluster)
        replica = status(ray_cluster)["replica"]
        pusher = Pusher(port, frames=32, batch_size=4, seed=4, rate=16.0)
        pusher.start()
        with pynng.Push0(dial=f"tcp://127.0.0.1:{port}", send_timeout=60_000) as fuzzer:
            for _, message in bad:
                fuzzer.send(message)
            # nng has no linger: closing the socket drops a message still queued in it
            wait_for(
                lambda: status(ray_cluster)["messages_rejected"] >= len(bad),
                timeout=120,
                what="every bad message rejected",
            )
        pusher.result()
        wait_for(lambda: settled(ray_cluster, 32), timeout=180, what="32 frames to settle")
        s = status(ray_cluster)
        assert s["replica"] == replica, "the ingress was replaced"
        assert get(ray_cluster, "/healthz").json() == {"alive": True}
        assert s["received"] == 32 and s["failed"] == 0
        assert s["messages_rejected"] == len(bad)
        expected = Counter(kind for kind, _ in bad)
        by_reason = s["messages_rejected_by_reason"]
        assert by_reason["empty"] == expected["empty"]
        bombs = sum(n for kind, n in expected.items() if KINDS[kind][1] == {"too_large_decoded"})
        assert by_reason["too_large_decoded"] == bombs
        assert "internal" not in by_reason
        assert get(ray_cluster, "/metrics").status_code == 200
    finally:
        undeploy(ray_cluster)
    assert len(list((tmp_path / "quarantine").glob("*.bin"))) == len(bad)


def ingress_pid(cluster: dict[str, str]) -> int:
    from ray.util.state import list_actors

    [actor] = list_actors(
        address=cluster["dashboard"],
        filters=[("class_name", "=", f"ServeReplica:{APP}:Ingress"), ("state", "=", "ALIVE")],
    )
    return int(actor.pid)


class CounterWatch(threading.Thread):
    """Scrapes ``peaknet_service_frames_total`` every 0.2 s while the service answers."""

    def __init__(self, cluster: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.url = f"{cluster['http']}/metrics"
        self.samples: list[dict[str, float]] = []
        self.last_text = ""
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                text = httpx.get(self.url, timeout=5).text
            except httpx.HTTPError:
                text = ""
            found = {outcome: float(v) for outcome, v in SERVICE_COUNTER.findall(text)}
            if found:
                self.samples.append(found)
                self.last_text = text
            time.sleep(0.2)


def peaknet_batching(app: dict[str, Any], **user_config: float) -> dict[str, Any]:
    """``app`` with PeakNet's ``user_config`` set: Serve applies it in place, no restart."""
    changed = copy.deepcopy(app)
    changed["deployments"][1]["user_config"] = user_config
    return changed


@pytest.mark.slow
def test_an_ingress_killed_mid_stream_leaves_its_held_frames_as_ingress_died(
    ray_cluster: dict[str, str], tmp_path: Path
) -> None:
    """The ingress dies holding frames for sure: PeakNet is told (in place, like any
    ``user_config`` update) to wait 30 s for 64-frame batches, so the ingress's 4 batches of 4
    frames sit at the model when it is killed and no writer can commit them (the ingress chains
    each to a writer). The account outlives two config updates and the kill; so do the counts
    of frames without a wavelength, which only the killed replica saw (the first push has none)."""
    port = free_port()
    app = app_config(tmp_path, port, ingress={"max_in_flight_batches": 4})
    app["deployments"][0]["health_check_period_s"] = 2
    # A receive buffer of 8 messages: the default 64 takes the whole push (60 messages) at once,
    # and the kill would no longer land mid-stream (nothing left for the new replica).
    app["args"]["source"]["buffer_messages"] = 8
    deploy(ray_cluster, app)
    watch = CounterWatch(ray_cluster)
    try:
        wait_ready(ray_cluster)
        before = status(ray_cluster)["replica"]
        watch.start()
        no_wavelength = FieldMap(wavelength="/data/not_the_wavelength")
        first = Pusher(port, frames=40, batch_size=4, seed=8, fields=no_wavelength).run_now()
        wait_for(lambda: settled(ray_cluster, 40), timeout=120, what="the first 40 frames")
        deploy(ray_cluster, peaknet_batching(app, max_batch_frames=64, batch_wait_timeout_s=30))
        wait_for(
            lambda: applications(ray_cluster)[APP]["status"] == "RUNNING",
            timeout=60,
            what="the update applied",
        )
        time.sleep(2)
        pusher = Pusher(
            port, frames=160, batch_size=4, seed=9, rank=1, rate=20.0, connect_timeout_s=180.0
        )
        pusher.start()
        samples: list[tuple[int, int]] = []

        def holding() -> bool:
            s = status(ray_cluster)
            samples.append((s["in_flight"], s["received"]))
            return s["in_flight"] == 16 and samples[-4:] == [samples[-1]] * 4

        wait_for(holding, timeout=120, what="the ingress holding 4 batches at the model")
        held = status(ray_cluster)
        time.sleep(0.5)  # its last post carries what it holds (posted within 0.1 s)
        os.kill(ingress_pid(ray_cluster), signal.SIGKILL)
        deploy(ray_cluster, peaknet_batching(app, max_batch_frames=8, batch_wait_timeout_s=0.01))

        def replaced() -> dict[str, Any] | None:
            s = status(ray_cluster)
            return s if s["replica"] != before else None

        wait_for(replaced, timeout=180, what="a new ingress replica")
        summary = pusher.result(timeout=300)
        wait_for(
            lambda: (
                status(ray_cluster)["service"]["ingress_replicas_gone"] == 1
                and status(ray_cluster)["service"]["ingress_replicas_resolving"] == 0
                and settled(ray_cluster, 1)
            ),
            timeout=180,
            what="the dead replica counted gone, its batches looked up, the new one settled",
        )
        s = status(ray_cluster)
        totals = s["service"]
        time.sleep(1)
    finally:
        watch.stop.set()
        undeploy(ray_cluster)
    # The 16 frames it held at the model are lost as ingress_died, exactly (its last post), and
    # each message still in its receive buffer as at least one frame (undecoded)
    died = totals["lost_by_reason"].get("ingress_died", 0)
    assert held["in_flight"] == 16
    assert died == 16 + totals["messages_lost"] and totals["lost_at_least"] is True
    assert totals["received"] >= held["received"] + s["received"]
    assert totals["received"] == (
        totals["hits_written"] + totals["non_hits"] + totals["failed"] + totals["lost"]
    )
    assert totals["lost"] == died and totals["in_flight"] == 0
    assert totals["received"] <= first.frames + summary.frames
    assert s["received"] < totals["received"]  # the new replica alone starts from 0
    # Prometheus: the service counters never went backwards, the kill and updates included
    assert len(watch.samples) > 10
    for outcome in ("received", "hit_written", "non_hit", "failed", "lost"):
        series = [sample.get(outcome, 0.0) for sample in watch.samples]
        assert series == sorted(series), (outcome, series)
    assert watch.samples[-1].get("lost", 0.0) == died
    assert f'peaknet_service_frames_lost_total{{reason="ingress_died"}} {float(died)}' in (
        watch.last_text
    )
    # the dead replica's frames without a wavelength (NaN energy), all of the first push's
    assert (totals["batches_without_wavelength"], totals["frames_without_energy"]) == (10, 40)
    assert s["metadata"]["frames_without_energy"] == 0  # the new replica saw none
    assert "peaknet_service_batches_without_wavelength_total 10.0" in watch.last_text
    assert 'peaknet_service_frames_energy_not_measured_total{energy="missing"} 40.0' in (
        watch.last_text
    )
    # what the writers committed is counted written, once
    assert len(cxi_timestamps(tmp_path / "out")) == totals["hits_written"]
    assert set(cxi_timestamps(tmp_path / "out")) <= set(hit_timestamps(first, summary))
    [report] = [r for r in shutdown_reports(tmp_path / "out") if r.get("service")]
    assert report["service"]["lost_by_reason"].get("ingress_died", 0) == died
    assert report["service"]["received"] >= totals["received"]
    assert report["service"]["frames_without_energy"] == 40
