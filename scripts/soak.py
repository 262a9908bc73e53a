"""Soak: push frames while replicas die and malformed messages arrive, then account for each one.

Starts the service as an operator does (``peaknet-serve run`` on a generated config: CPU, demo
model, ``write_mode: all`` so that every judged frame lands in a CXI file), pushes synthetic
frames, sends malformed messages (``peaknet_serve.wire.crafted``) from a second socket, and kills
replicas at set points of the stream: PeakNet and writers with ``ray.kill``, the ingress with
SIGKILL of its process. When everything has settled it stops the service (SIGINT: drain, close
the files, write the shutdown account) and prints

    pushed / received / written / non-hits / failed by reason / lost by reason

from the service's own account (the shutdown report's ``service`` totals), then checks frame by
frame, by timestamp, that every pushed frame is in exactly one column: CXI files (hit flag 1:
written, 0: non-hit), the batch quarantine (failed), or nowhere (lost). Frames the killed ingress
had taken from the socket before it could count them are lost too; the service cannot know their
number, so the account gives it as pushed - received; its columns therefore add up to pushed by
construction, and the check is the frame-by-frame column beside it.

    flock /tmp/ray-tests.lock python scripts/soak.py          # ~10 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import h5py
import httpx
import numpy as np
import pynng
import yaml

from peaknet_serve.cxi.format import HIT_PATH, METADATA_GROUP, TIMESTAMP_KEY
from peaknet_serve.pusher import PushSummary, push_frames
from peaknet_serve.wire.crafted import malformed_messages

APP = "peaknet"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service_config(args: argparse.Namespace, workdir: Path, port: int, http: int) -> dict:
    app = {
        "name": APP,
        "route_prefix": "/",
        "import_path": "deployments.app:build_app",
        "args": {
            "source": {"addresses": [f"tcp://127.0.0.1:{port}"], "recv_timeout_s": 0.2},
            "model": {"preset": "peaknet-demo", "weights": "builtin:peaknet-demo"},
            "engine": {"device": "cpu", "batch_buckets": [1, 2, 4, 8, 16]},
            "hits": {"min_peaks": 5},
            "output": {
                "output_dir": str(workdir / "out"),
                "events_per_file": 500,
                "write_mode": "all",
            },
            "quarantine_dir": str(workdir / "quarantine"),
            "ingress": {
                "max_in_flight_batches": args.max_in_flight,
                "drain_timeout_s": 120,
                "max_retries": 4,
                "write_retry_interval_s": 0.5,
                "quarantine_max_batches": 100_000,
            },
        },
        "deployments": [
            {
                "name": "Ingress",
                "health_check_period_s": 2,
                "ray_actor_options": {"num_cpus": 0.25},
            },
            {
                "name": "PeakNet",
                "num_replicas": 2,
                "ray_actor_options": {"num_cpus": 0.5},
                "user_config": {"max_batch_frames": 16, "batch_wait_timeout_s": 0.01},
            },
            {
                "name": "PeakFinderWriter",
                "num_replicas": 2,
                "ray_actor_options": {"num_cpus": 0.25},
            },
        ],
    }
    return {"http_options": {"host": "127.0.0.1", "port": http}, "applications": [app]}


class Service:
    """The service's HTTP endpoints, retried while no ingress answers (one was killed)."""

    def __init__(self, http: int) -> None:
        self.url = f"http://127.0.0.1:{http}"

    def status(self) -> dict[str, Any] | None:
        try:
            response = httpx.get(f"{self.url}/status", timeout=30)
            return response.json() if response.status_code == 200 else None
        except httpx.HTTPError:
            return None

    def totals(self) -> dict[str, Any]:
        while (answer := self.status()) is None:
            time.sleep(0.5)
        return answer["service"]

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=30).status_code == 200
        except httpx.HTTPError:
            return False


def live_replicas(deployment: str) -> list[Any]:
    from ray.util.state import list_actors

    return list_actors(
        filters=[("class_name", "=", f"ServeReplica:{APP}:{deployment}"), ("state", "=", "ALIVE")]
    )


def kill(deployment: str, want: int) -> str:
    """Kill one replica of ``deployment`` once ``want`` are alive; the ingress by SIGKILL."""
    import ray

    deadline = time.monotonic() + 300
    while len(actors := live_replicas(deployment)) < want:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{deployment} did not get back to {want} replicas")
        time.sleep(1)
    actor = actors[0]
    if deployment == "Ingress":
        os.kill(int(actor.pid), signal.SIGKILL)  # same host: the replica's process
    else:
        ray.kill(ray.get_actor(actor.name, namespace="serve"), no_restart=True)
    return actor.name


def chaos(args: argparse.Namespace, service: Service, log: list[str]) -> None:
    """Kill replicas as the service's received count passes points of the stream."""
    plan = sorted(
        [(0.10 + 0.25 * i, "PeakNet", 2) for i in range(args.peaknet_kills)]
        + [(0.20 + 0.45 * i, "PeakFinderWriter", 2) for i in range(args.writer_kills)]
        + [(0.50 + 0.15 * i, "Ingress", 1) for i in range(args.ingress_kills)]
    )
    for fraction, deployment, want in plan:
        while service.totals()["received"] < fraction * args.frames:
            time.sleep(0.2)
        name = kill(deployment, want)
        log.append(f"{time.strftime('%H:%M:%S')} killed {deployment} {name} at {fraction:.0%}")


def fuzz(port: int, count: int, rate: float, stop: threading.Event) -> Counter[str]:
    """Send ``count`` malformed messages at ``rate``/s; keep the socket until ``stop``."""
    sent: Counter[str] = Counter()
    with pynng.Push0(dial=f"tcp://127.0.0.1:{port}", send_timeout=600_000) as sock:
        for kind, message in malformed_messages(count):
            sock.send(message)
            sent[kind] += 1
            time.sleep(1 / rate)
        stop.wait()  # nng drops what is still queued when the socket closes
    return sent


def wait_settled(service: Service, pushed: int, quiet_s: float = 5.0) -> dict[str, Any]:
    """Totals once nothing is in flight and nothing has changed for ``quiet_s``."""
    last, since = None, time.monotonic()
    while True:
        totals = service.totals()
        key = (totals["received"], totals["messages_received"], totals["in_flight"])
        if key != last:
            last, since = key, time.monotonic()
        elif totals["in_flight"] == 0 and time.monotonic() - since >= quiet_s:
            return totals
        time.sleep(0.5)


def frames_on_disk(workdir: Path) -> tuple[Counter[int], Counter[int], Counter[int]]:
    """Timestamps in CXI files with hit 1 and hit 0, and in the batch quarantine."""
    written: Counter[int] = Counter()
    non_hits: Counter[int] = Counter()
    for path in sorted((workdir / "out").glob("*.cxi")):
        with h5py.File(path, "r") as f:
            stamps = f[f"{METADATA_GROUP}/{TIMESTAMP_KEY}"][()]
            hits = f[HIT_PATH][()]
        written.update(int(t) for t, h in zip(stamps, hits, strict=True) if h)
        non_hits.update(int(t) for t, h in zip(stamps, hits, strict=True) if not h)
    failed: Counter[int] = Counter()
    for path in sorted((workdir / "quarantine" / "batches").glob("*.npz")):
        with np.load(path) as data:
            failed.update(int(t) for t in data["metadata/timestamp"])
    return written, non_hits, failed


def report(
    args: argparse.Namespace,
    summary: PushSummary,
    account: dict[str, Any],
    sent: Counter[str],
    workdir: Path,
    kills: list[str],
) -> int:
    t = account["service"]
    pushed = summary.frames
    never_counted = pushed - t["received"]
    lost = dict(t["lost_by_reason"])
    lost["ingress_died, never counted (pushed - received)"] = never_counted
    truth = Counter(f.timestamp for f in summary.truth)
    written, non_hits, failed = frames_on_disk(workdir)
    places = [written, non_hits, failed]
    problems = []
    if any(n > 1 for n in truth.values()):
        problems.append("the pusher repeated a timestamp")
    for name, place in zip(("written", "non-hits", "failed"), places, strict=True):
        if dups := sum(1 for n in place.values() if n > 1):
            problems.append(f"{dups} frames are in the {name} column more than once")
        if stray := set(place) - set(truth):
            problems.append(f"{len(stray)} {name} frames were never pushed")
    seen = [set(p) for p in places]
    if (seen[0] & seen[1]) or (seen[0] | seen[1]) & seen[2]:
        problems.append("a frame is in two columns")
    nowhere = len(set(truth) - set().union(*seen))
    rows = [
        ("pushed", pushed, len(truth)),
        ("received", t["received"], ""),
        ("written (hits)", t["hits_written"], len(written)),
        ("non-hits", t["non_hits"], len(non_hits)),
        *((f"failed: {r}", n, "") for r, n in sorted(t["failed_by_reason"].items())),
        ("failed", t["failed"], len(failed)),
        *((f"lost: {r}", n, "") for r, n in sorted(lost.items())),
        ("lost", t["lost"] + never_counted, nowhere),
    ]
    for name, n, found in rows:
        if found != "" and n != found:
            problems.append(f"{name}: the account says {n}, frame by frame {found}")
    out = sys.stdout
    out.write("\n| frames | the service's account | frame by frame (timestamps) |\n")
    out.write("|---|---:|---:|\n")
    for name, n, found in rows:
        out.write(f"| {name} | {n} | {found} |\n")
    rejected = t["messages_rejected_by_reason"]
    taken = sum(rejected.values())
    out.write("\n| malformed messages | count |\n|---|---:|\n")
    out.write(f"| sent | {sum(sent.values())} |\n")
    for reason, n in sorted(rejected.items()):
        out.write(f"| rejected: {reason} | {n} |\n")
    out.write(f"| not counted (taken by the killed ingress) | {sum(sent.values()) - taken} |\n")
    out.write("\n" + "\n".join(kills) + "\n")
    out.write(
        "\nframe by frame: each pushed timestamp looked up in the CXI files (hit 1: written, 0: "
        "non-hit), the batch quarantine (failed) or nowhere (lost); "
        + ("every pushed frame in exactly one column\n" if not problems else "; ".join(problems))
        + "\n"
    )
    return 1 if problems else 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--frames", type=int, default=10_000, help="frames to push")
    add("--batch-size", type=int, default=8, help="frames per message")
    add("--shape", type=int, nargs=2, default=(128, 128), help="frame height and width (pixels)")
    add("--rate", type=float, default=0.0, help="frames/s; 0 = as fast as the service takes them")
    add("--malformed", type=int, default=1000, help="malformed messages to send")
    add("--malformed-rate", type=float, default=10.0, help="malformed messages/s")
    add("--peaknet-kills", type=int, default=3, help="PeakNet replicas to kill (ray.kill)")
    add("--writer-kills", type=int, default=2, help="writer replicas to kill (ray.kill)")
    add("--ingress-kills", type=int, default=1, help="ingress replicas to kill (SIGKILL)")
    add("--max-in-flight", type=int, default=4, help="ingress.max_in_flight_batches")
    add("--workdir", type=Path, default=None, help="keep files here (None: a temporary one)")
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="peaknet-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    port, http = free_port(), free_port()
    config = workdir / "service.yaml"
    config.write_text(yaml.safe_dump(service_config(args, workdir, port, http)))
    env = {**os.environ, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled")}
    with open(workdir / "service.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "peaknet_serve.cli", "run", str(config)],
            stdout=log,
            stderr=log,
            env=env,
        )
    service = Service(http)
    kills: list[str] = []
    try:
        deadline = time.monotonic() + 600
        while not service.ready():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the service did not come up; see {workdir / 'service.log'}")
            time.sleep(1)
        import ray

        ray.init(address="auto", log_to_driver=False)
        started = time.monotonic()
        stop_fuzz = threading.Event()
        results: dict[str, Any] = {}
        threads = [
            threading.Thread(
                target=lambda: results.__setitem__(
                    "summary",
                    push_frames(
                        address=f"tcp://127.0.0.1:{port}",
                        frames=args.frames,
                        batch_size=args.batch_size,
                        shape=args.shape,
                        peaks=8,
                        hit_fraction=0.5,
                        rate=args.rate,
                        seed=19,
                        connect_timeout_s=600,
                        linger_s=10,
                    ),
                ),
            ),
            threading.Thread(
                target=lambda: results.__setitem__(
                    "sent", fuzz(port, args.malformed, args.malformed_rate, stop_fuzz)
                ),
            ),
            threading.Thread(target=chaos, args=(args, service, kills)),
        ]
        for thread in threads:
            thread.start()
        threads[0].join()
        threads[2].join()
        totals = wait_settled(service, args.frames)
        stop_fuzz.set()
        threads[1].join()
        seconds = time.monotonic() - started
        sys.stdout.write(f"settled after {seconds:.0f} s: {json.dumps(totals)}\n")
    finally:
        proc.send_signal(signal.SIGINT)  # drain, close the CXI files, write the account
        proc.wait(timeout=600)
    reports = sorted((workdir / "out").glob("peaknet-shutdown-*.json"))
    account = json.loads(reports[-1].read_text())
    code = report(args, results["summary"], account, results["sent"], workdir, kills)
    if args.workdir is None:  # 10,000 frames of CXI files: keep them only when asked to
        shutil.rmtree(workdir, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
