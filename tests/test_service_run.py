"""The service account lives as long as the application: in-place updates (``peaknet-serve
scale``, a new ``user_config``) followed by an ingress death never send its totals back."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from peaknet_serve.service.accounting import FrameLedger
from peaknet_serve.service.run_account import RunAccount
from peaknet_serve.service.totals import PEERS_REJECTED, STOPPED, render_totals
from tests.conftest import free_port


def ledger(received: int, hits: int) -> dict:
    led = FrameLedger()
    led.message_received(100)
    led.frames_received(received)
    led.settle(hits=hits, non_hits=0, failed=None)
    return led.snapshot()


def test_a_replacement_ingress_adds_to_the_account_of_the_same_run() -> None:
    account = RunAccount()
    account.post("a", ledger(40, 40), run=100.0)
    before = account.totals(max_age_s=60)
    account.posts["a"] = (time.time() - 120, account.posts["a"][1])  # a died, silent 120 s
    account.post("b", ledger(8, 8), run=100.0)  # its replacement, same application lifetime
    after = account.totals(max_age_s=60)
    assert before["received"] == 40
    assert after["received"] == 48 and after["hits_written"] == 48
    assert after["ingress_replicas_gone"] == 1


def test_a_replica_that_could_not_tell_its_run_is_not_dropped_when_a_run_arrives() -> None:
    account = RunAccount()
    account.post("a", ledger(30, 30), run=None)  # the controller did not answer it
    account.post("b", ledger(10, 10), run=100.0)
    account.post("a", ledger(31, 31), run=None)
    totals = account.totals(max_age_s=60)
    assert totals["received"] == 41 and totals["ingress_replicas"] == 2


def test_live_replicas_of_one_run_all_count_and_a_new_deployment_starts_afresh() -> None:
    account = RunAccount()
    for replica in ("a", "b", "c"):
        account.post(replica, ledger(10, 10), run=100.0)
    assert account.totals(max_age_s=60)["received"] == 30
    assert not account.post("old", ledger(5, 5), run=50.0)  # a deleted application's replica
    assert account.totals(max_age_s=60)["received"] == 30
    account.post("d", ledger(2, 2), run=200.0)  # the application was deployed again
    assert account.totals(max_age_s=60)["received"] == 2


UPDATE_IN_PLACE = r"""
import json, sys, time
import ray
from ray import serve
from deployments.board import application_run

ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
serve.start(http_options={"host": "127.0.0.1", "port": int(sys.argv[1])})


@serve.deployment(name="Ingress", num_replicas=1, ray_actor_options={"num_cpus": 0})
class Ingress:
    def reconfigure(self, config):
        self.config = config

    def __call__(self):
        return "ok"


out = {}
serve.run(Ingress.options(user_config={"x": 1}).bind(), name="app", route_prefix=None)
out["run"] = application_run("app")
time.sleep(0.05)
serve.run(Ingress.options(num_replicas=2).bind(), name="app", route_prefix=None)
out["run_scaled"] = application_run("app")
time.sleep(0.05)
serve.run(Ingress.options(user_config={"x": 2}).bind(), name="app", route_prefix=None)
out["run_reconfigured"] = application_run("app")
serve.delete("app")
serve.run(Ingress.bind(), name="app", route_prefix=None)
out["run_redeployed"] = application_run("app")
sys.stdout.write("\nRESULT " + json.dumps(out) + "\n")
serve.shutdown()
ray.shutdown()
"""


@pytest.mark.cluster
def test_the_run_is_the_same_across_in_place_updates_and_new_after_a_delete() -> None:
    """Real Ray Serve: scaling and a new ``user_config`` keep the run; deleting and deploying
    again renews it. (``last_deployed_time_s``, the old key, moves with every config deploy
    through the REST API: the killed-ingress test in tests/reliability covers that path.)"""
    proc = subprocess.run(
        [sys.executable, "-c", UPDATE_IN_PLACE, str(free_port())],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    out = json.loads(line.removeprefix("RESULT "))
    assert out["run"] is not None
    assert out["run_scaled"] == out["run"] == out["run_reconfigured"]
    assert out["run_redeployed"] > out["run"]


def test_rejected_peers_add_up_over_replicas_dead_ones_included_and_reach_metrics() -> None:
    account = RunAccount()
    account.post("a", ledger(4, 4) | {PEERS_REJECTED: 3}, run=100.0)
    account.posts["a"] = (time.time() - 120, account.posts["a"][1])  # a died
    account.post("b", ledger(2, 2) | {PEERS_REJECTED: 2}, run=100.0)  # its replacement
    totals = account.totals(max_age_s=60)
    assert totals[PEERS_REJECTED] == 5
    assert "peaknet_service_peers_rejected_total 5.0" in render_totals(totals).decode()


def test_frames_without_a_measured_energy_add_up_over_replicas_and_outlive_a_dead_one() -> None:
    """``MetadataWatch`` counts are per ingress replica; the service's account keeps a dead
    replica's and adds its replacement's, in /status and /metrics, through its final post."""
    energy = ("batches_without_wavelength", "frames_with_fixed_energy", "frames_without_energy")
    account = RunAccount()
    account.post("a", ledger(40, 40) | dict(zip(energy, (5, 0, 40), strict=True)), run=100.0)
    account.posts["a"] = (time.time() - 120, account.posts["a"][1])  # a died
    account.post("b", ledger(12, 12) | dict(zip(energy, (1, 8, 0), strict=True)), run=100.0)
    account.post(  # b's final post after its drain
        "b", ledger(16, 16) | dict(zip(energy, (2, 16, 0), strict=True)) | {STOPPED: True}
    )
    totals = account.totals(max_age_s=60)
    assert [totals[key] for key in energy] == [7, 16, 40]
    text = render_totals(totals).decode()
    assert "peaknet_service_batches_without_wavelength_total 7.0" in text
    assert 'peaknet_service_frames_energy_not_measured_total{energy="fixed"} 16.0' in text
    assert 'peaknet_service_frames_energy_not_measured_total{energy="missing"} 40.0' in text
