"""Benchmark PeakNet on one GPU: bare model, engine from host memory, bf16/fp32 mask agreement.

Prints one table (frames/s per shape and variant, all on the same card in one run) after
checking correctness: the engine's masks against calling the model directly on the GPU.

    python scripts/bench_gpu.py                                   # everything, both shapes
    python scripts/bench_gpu.py --shapes 1920x1920 --parts model,profile --modes reduce-overhead

Parts (``--parts``); ``check`` runs once (odd frame shape, mixed batches, overlapping calls),
the others per shape, each a function ``(args, shape, batch) -> list[Row]`` in ``PARTS``:
    model      bare PeakNet on device-resident padded input: eager fp32, eager and compiled
               in --precisions with channels_last (and the engine's default fused dwconv +
               LayerNorm stages; scripts/bench_kernels.py compares the fast paths)
    engine     InferenceEngine from numpy host arrays (float32 and float64), per precision x mode
    agreement  bf16 and fp16 masks against fp32 masks of the same model: random-init standard
               preset, and the shipped demo model on synthetic frames
    profile    torch.profiler of the compiled bf16 model (engine's fused stages): top kernels
    warmup     time to ready of a fresh process (health check, model, engine, compile of the
               first --modes mode at --batch) with an empty compile cache, then of a second fresh
               process with the cache filled; the second also times known-shape batches while
               batches of a frame shape not warmed up (--new-shape) run (uncompiled; with
               --modes aot until its package, built in the background, is loaded)
    service    the whole service (``peaknet-serve run`` on deployments/gpu-node.yaml, local Ray,
               one PeakNet replica per GPU, --writers writers): --pushers synthetic LCLStreamer
               ranks push --service-frames frames at full speed; frames/s settled (written or
               judged non-hit) in steady state, every frame accounted for, CXI events counted.
               The standard preset has random weights here, so the hit rule is off (every frame
               is written: the writers' worst case). Needs Ray Serve, pynng and FastAPI.

Compilation costs ~50 s per (shape, mode) for the standard model on an H100: choose --shapes,
--modes and --parts to fit a run into its time limit.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from peaknet_serve.engine import EngineConfig, InferenceEngine
from peaknet_serve.model import InputConfig, build_peaknet, load_preset, predict_mask, prepare_batch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
DEFAULT_BATCH = {(1920, 1920): 16, (512, 512): 64}


@dataclass
class Row:
    """One measured line of the table."""

    part: str
    shape: str
    variant: str
    batch: int
    frames_per_s: float
    note: str = ""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="peaknet-standard")
    parser.add_argument("--shapes", default="1920x1920,512x512")
    parser.add_argument(
        "--batch", type=int, default=0, help="frames per batch (0: 16 at 1920x1920, 64 at 512x512)"
    )
    parser.add_argument("--parts", default="check,model,engine,agreement")
    parser.add_argument("--precisions", default="bf16", help="for model and engine parts")
    parser.add_argument("--modes", default="default", help="torch.compile modes, 'off' for eager")
    parser.add_argument(
        "--engine-modes", default="", help="engine compile modes (--modes if empty)"
    )
    parser.add_argument("--no-cudnn-benchmark", action="store_true", help="bare model rows")
    parser.add_argument("--skip-fp32", action="store_true", help="no eager fp32 model row")
    parser.add_argument("--engine-precisions", default="fp32,bf16,fp16", help="eager engine rows")
    parser.add_argument("--autocast", action="store_true", help="also time autocast engine rows")
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per row")
    parser.add_argument("--concurrency", type=int, default=3, help="infer calls in flight")
    parser.add_argument("--out", default=os.environ.get("OUT", "."), help="folder for JSON/logs")
    parser.add_argument("--new-shape", default="1024x1024", help="warmup part: shape compiled late")
    parser.add_argument("--cache-dir", default="", help="warmup part: compile cache (temp if '')")
    parser.add_argument("--service-frames", type=int, default=3200, help="service part: frames")
    parser.add_argument("--pushers", type=int, default=4, help="service part: pusher ranks")
    parser.add_argument("--writers", type=int, default=4, help="service part: writer replicas")
    parser.add_argument(
        "--layouts",
        default="",
        help="service part: runs as GPUSxINGRESSES, e.g. 1x1,2x2 (default: all GPUs x the "
        "ingresses of deployments/gpu-node.yaml). With "
        "several ingresses the pushers listen and every ingress dials every pusher "
        "(deployments/multi-gpu.yaml)",
    )
    parser.add_argument(
        "--service-output-dir",
        default="",
        help="service part: where CXI files go (a temp folder if ''; /dev/shm takes the disk out)",
    )
    parser.add_argument("--warmup-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--background", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _shape(text: str) -> tuple[int, int]:
    height, width = text.lower().split("x")
    return int(height), int(width)


def _frames(batch: int, shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Photon-count-like float32 frames with a few bright spots (never zeros)."""
    rng = np.random.default_rng(seed)
    frames = rng.gamma(2.0, 5.0, size=(batch, *shape)).astype(np.float32)
    for frame in frames:
        ys = rng.integers(8, shape[0] - 8, 50)
        xs = rng.integers(8, shape[1] - 8, 50)
        frame[ys, xs] += 500.0
    return frames


def _model(args: argparse.Namespace) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_peaknet(load_preset(args.preset)).eval().requires_grad_(False)


def _fuse_like_the_engine(model: torch.nn.Module) -> None:
    """The engine's default fast path: the Triton dwconv + LayerNorm kernel at its stages."""
    from peaknet_serve.model.kernels import use_fused_kernels

    use_fused_kernels(model, EngineConfig().fused_dwconv_stages)


def _time_gpu(step: Callable[[], object], seconds: float) -> float:
    """Seconds per call of ``step`` run back to back (after one untimed call)."""
    step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    step()
    torch.cuda.synchronize()
    once = time.perf_counter() - start
    repeats = max(3, math.ceil(seconds / max(once, 1e-4)))
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def bench_model(args: argparse.Namespace, shape: tuple[int, int], batch: int) -> list[Row]:
    """Bare PeakNet on padded device-resident input; no pre/post-processing."""
    rows = []
    frames = torch.from_numpy(_frames(batch, shape)).cuda()
    base = _model(args)
    variants: list[tuple[str, torch.dtype, bool, str]] = []
    if not args.skip_fp32:
        variants.append(("eager fp32", torch.float32, False, "off"))
    for name in args.precisions.split(","):
        for mode in ["off", *args.modes.split(",")]:
            label = f"{'eager' if mode == 'off' else mode} {name} CL"
            variants.append((label, DTYPES[name], True, mode))
    seen = set()
    for label, dtype, channels_last, mode in variants:
        if label in seen:
            continue
        seen.add(label)
        model = copy.deepcopy(base).to(device="cuda", dtype=dtype)
        x, _ = prepare_batch(frames, InputConfig(), dtype)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
            _fuse_like_the_engine(model)
        # dynamic=False: without it a second shape recompiles with symbolic shapes (2x slower).
        fn = model if mode == "off" else torch.compile(model, mode=mode, dynamic=False)
        start = time.perf_counter()
        with torch.inference_mode():
            fn(x)
            torch.cuda.synchronize()
            first = time.perf_counter() - start
            per_batch = _time_gpu(lambda fn=fn, x=x: fn(x), args.seconds)
        rows.append(
            Row(
                "model", _label(shape), label, batch, batch / per_batch, f"first call {first:.1f} s"
            )
        )
        _print_row(rows[-1])
        del model, fn
        torch.cuda.empty_cache()
    return rows


def _engine(
    args: argparse.Namespace, batch: int, precision: str, mode: str, autocast: bool = False
) -> InferenceEngine:
    config = EngineConfig(
        device="cuda",
        precision=precision,
        autocast=autocast,
        compile=mode,
        batch_buckets=(batch,),
        num_buffers=3,
        copy_threads=8,
    )
    return InferenceEngine.from_config(_model(args), config, InputConfig())


async def _drive(engine: InferenceEngine, frames: np.ndarray, seconds: float, tasks: int) -> float:
    """Frames/s with ``tasks`` concurrent callers each sending ``frames`` until time is up."""
    await engine.infer(frames)
    done = 0
    deadline = time.perf_counter() + seconds

    async def caller() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await engine.infer(frames)
            done += frames.shape[0]

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(tasks)))
    return done / (time.perf_counter() - start)


def bench_engine(args: argparse.Namespace, shape: tuple[int, int], batch: int) -> list[Row]:
    """The engine from numpy host arrays, checked against the model called directly."""
    rows = []
    host32 = _frames(batch, shape)
    host64 = host32.astype(np.float64)
    variants = [(p, "off", False) for p in args.engine_precisions.split(",") if p]
    modes = (args.engine_modes or args.modes).split(",")
    variants += [(p, m, False) for p in args.precisions.split(",") for m in modes]
    if args.autocast:
        variants += [(p, "off", True) for p in args.precisions.split(",") if p != "fp32"]
    for precision, mode, autocast in dict.fromkeys(variants):
        engine = _engine(args, batch, precision, mode, autocast)
        start = time.perf_counter()
        engine.warmup(shape, [batch])
        warm = time.perf_counter() - start
        masks = asyncio.run(engine.infer(host64))
        with torch.inference_mode():
            direct = (
                predict_mask(
                    engine.model,
                    torch.from_numpy(host32).cuda(),
                    InputConfig(),
                    engine.dtype if not autocast else torch.float32,
                )
                .cpu()
                .numpy()
            )
        agree = float((masks == direct).mean())
        label = f"{mode if mode != 'off' else 'eager'} {precision}{' autocast' if autocast else ''}"
        for name, host in (("f32 in", host32), ("f64 in", host64)):
            fps = asyncio.run(_drive(engine, host, args.seconds, args.concurrency))
            note = f"==direct {agree:.6f}, warmup {warm:.0f} s, peak {masks.mean():.4f}"
            rows.append(Row("engine", _label(shape), f"{label} {name}", batch, fps, note))
            _print_row(rows[-1])
        stats = engine.staging_stats()
        logging.info("engine staging: %d sets, %.0f MB", stats.buffers, stats.nbytes / 1e6)
        engine.close()
        del engine
        torch.cuda.empty_cache()
    return rows


def check_engine(args: argparse.Namespace) -> None:
    """The engine on the GPU gives the direct masks: mixed batches, odd shape, dtypes, overlap."""
    shape = (333, 517)
    frames = _frames(23, shape, seed=2)
    cache = tempfile.mkdtemp(prefix="peaknet-check-cache-")
    variants = [("fp32", "off"), ("bf16", "off"), ("bf16", "reduce-overhead"), ("bf16", "aot")]
    for precision, mode in variants:
        config = EngineConfig(
            device="cuda",
            precision=precision,
            compile=mode,
            batch_buckets=(4, 8),
            num_buffers=2,
            compile_cache_dir=cache,
            aot_build_processes=2,
        )
        torch.manual_seed(0)
        model = build_peaknet(load_preset("peaknet-demo"))  # compiles in seconds
        engine = InferenceEngine.from_config(model, config, InputConfig())
        engine.warmup(shape)
        with torch.inference_mode():
            direct = (
                predict_mask(
                    engine.model, torch.from_numpy(frames).cuda(), InputConfig(), engine.dtype
                )
                .cpu()
                .numpy()
            )

        async def run(engine: InferenceEngine = engine) -> list[np.ndarray]:
            calls = [
                frames[:1],
                frames[1:4].astype(np.uint16),
                frames[4:23].astype(np.float64),
                frames[:5].reshape(1, 5, *shape),
            ]
            return await asyncio.gather(*(engine.infer(c) for c in calls * 3))

        results = asyncio.run(run())
        got = [results[0], results[1], results[2], results[3].reshape(5, *shape)]
        expect = [direct[:1], direct[1:4], direct[4:23], direct[:5]]
        # uint16 rounds the frames, so those masks are compared with a tolerance.
        equal = [float((g == e).mean()) for g, e in zip(got, expect, strict=True)]
        repeat = all(
            np.array_equal(results[i], results[i + 4 * k]) for i in range(4) for k in (1, 2)
        )
        stats = engine.staging_stats()
        print(
            f"check {precision} {mode}: equal to direct {[f'{e:.6f}' for e in equal]}, "
            f"overlapping repeats identical {repeat}, staging sets {stats.buffers}",
            flush=True,
        )
        engine.close()


def bench_agreement(args: argparse.Namespace, shape: tuple[int, int], batch: int) -> list[Row]:
    """Fraction of pixels where bf16/fp16 masks equal fp32 masks (same random-init weights)."""
    frames = torch.from_numpy(_frames(min(batch, 4), shape, seed=1)).cuda()
    base = _model(args).cuda()
    with torch.inference_mode():
        reference = predict_mask(base, frames, InputConfig(), torch.float32)
        rows = []
        for name in ("bf16", "fp16"):
            model = copy.deepcopy(base).to(dtype=DTYPES[name], memory_format=torch.channels_last)
            masks = predict_mask(model, frames, InputConfig(), DTYPES[name])
            equal = float((masks == reference).float().mean())
            note = f"fp32 peak fraction {float(reference.float().mean()):.4f}"
            rows.append(
                Row("agreement", _label(shape), f"{name} vs fp32", frames.shape[0], 0, note)
            )
            rows[-1].variant += f" equal {equal:.6f}"
            _print_row(rows[-1])
    rows += _demo_agreement(shape)
    return rows


def _demo_agreement(shape: tuple[int, int]) -> list[Row]:
    """The shipped demo model on synthetic frames with spots (what it was trained on)."""
    from peaknet_serve.config import ModelSection
    from peaknet_serve.pipeline import load_model
    from peaknet_serve.synthetic import SyntheticFrames

    images, _ = SyntheticFrames(shape=shape, peaks=30, hit_fraction=1.0, seed=5).batch(0, 8)
    frames = torch.from_numpy(images).cuda()
    base = load_model(ModelSection(weights="builtin:peaknet-demo")).cuda()
    rows = []
    with torch.inference_mode():
        reference = predict_mask(base, frames, InputConfig(), torch.float32)
        for name in ("bf16", "fp16"):
            model = copy.deepcopy(base).to(dtype=DTYPES[name], memory_format=torch.channels_last)
            masks = predict_mask(model, frames, InputConfig(), DTYPES[name])
            equal = float((masks == reference).float().mean())
            differ = int((masks != reference).sum())
            note = f"demo model, {differ} of {masks.numel()} pixels differ"
            variant = f"demo {name} vs fp32 equal {equal:.6f}"
            rows.append(Row("agreement", _label(shape), variant, 8, 0, note))
            _print_row(rows[-1])
    return rows


def bench_profile(args: argparse.Namespace, shape: tuple[int, int], batch: int) -> list[Row]:
    """Top CUDA kernels of the compiled bf16 channels_last model (default mode)."""
    from torch.profiler import ProfilerActivity, profile

    dtype = DTYPES[args.precisions.split(",")[0]]
    model = _model(args).to(device="cuda", dtype=dtype, memory_format=torch.channels_last)
    _fuse_like_the_engine(model)
    frames = torch.from_numpy(_frames(batch, shape)).cuda()
    x, _ = prepare_batch(frames, InputConfig(), dtype)
    x = x.contiguous(memory_format=torch.channels_last)
    mode = next((m for m in args.modes.split(",") if m != "off"), "default")
    fn = torch.compile(model, mode=mode, dynamic=False)
    with torch.inference_mode():
        for _ in range(3):
            fn(x)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(3):
                fn(x)
            torch.cuda.synchronize()
    events = prof.key_averages()
    total = sum(_device_us(e) for e in events) or 1.0
    kinds: dict[str, float] = {}
    for event in events:
        kinds[_kernel_kind(event.key)] = kinds.get(_kernel_kind(event.key), 0.0) + _device_us(event)
    top = sorted(events, key=_device_us, reverse=True)[:25]
    lines = [f"== profile {_label(shape)} batch {batch} ({mode} {dtype}), 3 iterations =="]
    lines.append(f"GPU time {total / 3e3:.1f} ms per batch, {total / 3e3 / batch:.2f} ms per frame")
    lines += [f"  {k:14} {v / total:6.1%}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])]
    lines += [f"{_device_us(e) / total:6.1%} {e.count // 3:5}x  {e.key[:90]}" for e in top]
    text = "\n".join(lines)
    with open(os.path.join(args.out, f"profile_{_label(shape)}.txt"), "w") as fh:
        fh.write(text + "\n")
    print(text, flush=True)
    return []


def _device_us(event: object) -> float:
    for name in ("self_device_time_total", "self_cuda_time_total"):
        value = getattr(event, name, None)
        if value is not None:
            return float(value)
    return 0.0


def _kernel_kind(name: str) -> str:
    lowered = name.lower()
    if "triton" in lowered:
        return "triton fused"
    if "conv" in lowered or "cudnn" in lowered or "xmma" in lowered or "dgrad" in lowered:
        return "conv (cuDNN)"
    if "gemm" in lowered or "cutlass" in lowered or "nvjet" in lowered:
        return "gemm"
    if "memcpy" in lowered or "memset" in lowered:
        return "copy"
    return "other"


def bench_warmup(args: argparse.Namespace, shape: tuple[int, int], batch: int) -> list[Row]:
    """Ready time of fresh processes: empty compile cache, then the cache the first one filled."""
    cache = args.cache_dir or tempfile.mkdtemp(prefix="peaknet-compile-cache-")
    # Read torch's files from disk once, so the first child is not also timing a cold page cache.
    subprocess.run(
        [sys.executable, "-c", "import torch; torch.zeros(1, device='cuda')"], check=True
    )
    rows = []
    for label, extra in (("empty cache", []), ("cache filled", ["--background"])):
        command = [
            sys.executable,
            os.path.abspath(__file__),
            "--warmup-child",
            f"--shapes={_label(shape)}",
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
            print(f"warmup child ({label}) failed with {result.returncode}", flush=True)
            continue
        facts = json.loads(result.stdout.strip().splitlines()[-1])
        print(f"warmup {label}: {json.dumps(facts)}", flush=True)
        note = (
            f"ready {facts['ready_s']:.1f} s after exec (import {facts['import_s']:.1f}, "
            f"health {facts['health_s']:.2f}, model {facts['model_s']:.1f}, "
            f"compile+run {facts['warm_s']:.1f})"
        )
        rows.append(Row("warmup", _label(shape), f"fresh process, {label}", batch, 0, note))
        _print_row(rows[-1])
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
            rows.append(
                Row(
                    "warmup",
                    _label(shape),
                    "known shape, before new",
                    batch,
                    facts["known_fps_before"],
                    note,
                )
            )
            _print_row(rows[-1])
    return rows


def warmup_child(args: argparse.Namespace) -> int:
    """One fresh replica-like start: health check, model, engine, warm-up; facts as JSON."""
    from pathlib import Path

    from peaknet_serve.engine import GPUHealth, WarmupConfig

    spawned = float(os.environ["BENCH_T0"])
    facts: dict[str, object] = {"import_s": time.time() - spawned}
    shape = _shape(args.shapes)
    start = time.perf_counter()
    health = GPUHealth(torch.device("cuda"))
    health.check_startup()
    facts["health_s"] = time.perf_counter() - start
    start = time.perf_counter()
    model = _model(args)
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
    known = _frames(args.batch, shape)
    before = await _drive(engine, known, args.seconds, 2)
    new = _frames(args.batch, _shape(args.new_shape), seed=3)
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
        facts["new_fps_compiled"] = await _drive(engine, new, args.seconds, 2)
        facts["new_warm"] = engine.describe()["warm"]
    return facts


def bench_service(args: argparse.Namespace, shape: tuple[int, int], batch: int) -> list[Row]:
    """Pushers -> ingress -> PeakNet -> writers on this host, once per --layouts entry."""
    layouts = args.layouts or f"{torch.cuda.device_count()}x{_default_ingresses()}"
    rows = []
    for layout in layouts.split(","):
        gpus, ingresses = (int(n) for n in layout.split("x"))
        rows.append(_service_run(args, shape, batch, gpus, ingresses))
    return rows


def _default_ingresses() -> int:
    """Ingress replicas in deployments/gpu-node.yaml (the default layout's per-GPU count)."""
    import yaml

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "deployments", "gpu-node.yaml")) as fh:
        config = yaml.safe_load(fh)
    (ingress,) = (d for d in config["applications"][0]["deployments"] if d["name"] == "Ingress")
    return int(ingress["num_replicas"])


def _service_run(
    args: argparse.Namespace, shape: tuple[int, int], batch: int, gpus: int, ingresses: int
) -> Row:
    """One service run the way an operator starts it: frames/s settled in steady state."""
    import signal

    import httpx
    import yaml

    from peaknet_serve.cxi.inspect_cli import summarize
    from peaknet_serve.status_cli import settled

    workdir = tempfile.mkdtemp(prefix="peaknet-service-", dir=args.service_output_dir or None)
    config_path = os.path.join(workdir, "service.yaml")
    with open(config_path, "w") as fh:
        yaml.safe_dump(_service_config(args, shape, batch, workdir, gpus, ingresses), fh)
    log_path = os.path.join(args.out, f"service-{_label(shape)}-{gpus}x{ingresses}.log")
    cli = [sys.executable, "-m", "peaknet_serve.cli"]
    url = "http://127.0.0.1:8000"
    with open(log_path, "w") as log:
        service = subprocess.Popen([*cli, "run", config_path], stdout=log, stderr=log)
    try:
        _wait_ready(url, service, timeout=900)
        per_rank = args.service_frames // args.pushers
        total = per_rank * args.pushers
        listen = ingresses > 1
        pushers = [
            subprocess.Popen(
                [
                    *cli,
                    "--log-level=warning",
                    "push",
                    f"--address={_pusher_address(rank) if listen else _pusher_address(0)}",
                    f"--mode={'listen' if listen else 'dial'}",
                    f"--frames={per_rank}",
                    f"--batch-size={batch}",
                    "--shape",
                    str(shape[0]),
                    str(shape[1]),
                    "--cycle=8",
                    f"--rank={rank}",
                    "--linger=60",
                    "--no-progress",
                ],
                stdout=subprocess.DEVNULL,
            )
            for rank in range(args.pushers)
        ]
        samples = []
        start = time.perf_counter()
        while True:
            answer = httpx.get(f"{url}/status", timeout=30).json()
            status = answer["service"] | {"gpu": answer["gpu"]}  # every ingress added up
            done = status["hits_written"] + status["non_hits"] + status["failed"]
            samples.append((time.perf_counter() - start, done))
            if settled(answer, total):
                break
            if time.perf_counter() - start > 900:
                raise RuntimeError(f"service did not settle {total} frames: {status}")
            time.sleep(0.25)
        for pusher in pushers:
            pusher.wait(timeout=120)
    finally:
        service.send_signal(signal.SIGINT)  # drains, closes and renames the CXI files
        service.wait(timeout=300)
    events = sum(summarize(path)["events"] for path in Path(workdir, "out").glob("*.cxi"))
    rate = _steady_rate(samples, total)
    note = (
        f"{total} frames: {status['hits_written']} written, {status['non_hits']} non-hits, "
        f"{status['failed']} failed; {events} events in CXI files; "
        f"GPU {status.get('gpu', {}).get('name', '?')}"
    )
    variant = (
        f"{args.modes.split(',')[0]} {args.precisions.split(',')[0]}, {gpus} GPU, "
        f"{ingresses} ingress"
    )
    row = Row("service", _label(shape), variant, batch, rate, note)
    _print_row(row)
    shutil.rmtree(workdir, ignore_errors=True)  # CXI files of 1920x1920 frames fill a disk
    return row


def _service_config(
    args: argparse.Namespace,
    shape: tuple[int, int],
    batch: int,
    workdir: str,
    gpus: int,
    ingresses: int,
) -> dict[str, object]:
    """deployments/gpu-node.yaml for this host: random weights, every frame written."""
    import yaml

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "deployments", "gpu-node.yaml")) as fh:
        config = yaml.safe_load(fh)
    config["http_options"]["host"] = "127.0.0.1"
    app = config["applications"][0]
    if ingresses > 1:
        source = {
            "transport": "nng",
            "mode": "dial",
            "addresses": [_pusher_address(rank) for rank in range(args.pushers)],
        }
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
    for deployment in app["deployments"]:
        if deployment["name"] == "Ingress":
            deployment["num_replicas"] = ingresses
        if deployment["name"] == "PeakNet":
            deployment["num_replicas"] = gpus
            deployment["user_config"]["max_batch_frames"] = batch
        if deployment["name"] == "PeakFinderWriter":
            deployment.pop("autoscaling_config", None)
            deployment["num_replicas"] = args.writers
    return config


def _pusher_address(rank: int) -> str:
    return f"tcp://127.0.0.1:{12321 + rank}"


def _wait_ready(url: str, service: subprocess.Popen[bytes], timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.poll() is not None:
            raise RuntimeError(f"the service exited with {service.returncode}; see its log")
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    raise RuntimeError(f"the service was not ready after {timeout:.0f} s")


def _steady_rate(samples: list[tuple[float, int]], total: int) -> float:
    """Frames/s between 20% and 90% of ``total`` settled: no ramp-up, no tail."""
    first = next(s for s in samples if s[1] >= 0.2 * total)
    last = next(s for s in samples if s[1] >= 0.9 * total)
    return (last[1] - first[1]) / max(last[0] - first[0], 1e-9)


PARTS: dict[str, Callable[[argparse.Namespace, tuple[int, int], int], list[Row]]] = {
    "model": bench_model,
    "engine": bench_engine,
    "agreement": bench_agreement,
    "profile": bench_profile,
    "warmup": bench_warmup,
    "service": bench_service,
}


def _label(shape: tuple[int, int]) -> str:
    return f"{shape[0]}x{shape[1]}"


def _print_row(row: Row) -> None:
    fps = f"{row.frames_per_s:9.1f}" if row.frames_per_s else "        -"
    print(
        f"{row.part:9} {row.shape:9} {row.variant:34} {row.batch:5} {fps}  {row.note}", flush=True
    )


def _ratios(rows: list[Row]) -> list[str]:
    """Each service row over the fastest engine (f32 input) and compiled model row of its shape
    in the same run: issue 16's "service >= 95% of the engine"."""
    lines = []
    for service in (r for r in rows if r.part == "service"):
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if not torch.cuda.is_available():
        print("no CUDA device: this benchmark needs a GPU", file=sys.stderr)
        return 1
    if args.warmup_child:
        logging.getLogger("peaknet_serve").setLevel(logging.INFO)
        return warmup_child(args)
    # As the engine does (EngineConfig.cudnn_benchmark): worth ~30% here, so bare rows match.
    torch.backends.cudnn.benchmark = not args.no_cudnn_benchmark
    card = torch.cuda.get_device_name()
    print(
        f"card: {card}, torch {torch.__version__}, preset {args.preset}, "
        f"cudnn.benchmark {torch.backends.cudnn.benchmark}"
    )
    rows: list[Row] = []
    parts = args.parts.split(",")
    if "check" in parts:
        check_engine(args)
        parts.remove("check")
    for text in args.shapes.split(","):
        shape = _shape(text)
        batch = args.batch or DEFAULT_BATCH.get(shape, 16)
        for part in parts:
            rows += PARTS[part](args, shape, batch)
    print(f"\n== {card} ==")
    print(f"{'part':9} {'shape':9} {'variant':34} {'batch':>5} {'frames/s':>9}  note")
    for row in rows:
        _print_row(row)
    for line in _ratios(rows):
        print(line)
    with open(os.path.join(args.out, "bench_gpu.json"), "w") as fh:
        json.dump({"card": card, "torch": torch.__version__, "rows": [asdict(r) for r in rows]}, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
