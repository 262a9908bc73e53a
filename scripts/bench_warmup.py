"""Time to ready of a fresh PeakNet replica-like process: empty compile cache, then filled.

    python scripts/bench_warmup.py --shapes 1920x1920 --batch 16 --modes default \
        --precisions bf16 --seconds 2 --new-shape 1024x1024

Per shape: a fresh process does what a PeakNet replica does before it reports ready (GPU health
check, model, engine, compile and run of the first --modes mode at --batch) with an empty compile
cache (--cache-dir, a temp folder if ''), then a second fresh process with the cache the first
filled. The second also times known-shape batches while batches of a frame shape not warmed up
(--new-shape) run (uncompiled; with --modes aot until its package, built in the background, is
loaded). "Ready" is measured from the parent's exec of the child, torch's import included.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from benchlib import Row, label, print_row  # noqa: E402

from peaknet_serve.engine import EngineConfig, InferenceEngine  # noqa: E402
from peaknet_serve.model import InputConfig  # noqa: E402


def bench_warmup(args: argparse.Namespace, shape: tuple[int, int], batch: int) -> list[Row]:
    """Ready time of fresh processes: empty compile cache, then the cache the first one filled."""
    cache = args.cache_dir or tempfile.mkdtemp(prefix="peaknet-compile-cache-")
    # Read torch's files from disk once, so the first child is not also timing a cold page cache.
    subprocess.run(
        [sys.executable, "-c", "import torch; torch.zeros(1, device='cuda')"], check=True
    )
    rows = []
    for what, extra in (("empty cache", []), ("cache filled", ["--background"])):
        command = [
            sys.executable,
            os.path.abspath(__file__),
            "--child",
            f"--shapes={label(shape)}",
            f"--batch={batch}",
            f"--preset={args.preset}",
            f"--modes={args.modes.split(',')[0]}",
            f"--precisions={args.precisions.split(',')[0]}",
            f"--cache-dir={cache}",
            f"--new-shape={args.new_shape}",
            f"--seconds={args.seconds}",
            *extra,
        ]
        start = time.time()
        result = subprocess.run(
            command, capture_output=True, text=True, env=os.environ | {"BENCH_T0": str(start)}
        )
        sys.stderr.write(result.stderr[-4000:])
        if result.returncode != 0:
            print(f"warmup child ({what}) failed with {result.returncode}", flush=True)
            continue
        facts = json.loads(result.stdout.strip().splitlines()[-1])
        print(f"warmup {what}: {json.dumps(facts)}", flush=True)
        rows += _rows(args, shape, batch, what, facts)
    return rows


def _rows(
    args: argparse.Namespace, shape: tuple[int, int], batch: int, what: str, facts: dict
) -> list[Row]:
    note = (
        f"ready {facts['ready_s']:.1f} s after exec (import {facts['import_s']:.1f}, "
        f"health {facts['health_s']:.2f}, model {facts['model_s']:.1f}, "
        f"compile+run {facts['warm_s']:.1f})"
    )
    rows = [Row("warmup", label(shape), f"fresh process, {what}", batch, 0, note)]
    print_row(rows[-1])
    if "known_fps_before" in facts:
        note = (
            f"{facts['known_fps_during']:.1f} f/s while {args.new_shape} ran uncompiled "
            f"({facts['new_fps']:.1f} f/s, first batch {facts['new_first_s']:.1f} s)"
        )
        if "new_fps_compiled" in facts:
            note += (
                f"; {args.new_shape} compiled after {facts['new_compiled_after_s']:.0f} s, "
                f"then {facts['new_fps_compiled']:.1f} f/s"
            )
        variant = "known shape, before new"
        rows.append(Row("warmup", label(shape), variant, batch, facts["known_fps_before"], note))
        print_row(rows[-1])
    return rows


def child(args: argparse.Namespace) -> int:
    """One fresh replica-like start: health check, model, engine, warm-up; facts as JSON."""
    from peaknet_serve.engine import GPUHealth, WarmupConfig

    spawned = float(os.environ["BENCH_T0"])
    facts: dict[str, object] = {"import_s": time.time() - spawned}
    shape = benchlib.parse_shape(args.shapes)
    start = time.perf_counter()
    health = GPUHealth(torch.device("cuda"))
    health.check_startup()
    facts["health_s"] = time.perf_counter() - start
    start = time.perf_counter()
    model = benchlib.build_model(args.preset)
    facts["model_s"] = time.perf_counter() - start
    config = EngineConfig(
        device="cuda",
        precision=args.precisions.split(",")[0],
        compile=args.modes.split(",")[0],
        batch_buckets=(args.batch,),
        copy_threads=8,
        compile_cache_dir=Path(args.cache_dir),
    )
    warmup = WarmupConfig(frame_shapes=[shape], batch_sizes=[args.batch])
    engine = InferenceEngine.from_config(model, config, InputConfig(), warmup)
    facts["warm_s"] = engine.warmup_all(warmup)
    facts["ready_s"] = time.time() - spawned
    start = time.perf_counter()
    health.check()
    facts["tick_s"] = time.perf_counter() - start
    facts["affinity"] = engine.affinity.describe()
    facts["gpu"] = health.status()
    if args.background:
        facts |= asyncio.run(_known_during_new(engine, args, shape))
    engine.close()
    print(json.dumps(facts), flush=True)
    return 0


async def _known_during_new(
    engine: InferenceEngine, args: argparse.Namespace, shape: tuple[int, int]
) -> dict[str, object]:
    """Known-shape frames/s before and while batches of a shape not warmed up run."""
    known = benchlib.frames(args.batch, shape)
    before = await benchlib.drive(engine, known, args.seconds, 2)
    new = benchlib.frames(args.batch, benchlib.parse_shape(args.new_shape), seed=3)
    start = time.perf_counter()
    await engine.infer(new)
    first = time.perf_counter() - start
    deadline = time.perf_counter() + args.seconds
    counts = {"known": 0, "new": 0}

    async def caller(name: str, frames: np.ndarray) -> None:
        while time.perf_counter() < deadline:
            await engine.infer(frames)
            counts[name] += frames.shape[0]

    start = time.perf_counter()
    await asyncio.gather(caller("known", known), caller("known", known), caller("new", new))
    facts: dict[str, object] = {"new_first_s": first, "known_fps_before": before}
    while engine.pending_builds():  # aot: the new shape's package builds in a child process
        deadline = time.perf_counter() + 1.0
        await asyncio.gather(caller("known", known), caller("known", known), caller("new", new))
    elapsed = time.perf_counter() - start
    facts |= {"known_fps_during": counts["known"] / elapsed, "new_fps": counts["new"] / elapsed}
    if engine.pending_builds() == [] and engine.describe()["aot"] is not None:
        facts["new_compiled_after_s"] = time.perf_counter() - start + first
        await asyncio.sleep(2.0)  # the launcher loads and warms the package
        facts["new_fps_compiled"] = await benchlib.drive(engine, new, args.seconds, 2)
        facts["new_warm"] = engine.describe()["warm"]
    return facts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    benchlib.add_common_arguments(parser)
    parser.add_argument("--new-shape", default="1024x1024", help="shape compiled late")
    parser.add_argument("--cache-dir", default="", help="compile cache (a temp folder if '')")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--background", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.child:
        if not torch.cuda.is_available():
            return 1
        logging.getLogger("peaknet_serve").setLevel(logging.INFO)
        return child(args)
    return benchlib.run_tool(args, {"warmup": bench_warmup}, "bench_warmup")


if __name__ == "__main__":
    sys.exit(main())
