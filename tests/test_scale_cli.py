"""``peaknet-serve scale``: the token lookup, the config edit, the header sent, and a real
scale-up and scale-down of the writer while frames flow through a local Ray."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from peaknet_serve import cli
from peaknet_serve.cli import scale as scale_cli
from peaknet_serve.cxi.format import written_files
from peaknet_serve.errors import ConfigError
from peaknet_serve.pusher import push_frames
from tests.conftest import free_port
from tests.serve_app import (
    APP,
    FRAME_SHAPE,
    PEAKS_PER_HIT,
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


def details(**writer: Any) -> dict[str, Any]:
    """What ``GET /api/serve/applications/`` answers, cut to the keys the command reads."""
    writer_entry = {"name": "PeakFinderWriter", "num_replicas": 1, **writer}
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": "0.0.0.0", "port": 8000},
        "grpc_options": {"port": 9000, "grpc_servicer_functions": []},
        "target_capacity": None,
        "applications": {
            APP: {
                "deployed_app_config": {
                    "name": APP,
                    "import_path": "deployments.app:build_app",
                    "args": {"hits": {"min_peaks": 5}},
                    "deployments": [{"name": "Ingress", "num_replicas": 1}, writer_entry],
                },
                "deployments": {
                    name: {
                        "replicas": [{"state": "RUNNING"}],
                        "deployment_config": {
                            "num_replicas": 1,
                            "ray_actor_options": {"num_cpus": 1, "num_gpus": gpus},
                        },
                    }
                    for name, gpus in (("Ingress", 0), ("PeakNet", 1), ("PeakFinderWriter", 0))
                },
            },
            "other": {
                "deployed_app_config": {"name": "other", "import_path": "x:y"},
                "deployments": {},
            },
        },
    }


def test_token_comes_from_the_env_then_the_token_path_then_the_home_file(tmp_path: Path) -> None:
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("from-home\n")
    (tmp_path / "tok").write_text(" from-path ")
    assert scale_cli.auth_token({"RAY_AUTH_TOKEN": "from-env"}, tmp_path) == "from-env"
    assert scale_cli.auth_token({"RAY_AUTH_TOKEN_PATH": str(tmp_path / "tok")}, tmp_path) == (
        "from-path"
    )
    assert scale_cli.auth_token({}, tmp_path) == "from-home"
    assert scale_cli.auth_token({}, tmp_path / "nobody") is None
    with pytest.raises(ConfigError, match="RAY_AUTH_TOKEN_PATH"):
        scale_cli.auth_token({"RAY_AUTH_TOKEN_PATH": str(tmp_path / "missing")}, tmp_path)


def test_only_the_named_deployment_changes_and_every_application_is_sent_back() -> None:
    running = details()
    body = scale_cli.scaled_config(running, app=APP, deployment="PeakNet", replicas=3)
    assert [a["name"] for a in body["applications"]] == [APP, "other"]
    ours = body["applications"][0]
    assert ours["deployments"] == [
        {"name": "Ingress", "num_replicas": 1},
        {"name": "PeakFinderWriter", "num_replicas": 1},
        {"name": "PeakNet", "num_replicas": 3},  # not in the config: added
    ]
    assert ours["args"] == {"hits": {"min_peaks": 5}}
    assert body["applications"][1] == running["applications"]["other"]["deployed_app_config"]
    assert body["http_options"] == {"host": "0.0.0.0", "port": 8000}
    assert "target_capacity" not in body  # None is not sent
    assert running["applications"][APP]["deployed_app_config"]["deployments"][1] == {
        "name": "PeakFinderWriter",
        "num_replicas": 1,
    }, "the input was modified"


def test_unknown_deployments_apps_and_autoscaled_deployments_are_refused() -> None:
    with pytest.raises(ConfigError, match="no deployment 'Writer'.*PeakFinderWriter"):
        scale_cli.scaled_config(details(), app=APP, deployment="Writer", replicas=2)
    with pytest.raises(ConfigError, match="pass --app"):
        scale_cli.pick_app(details(), None)
    with pytest.raises(ConfigError, match="no application 'nope'"):
        scale_cli.pick_app(details(), "nope")
    auto = details(autoscaling_config={"min_replicas": 1, "max_replicas": 4})
    with pytest.raises(ConfigError, match="autoscales"):
        scale_cli.scaled_config(auto, app=APP, deployment="PeakFinderWriter", replicas=2)
    body = scale_cli.scaled_config(
        auto, app=APP, deployment="PeakFinderWriter", replicas=2, replace_autoscaling=True
    )
    assert body["applications"][0]["deployments"][1] == {
        "name": "PeakFinderWriter",
        "num_replicas": 2,
    }


NODES = {  # what GET /api/v0/nodes answers: one live node of 4 CPUs and 1 GPU, one dead
    "result": True,
    "data": {
        "result": {
            "result": [
                {"state": "ALIVE", "resources_total": {"CPU": 4.0, "GPU": 1.0, "memory": 1e9}},
                {"state": "DEAD", "resources_total": {"CPU": 64.0, "GPU": 8.0}},
            ]
        }
    },
}


@pytest.fixture
def fake_dashboard() -> Iterator[dict[str, Any]]:
    """A real HTTP server on 127.0.0.1 that answers like the dashboard and records requests;
    it wants the token 'sekret'."""
    seen: dict[str, Any] = {"requests": []}

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, code: int, body: dict[str, Any] | None = None) -> None:
            data = json.dumps(body or {}).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _record(self) -> bool:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            seen["requests"].append((self.command, self.path, self.headers["Authorization"], body))
            if self.headers.get("Authorization") != "Bearer sekret":
                self._reply(401)
                return False
            return True

        def do_GET(self) -> None:  # noqa: N802
            if self._record():
                self._reply(200, NODES if self.path.startswith("/api/v0/nodes") else details())

        def do_PUT(self) -> None:  # noqa: N802
            if self._record():
                self._reply(200)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    seen["url"] = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield seen
    finally:
        server.shutdown()
        server.server_close()


def main_with_scale(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setitem(cli.SUBCOMMANDS, "scale", "peaknet_serve.cli.scale")
    return cli.main(argv)


def test_the_token_is_sent_as_a_bearer_header_and_a_refusal_says_where_to_put_it(
    fake_dashboard: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = fake_dashboard["url"]
    monkeypatch.setenv("RAY_AUTH_TOKEN", "sekret")
    argv = ["scale", "PeakFinderWriter", "3", "--address", url, "--app", APP]
    assert main_with_scale(argv, monkeypatch) == 0
    (get_, nodes, put) = fake_dashboard["requests"]
    assert get_[:3] == ("GET", "/api/serve/applications/", "Bearer sekret")
    assert nodes[0] == "GET" and nodes[1].startswith("/api/v0/nodes")
    assert put[:3] == ("PUT", "/api/serve/applications/", "Bearer sekret")
    writer = put[3]["applications"][0]["deployments"][1]
    assert writer == {"name": "PeakFinderWriter", "num_replicas": 3}
    assert "3 replica(s) requested" in capsys.readouterr().out

    monkeypatch.setenv("RAY_AUTH_TOKEN", "wrong")
    assert main_with_scale(argv, monkeypatch) == 1
    assert "RAY_AUTH_TOKEN" in capsys.readouterr().err
    assert len(fake_dashboard["requests"]) == 4, "nothing may be PUT after a refused GET"


def test_asking_for_more_replicas_than_the_cluster_can_place_warns(
    fake_dashboard: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """1 Ingress + 1 PeakNet + N writers of 1 CPU on a live node of 4 CPUs and 1 GPU."""
    monkeypatch.setenv("RAY_AUTH_TOKEN", "sekret")
    url = fake_dashboard["url"]
    assert (
        main_with_scale(
            ["scale", "PeakFinderWriter", "2", "--address", url, "--app", APP], monkeypatch
        )
        == 0
    )
    assert "will not all fit" not in capsys.readouterr().err
    assert (
        main_with_scale(
            ["scale", "PeakFinderWriter", "3", "--address", url, "--app", APP], monkeypatch
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "will not all fit (5 CPU asked for, 4 in the cluster)" in err
    assert (
        main_with_scale(["scale", "PeakNet", "2", "--address", url, "--app", APP], monkeypatch) == 0
    )
    assert "2 GPU asked for, 1 in the cluster" in capsys.readouterr().err


def writers_with_files(out_dir: Path) -> set[str]:
    """Writer ids with a CXI file (finished or ``.cxi.inprogress``) under ``out_dir``: files are
    ``{prefix}-{writer_id}-{seq}.cxi``."""
    return {p.name.split(".cxi")[0].rsplit("-", 1)[0] for p in written_files(out_dir)}


@pytest.mark.slow
def test_scaling_the_writer_up_and_down_while_frames_flow_loses_nothing(
    ray_cluster: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    frames = 200
    deploy(ray_cluster, app_config(tmp_path, port, writer_replicas=1))
    scale = ["scale", "--address", ray_cluster["dashboard"], "--wait", "120", "PeakFinderWriter"]
    try:
        wait_for(
            lambda: get(ray_cluster, "/readyz").status_code == 200, timeout=180, what="readiness"
        )
        summary: dict[str, Any] = {}

        def push() -> None:
            summary["s"] = push_frames(
                address=f"tcp://127.0.0.1:{port}",
                frames=frames,
                batch_size=4,
                shape=FRAME_SHAPE,
                peaks=PEAKS_PER_HIT,
                hit_fraction=0.5,
                seed=13,
                rate=6.0,  # ~33 s of frames: both scalings happen while they flow
            )

        pusher = threading.Thread(target=push)
        pusher.start()
        wait_for(lambda: status(ray_cluster)["received"] >= 20, timeout=60, what="frames")
        uptime = status(ray_cluster)["uptime_s"]
        assert main_with_scale([*scale, "2"], monkeypatch) == 0
        assert running_replicas(ray_cluster, "PeakFinderWriter") == 2
        mid = status(ray_cluster)["received"]
        assert mid < frames, "scaled up too late to test anything"
        wait_for(
            lambda: status(ray_cluster)["received"] >= mid + 20, timeout=60, what="more frames"
        )
        # Routing is the handle's choice: scaling down before the new replica got a batch would
        # leave nothing to test (and no file of its own to find below).
        wait_for(
            lambda: len(writers_with_files(tmp_path / "out")) >= 2,
            timeout=60,
            what="a batch written by the second writer",
        )
        assert main_with_scale([*scale, "1"], monkeypatch) == 0
        assert running_replicas(ray_cluster, "PeakFinderWriter") == 1
        assert status(ray_cluster)["received"] < frames, "scaled down too late to test anything"
        pusher.join(120)
        wait_for(lambda: settled(ray_cluster, frames), timeout=180, what="frames to settle")
        s = status(ray_cluster)
        truth = summary["s"].truth
        assert (s["hits_written"], s["non_hits"], s["failed"]) == (
            sum(t.is_hit for t in truth),
            sum(not t.is_hit for t in truth),
            0,
        )
        assert s["uptime_s"] > uptime, "the ingress restarted: only the writer was to change"
    finally:
        undeploy(ray_cluster)

    events = cxi_events(tmp_path / "out")
    assert sorted(events["timestamps"]) == sorted(t.timestamp for t in truth if t.is_hit)
    writer_ids = {name.rsplit("-", 1)[0] for name in events["files"]}
    assert len(writer_ids) >= 2, f"expected files from two writers, got {events['files']}"
