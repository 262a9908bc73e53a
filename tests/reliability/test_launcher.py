"""``peaknet-serve run`` (deployments/launcher.py): SIGTERM drains like Ctrl-C, a second
signal forces the exit, and the launcher's module does not import Ray until it runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from peaknet_serve.synthetic import SyntheticFrames
from tests.conftest import free_port
from tests.serve_app import (
    FRAME_SHAPE,
    PEAKS_PER_HIT,
    Pusher,
    app_config,
    cxi_timestamps,
    shutdown_reports,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[2]
RUN = (
    "import argparse, sys\n"
    "from deployments import launcher\n"
    "parser = argparse.ArgumentParser()\n"
    "launcher.add_arguments(parser)\n"
    "import logging; logging.basicConfig(level='INFO')\n"
    "sys.exit(launcher.run(parser.parse_args(sys.argv[1:])))\n"
)


def test_a_second_signal_forces_the_exit() -> None:
    code = (
        "import os, signal, threading\n"
        "from deployments.launcher import install_signal_handlers\n"
        "stop = threading.Event()\n"
        "install_signal_handlers(stop)\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "assert stop.wait(5)\n"
        "os.kill(os.getpid(), signal.SIGINT)\n"
        "import time; time.sleep(10)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=60)
    assert done.returncode == 130


def test_importing_the_launcher_does_not_import_ray() -> None:
    code = "import sys, deployments.launcher\nassert 'ray' not in sys.modules\n"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


@pytest.mark.cluster
@pytest.mark.slow
def test_sigterm_drains_in_flight_batches_and_leaves_complete_files(tmp_path: Path) -> None:
    port, http_port = free_port(), free_port()
    app = app_config(tmp_path, port)
    config = tmp_path / "serve_config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "http_options": {"host": "127.0.0.1", "port": http_port},
                "applications": [app],
            }
        )
    )
    url = f"http://127.0.0.1:{http_port}"
    log = (tmp_path / "launcher.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-c", RUN, str(config)],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "RAY_ADDRESS": ""},
    )
    try:
        wait_for(
            lambda: httpx.get(f"{url}/readyz", timeout=10).status_code == 200,
            timeout=300,
            what="the launched service",
        )
        pusher = Pusher(port, frames=200, batch_size=4, seed=12, rate=30.0, connect_timeout_s=5)
        pusher.start()
        wait_for(
            lambda: httpx.get(f"{url}/status", timeout=10).json()["received"] >= 40,
            timeout=120,
            what="40 frames",
        )
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=180) == 0, (tmp_path / "launcher.log").read_text()[-3000:]
        pusher.join(60)
    finally:
        if process.poll() is None:
            process.kill()
        log.close()
    out = tmp_path / "out"
    assert not list(out.glob("*.inprogress"))
    [report] = shutdown_reports(out)
    assert report["in_flight"] == 0 and report["failed"] == 0, report
    assert report["received"] == report["hits_written"] + report["non_hits"]
    written = cxi_timestamps(out)
    assert len(written) == len(set(written)) == report["hits_written"]
    # the pusher was cut off mid-stream: regenerate what it was sending
    _, truth = SyntheticFrames(
        shape=FRAME_SHAPE, peaks=PEAKS_PER_HIT, hit_fraction=0.5, seed=12
    ).batch(0, 200)
    assert set(written) <= {t.timestamp for t in truth if t.is_hit}


def test_the_drain_line_gives_the_service_account_with_what_a_dead_ingress_lost() -> None:
    from deployments.launcher import _summary

    replica = {"received": 1208, "hits_written": 596, "non_hits": 612, "failed": 0}
    service = {
        "received": 1917,
        "hits_written": 889,
        "non_hits": 1020,
        "failed": 0,
        "in_flight": 0,
        "lost": 8,
        "lost_at_least": True,
        "lost_by_reason": {"ingress_died": 8},
        "messages_lost": 0,
    }
    line = _summary({**replica, "in_flight": 0, "service": service})
    assert line.startswith("received=1917, hits_written=889, non_hits=1020, failed=0")
    assert "lost=at least 8 {'ingress_died': 8} (messages_lost=0)" in line
    assert "lost" not in _summary({**replica, "in_flight": 0})
