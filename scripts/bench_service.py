"""Benchmark the whole service on this host; with model and engine rows, all in one table.

    python scripts/bench_service.py --shapes 1920x1920 --layouts 1x1,1x2 \
        --service-output-dir /dev/shm
    python scripts/bench_service.py --shapes 1920x1920 --parts model,engine,service --skip-fp32 \
        --engine-precisions "" --layouts 1x2      # one run, one card: service/model ratio
    python scripts/bench_service.py --shapes 1920x1920 --layouts 1x2,multi-gpu:2   # 2 GPUs / 1

Parts (``--parts``, per shape):
    service    the whole service (``peaknet-serve run`` on deployments/gpu-node.yaml, local Ray,
               one PeakNet replica per GPU, --writers writers), once per --layouts entry; an
               entry ``multi-gpu:N`` runs deployments/multi-gpu.yaml on N GPUs instead, with
               the ingress and writer replicas per GPU that file ships:
               --pushers synthetic LCLStreamer ranks push --service-frames frames at full speed;
               frames/s settled (written or judged non-hit) in steady state, every frame
               accounted for, CXI events counted, and the host's cores busy per deployment,
               pushers and Ray over that window (host_cpu.py). The standard preset has random
               weights here, so the hit rule is off (every frame is written: the writers' worst
               case).
    model, engine   bench_model.py's parts (its flags apply), for the ratio lines: each service
               row over the fastest compiled model and engine rows of its shape in the same run.

Needs Ray Serve, pynng and FastAPI besides torch.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import torch
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_model  # noqa: E402
import benchlib  # noqa: E402
import host_cpu  # noqa: E402
from benchlib import Row, label, print_row  # noqa: E402

URL = "http://127.0.0.1:8000"


def bench_service(args: argparse.Namespace, shape: tuple[int, int], batch: int) -> list[Row]:
    """Pushers -> ingress -> PeakNet -> writers on this host, once per --layouts entry."""
    layouts = args.layouts or f"{torch.cuda.device_count()}x{_default_ingresses()}"
    return [_service_run(args, shape, batch, layout) for layout in _layouts(args, layouts)]


class Layout(NamedTuple):
    """One service run's shipped config file and its replica counts."""

    config: str
    gpus: int
    ingresses: int
    writers: int


def _layouts(args: argparse.Namespace, text: str) -> list[Layout]:
    """``GPUSxINGRESSES`` entries run gpu-node.yaml with --writers writers; ``multi-gpu:N`` runs
    multi-gpu.yaml on N GPUs with the ingresses and writers per GPU that file ships."""
    layouts = []
    for entry in text.split(","):
        if entry.startswith("multi-gpu:"):
            gpus = _count(entry, entry.removeprefix("multi-gpu:"))
            replicas = _replicas(_shipped("multi-gpu.yaml"))
            per_gpu = {name: count / replicas["PeakNet"] for name, count in replicas.items()}
            ingresses = round(per_gpu["Ingress"] * gpus)
            writers = round(per_gpu["PeakFinderWriter"] * gpus)
            layouts.append(Layout("multi-gpu.yaml", gpus, ingresses, writers))
        else:
            counts = entry.split("x")
            if len(counts) != 2:
                raise ValueError(f"--layouts {entry!r}: expected GPUSxINGRESSES or multi-gpu:N")
            gpus, ingresses = (_count(entry, n) for n in counts)
            layouts.append(Layout("gpu-node.yaml", gpus, ingresses, args.writers))
    return layouts


def _count(entry: str, text: str) -> int:
    """A replica or GPU count of a --layouts entry: an integer of at least 1."""
    if not (text.isascii() and text.isdecimal()) or int(text) < 1:
        raise ValueError(f"--layouts {entry!r}: {text!r} is not a count of at least 1")
    return int(text)


def _shipped(name: str) -> dict:
    with open(os.path.join(benchlib.ROOT, "deployments", name)) as fh:
        return yaml.safe_load(fh)


def _replicas(config: dict) -> dict[str, int]:
    """Replicas per deployment of a shipped config (autoscaled ones: their min_replicas)."""
    deployments = config["applications"][0]["deployments"]
    return {
        d["name"]: int(d.get("num_replicas") or d["autoscaling_config"]["min_replicas"])
        for d in deployments
    }


def _default_ingresses() -> int:
    """Ingress replicas in deployments/gpu-node.yaml (the default layout's per-GPU count)."""
    return _replicas(_shipped("gpu-node.yaml"))["Ingress"]


def _service_run(
    args: argparse.Namespace, shape: tuple[int, int], batch: int, layout: Layout
) -> Row:
    """One service run the way an operator starts it: frames/s settled in steady state. Its
    folder (tens of GB of CXI files, in RAM under /dev/shm) goes however the run ends."""
    workdir = tempfile.mkdtemp(prefix="peaknet-service-", dir=args.service_output_dir or None)
    try:
        row = _measure_service(args, shape, batch, layout, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print_row(row)
    return row


def _measure_service(
    args: argparse.Namespace, shape: tuple[int, int], batch: int, layout: Layout, workdir: str
) -> Row:
    import httpx

    from peaknet_serve.cli.inspect import summarize
    from peaknet_serve.cli.status import settled

    gpus, ingresses = layout.gpus, layout.ingresses
    config_path = os.path.join(workdir, "service.yaml")
    config = _service_config(args, shape, batch, workdir, layout)
    with open(config_path, "w") as fh:
        yaml.safe_dump(config, fh)
    config_name = os.path.splitext(layout.config)[0]
    log_path = os.path.join(
        args.out, f"service-{label(shape)}-{config_name}-{gpus}x{ingresses}.log"
    )
    cli = [sys.executable, "-m", "peaknet_serve.cli"]
    with open(log_path, "w") as log:
        service = subprocess.Popen([*cli, "run", config_path], stdout=log, stderr=log)
    pushers: list[subprocess.Popen] = []
    try:
        benchlib.wait_ready(service, URL, timeout=900)
        per_rank = args.service_frames // args.pushers
        total = per_rank * args.pushers
        pushers = [
            subprocess.Popen(
                [*cli, "--log-level=warning", "push", *_push_args(rank, ingresses > 1)]
                + [f"--frames={per_rank}", f"--batch-size={batch}", "--shape"]
                + [str(shape[0]), str(shape[1]), "--cycle=8", "--linger=60", "--no-progress"],
                stdout=subprocess.DEVNULL,
            )
            for rank in range(args.pushers)
        ]
        samples = []
        cpu: list[tuple[int, host_cpu.CpuSnapshot]] = []  # at 20% and 90% settled, as rate
        start = time.perf_counter()
        while True:
            answer = httpx.get(f"{URL}/status", timeout=30).json()
            status = answer["service"] | {"gpu": answer["gpu"]}  # every ingress added up
            done = status["hits_written"] + status["non_hits"] + status["failed"]
            samples.append((time.perf_counter() - start, done))
            opens = not cpu and done >= 0.2 * total
            closes = len(cpu) == 1 and cpu[0][0] < 0.9 * total <= done
            if opens or closes:
                cpu.append((done, host_cpu.snapshot()))
            if settled(answer, total):
                break
            if time.perf_counter() - start > 900:
                raise RuntimeError(f"service did not settle {total} frames: {status}")
            time.sleep(0.25)
    finally:
        stop(pushers, service)
    events = sum(summarize(path)["events"] for path in Path(workdir, "out").glob("*.cxi"))
    note = (
        f"{total} frames: {status['hits_written']} written, {status['non_hits']} non-hits, "
        f"{status['failed']} failed; {events} events in CXI files; "
        f"GPU {status.get('gpu', {}).get('name', '?')}"
    )
    variant = (
        f"{args.modes.split(',')[0]} {args.precisions.split(',')[0]}, {gpus} GPU, "
        f"{ingresses} ingress"
    )
    compression = config["applications"][0]["args"]["output"]["compression"]
    note += f"; {layout.config}, {layout.writers} writers, {compression}"
    if len(cpu) == 2:  # none when 20% and 90% fell on one poll, as for the rate
        cores = host_cpu.cores_used(cpu[0][1], cpu[1][1])
        note += "; " + host_cpu.describe(cores, os.cpu_count() or 0)
    return Row("service", label(shape), variant, batch, _steady_rate(samples, total), note)


def stop(
    pushers: list[subprocess.Popen], service: subprocess.Popen, *, grace_s: float = 300.0
) -> None:
    """Stop the pushers (once every frame settled, the rest of their linger is idle time), then
    the service with SIGINT: it drains, closes and renames the CXI files. The pushers together,
    then the service, get ``grace_s`` each; what has not exited by then is killed, so no service
    outlives its run's folder."""
    for pusher in pushers:
        pusher.terminate()
    deadline = time.monotonic() + grace_s
    for pusher in pushers:
        _wait_or_kill(pusher, deadline)
    service.send_signal(signal.SIGINT)
    _wait_or_kill(service, time.monotonic() + grace_s)


def _wait_or_kill(process: subprocess.Popen, deadline: float) -> None:
    try:
        process.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _push_args(rank: int, listen: bool) -> list[str]:
    """One ingress listens for every rank; several dial each rank, which listens."""
    address = _pusher_address(rank if listen else 0)
    return [f"--address={address}", f"--mode={'listen' if listen else 'dial'}", f"--rank={rank}"]


def _service_config(
    args: argparse.Namespace,
    shape: tuple[int, int],
    batch: int,
    workdir: str,
    layout: Layout,
) -> dict[str, object]:
    """The layout's shipped config (deployments/gpu-node.yaml or multi-gpu.yaml) for this host:
    random weights, every frame written, the layout's replica counts."""
    config = _shipped(layout.config)
    config["http_options"]["host"] = "127.0.0.1"
    app = config["applications"][0]
    if layout.ingresses > 1:
        addresses = [_pusher_address(rank) for rank in range(args.pushers)]
        source = {"transport": "nng", "mode": "dial", "addresses": addresses}
    else:
        source = {"transport": "nng", "mode": "listen", "addresses": [_pusher_address(0)]}
    app["args"] |= {
        "source": source,
        "quarantine_dir": os.path.join(workdir, "quarantine"),
        "model": {"preset": args.preset, "random_weights_seed": 0},
        "hits": {"min_peaks": 0, "max_peaks": 10**9},
    }
    app["args"]["engine"] |= {
        "precision": args.precisions.split(",")[0],
        "compile": args.modes.split(",")[0],
        "batch_buckets": sorted({1, 2, 4, 8, batch}),
        "compile_cache_dir": args.cache_dir or os.path.join(workdir, "compile-cache"),
    }
    app["args"]["warmup"] = {"frame_shapes": [list(shape)], "batch_sizes": [batch]}
    app["args"]["output"] |= {"output_dir": os.path.join(workdir, "out")}
    if args.compression:
        app["args"]["output"]["compression"] = args.compression
    for deployment in app["deployments"]:
        if deployment["name"] == "Ingress":
            deployment["num_replicas"] = layout.ingresses
        if deployment["name"] == "PeakNet":
            deployment["num_replicas"] = layout.gpus
            deployment["user_config"]["max_batch_frames"] = batch
        if deployment["name"] == "PeakFinderWriter":
            deployment.pop("autoscaling_config", None)
            deployment["num_replicas"] = layout.writers
    return config


def _pusher_address(rank: int) -> str:
    return f"tcp://127.0.0.1:{12321 + rank}"


def _steady_rate(samples: list[tuple[float, int]], total: int) -> float:
    """Frames/s between 20% and 90% of ``total`` settled: no ramp-up, no tail."""
    first = next(s for s in samples if s[1] >= 0.2 * total)
    last = next(s for s in samples if s[1] >= 0.9 * total)
    return (last[1] - first[1]) / max(last[0] - first[0], 1e-9)


def ratios(rows: list[Row]) -> list[str]:
    """Each service row over the fastest engine (f32 input) and compiled model row of its shape
    in the same run (issue 16's "service >= 95% of the engine"), and each service row on several
    GPUs over the fastest one-GPU service row of its shape (its ">= 1.9x one GPU" on two)."""
    lines = []
    services = [r for r in rows if r.part == "service"]
    for service in services:
        one_gpu = [
            r.frames_per_s
            for r in services
            if r.shape == service.shape and ", 1 GPU," in r.variant and r.frames_per_s
        ]
        if ", 1 GPU," not in service.variant and one_gpu:
            lines.append(
                f"ratio     {service.shape:9} {service.variant:34} / fastest 1-GPU service: "
                f"{service.frames_per_s / max(one_gpu):.2f}x "
                f"({service.frames_per_s:.1f} / {max(one_gpu):.1f})"
            )
    for service in services:
        for part, picks in (("engine", "f32 in"), ("model", "")):
            same = [
                r.frames_per_s
                for r in rows
                if r.part == part
                and r.shape == service.shape
                and picks in r.variant
                and "eager" not in r.variant
                and r.frames_per_s
            ]
            if same:
                ratio = service.frames_per_s / max(same)
                lines.append(
                    f"ratio     {service.shape:9} {service.variant:34} / fastest {part}: "
                    f"{ratio:.1%} ({service.frames_per_s:.1f} / {max(same):.1f})"
                )
    return lines


PARTS: dict[str, benchlib.Part] = {
    "model": bench_model.bench_model,
    "engine": bench_model.bench_engine,
    "service": bench_service,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    benchlib.add_common_arguments(parser)
    bench_model.add_arguments(parser)
    parser.add_argument("--parts", default="service", help=", ".join(PARTS))
    parser.add_argument("--service-frames", type=int, default=3200, help="frames in all")
    parser.add_argument("--pushers", type=int, default=4, help="pusher ranks")
    parser.add_argument("--writers", type=int, default=4, help="writer replicas")
    parser.add_argument(
        "--layouts",
        default="",
        help="runs as GPUSxINGRESSES of deployments/gpu-node.yaml, e.g. 1x1,2x2 (default: all "
        "GPUs x the ingresses of gpu-node.yaml), or multi-gpu:N for deployments/multi-gpu.yaml "
        "on N GPUs. With several ingresses the pushers listen and every ingress dials every "
        "pusher",
    )
    parser.add_argument(
        "--service-output-dir",
        default="",
        help="where CXI files go (a temp folder if ''; /dev/shm takes the disk out)",
    )
    parser.add_argument("--cache-dir", default="", help="compile cache (a temp folder if '')")
    parser.add_argument(
        "--compression",
        default="",
        choices=["", "none", "gzip", "bitshuffle_lz4", "bitshuffle_zstd"],
        help="the CXI files' output.compression ('': the shipped config's), to see what it costs",
    )
    args = parser.parse_args(argv)
    # SIGTERM (``timeout``, a batch system) unwinds like Ctrl-C: each service run's cleanup runs.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        if args.layouts:  # checked before minutes of model runs
            _layouts(args, args.layouts)
    except ValueError as exc:
        parser.error(str(exc))
    return benchlib.run_tool(args, PARTS, "bench_service", ratios)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    sys.exit(main())
