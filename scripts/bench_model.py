"""Benchmark PeakNet on one GPU: bare model, engine from host memory, bf16/fp32 mask agreement.

Prints one table (frames/s per shape and variant, all on the same card in one run).

    python scripts/bench_model.py                                 # model, engine, agreement
    python scripts/bench_model.py --shapes 1920x1920 --parts model,profile --modes reduce-overhead

Parts (``--parts``), run per shape, each a function ``(args, shape, batch) -> list[Row]`` in
``PARTS``:
    model      bare PeakNet on device-resident padded input: eager fp32, eager and compiled
               in --precisions with channels_last (and the engine's default fused dwconv +
               LayerNorm stages; scripts/bench_kernels.py compares the fast paths); with
               --nchw also each compiled mode in NCHW, the same stages fused
    engine     InferenceEngine from numpy host arrays (float32 and float64), per precision x mode
    agreement  bf16 and fp16 masks against fp32 masks of the same model: random-init standard
               preset, and the shipped demo model on synthetic frames
    profile    torch.profiler of the compiled bf16 model (engine's fused stages): top kernels

The engine's masks against the model called directly on the GPU (odd frame shape, mixed batches,
overlapping calls) are checked by ``pytest -m gpu tests/test_engine_gpu.py``. Warm-up times:
bench_warmup.py; the whole service, and model, engine and service in one table:
bench_service.py. Compiling the standard model takes tens of seconds per (shape, mode): choose
--shapes, --modes and --parts to fit a run into its time limit.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import logging
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from benchlib import DTYPES, Row, label, print_row  # noqa: E402

from peaknet_serve.engine import EngineConfig, InferenceEngine  # noqa: E402
from peaknet_serve.model import InputConfig, predict_mask, prepare_batch  # noqa: E402


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This tool's flags beyond benchlib's common ones (bench_service.py takes them too)."""
    parser.add_argument(
        "--engine-modes", default="", help="engine compile modes (--modes if empty)"
    )
    parser.add_argument("--skip-fp32", action="store_true", help="no eager fp32 model row")
    parser.add_argument("--engine-precisions", default="fp32,bf16,fp16", help="eager engine rows")
    parser.add_argument("--autocast", action="store_true", help="also time autocast engine rows")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=6,
        help="engine rows: infer calls in flight (the service keeps up to max_ongoing_requests; "
        "3 left the engine idle between batches once the model got faster, docs/perf-notes.md)",
    )
    parser.add_argument(
        "--engine-graphs",
        action="store_true",
        help="also time each compiled engine mode with engine.cuda_graphs (engine/graphs.py)",
    )
    parser.add_argument(
        "--nchw",
        action="store_true",
        help="model part: also time each compiled mode in NCHW (contiguous) memory format",
    )
    parser.add_argument(
        "--engine-stages",
        default="",
        help="also time compiled engine rows with these engine.fused_dwconv_stages, e.g. '1,' "
        "(stage 1) or '' (the default only); sets of digits separated by commas",
    )


def bench_model(args: argparse.Namespace, shape: tuple[int, int], batch: int) -> list[Row]:
    """Bare PeakNet on padded device-resident input; no pre/post-processing."""
    rows = []
    frames = torch.from_numpy(benchlib.frames(batch, shape)).cuda()
    base = benchlib.build_model(args.preset)
    # (name, dtype, channels_last, compile mode, fused dwconv stages as the engine's default)
    variants: list[tuple[str, torch.dtype, bool, str, bool]] = []
    if not args.skip_fp32:
        variants.append(("eager fp32", torch.float32, False, "off", False))
    for name in args.precisions.split(","):
        for mode in ["off", *args.modes.split(",")]:
            variant = f"{'eager' if mode == 'off' else mode} {name} CL"
            variants.append((variant, DTYPES[name], True, mode, True))
        if args.nchw:
            modes = [m for m in args.modes.split(",") if m != "off"]
            variants += [(f"{m} {name} NCHW", DTYPES[name], False, m, True) for m in modes]
    for variant, dtype, channels_last, mode, fused in dict.fromkeys(variants):
        model = copy.deepcopy(base).to(device="cuda", dtype=dtype)
        x, _ = prepare_batch(frames, InputConfig(), dtype)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        if fused:
            benchlib.fuse_like_the_engine(model)
        # dynamic=False: without it a second shape recompiles with symbolic shapes (2x slower).
        fn = model if mode == "off" else torch.compile(model, mode=mode, dynamic=False)
        start = time.perf_counter()
        with torch.inference_mode():
            fn(x)
            torch.cuda.synchronize()
            first = time.perf_counter() - start
            per_batch = benchlib.time_gpu(lambda fn=fn, x=x: fn(x), args.seconds)
        note = f"first call {first:.1f} s"
        rows.append(Row("model", label(shape), variant, batch, batch / per_batch, note))
        print_row(rows[-1])
        del model, fn
        torch.cuda.empty_cache()
    return rows


def _engine(
    args: argparse.Namespace,
    batch: int,
    precision: str,
    mode: str,
    autocast: bool = False,
    graphs: bool = False,
    stages: tuple[int, ...] | None = None,
) -> InferenceEngine:
    config = EngineConfig(
        device="cuda",
        precision=precision,
        autocast=autocast,
        compile=mode,
        cuda_graphs=graphs,
        fused_dwconv_stages=EngineConfig().fused_dwconv_stages if stages is None else stages,
        batch_buckets=(batch,),
        num_buffers=3,
        copy_threads=8,
    )
    return InferenceEngine.from_config(benchlib.build_model(args.preset), config, InputConfig())


def bench_engine(args: argparse.Namespace, shape: tuple[int, int], batch: int) -> list[Row]:
    """The engine from numpy host arrays; its masks' agreement with the model called directly."""
    rows = []
    host32 = benchlib.frames(batch, shape)
    host64 = host32.astype(np.float64)
    variants = [(p, "off", False, False, None) for p in args.engine_precisions.split(",") if p]
    modes = (args.engine_modes or args.modes).split(",")
    compiled = [(p, m) for p in args.precisions.split(",") for m in modes]
    stage_sets = [None] + [tuple(int(c) for c in s) for s in args.engine_stages.split(",") if s]
    for graphs in (False, True) if args.engine_graphs else (False,):
        variants += [(p, m, False, graphs, st) for p, m in compiled for st in stage_sets]
    if args.autocast:
        precisions = [p for p in args.precisions.split(",") if p != "fp32"]
        variants += [(p, "off", True, False, None) for p in precisions]
    for precision, mode, autocast, graphs, stages in dict.fromkeys(variants):
        torch._dynamo.reset()  # each variant compiles its own code (the disk cache still helps)
        engine = _engine(args, batch, precision, mode, autocast, graphs, stages)
        start = time.perf_counter()
        engine.warmup(shape, [batch])
        warm = time.perf_counter() - start
        masks = asyncio.run(engine.infer(host64))
        dtype = engine.dtype if not autocast else torch.float32
        with torch.inference_mode():
            host = torch.from_numpy(host32).cuda()
            direct = predict_mask(engine.model, host, InputConfig(), dtype).cpu().numpy()
        agree = float((masks == direct).mean())
        variant = f"{mode if mode != 'off' else 'eager'} {precision}"
        variant += " autocast" if autocast else ""
        variant += " graphs" if graphs else ""
        variant += f" stages {''.join(map(str, stages))}" if stages is not None else ""
        for name, host in (("f32 in", host32), ("f64 in", host64)):
            fps = asyncio.run(benchlib.drive(engine, host, args.seconds, args.concurrency))
            note = f"==direct {agree:.6f}, warmup {warm:.0f} s, peak {masks.mean():.4f}"
            rows.append(Row("engine", label(shape), f"{variant} {name}", batch, fps, note))
            print_row(rows[-1])
        stats = engine.staging_stats()
        logging.info("engine staging: %d sets, %.0f MB", stats.buffers, stats.nbytes / 1e6)
        engine.close()
        del engine
        torch.cuda.empty_cache()
    return rows


def bench_agreement(args: argparse.Namespace, shape: tuple[int, int], batch: int) -> list[Row]:
    """Fraction of pixels where bf16/fp16 masks equal fp32 masks: random-init --preset on
    synthetic frames, then the shipped demo model on synthetic hits (what it was trained on)."""
    from peaknet_serve.model.section import ModelSection
    from peaknet_serve.pipeline import load_model
    from peaknet_serve.synthetic import SyntheticFrames

    rows = []
    frames = torch.from_numpy(benchlib.frames(min(batch, 4), shape, seed=1)).cuda()
    for name, equal, _, peaks in _agreement(benchlib.build_model(args.preset).cuda(), frames):
        note = f"fp32 peak fraction {peaks:.4f}"
        variant = f"{name} vs fp32 equal {equal:.6f}"
        rows.append(Row("agreement", label(shape), variant, frames.shape[0], 0, note))
        print_row(rows[-1])
    images, _ = SyntheticFrames(shape=shape, peaks=30, hit_fraction=1.0, seed=5).batch(0, 8)
    frames = torch.from_numpy(images).cuda()
    demo = load_model(ModelSection(weights="builtin:peaknet-demo")).cuda()
    for name, equal, differ, _ in _agreement(demo, frames):
        note = f"demo model, {differ} of {frames.numel()} pixels differ"
        variant = f"demo {name} vs fp32 equal {equal:.6f}"
        rows.append(Row("agreement", label(shape), variant, 8, 0, note))
        print_row(rows[-1])
    return rows


def _agreement(
    base: torch.nn.Module, frames: torch.Tensor
) -> list[tuple[str, float, int, float]]:
    """(precision, fraction of pixels equal to the fp32 masks, pixels that differ, fp32 peak
    fraction) for bf16 and fp16 channels_last copies of ``base``."""
    out = []
    with torch.inference_mode():
        reference = predict_mask(base, frames, InputConfig(), torch.float32)
        for name in ("bf16", "fp16"):
            model = copy.deepcopy(base).to(dtype=DTYPES[name], memory_format=torch.channels_last)
            masks = predict_mask(model, frames, InputConfig(), DTYPES[name])
            equal = float((masks == reference).float().mean())
            differ = int((masks != reference).sum())
            out.append((name, equal, differ, float(reference.float().mean())))
    return out


def bench_profile(args: argparse.Namespace, shape: tuple[int, int], batch: int) -> list[Row]:
    """Top CUDA kernels of the compiled channels_last model (first of --precisions)."""
    dtype = DTYPES[args.precisions.split(",")[0]]
    model = benchlib.build_model(args.preset)
    model = model.to(device="cuda", dtype=dtype, memory_format=torch.channels_last)
    benchlib.fuse_like_the_engine(model)
    frames = torch.from_numpy(benchlib.frames(batch, shape)).cuda()
    x, _ = prepare_batch(frames, InputConfig(), dtype)
    x = x.contiguous(memory_format=torch.channels_last)
    mode = next((m for m in args.modes.split(",") if m != "off"), "default")
    fn = torch.compile(model, mode=mode, dynamic=False)
    title = f"{label(shape)} batch {batch} ({mode} {dtype})"
    benchlib.profile_kernels(fn, x, title=title, path=f"{args.out}/profile_{label(shape)}.txt")
    return []


PARTS: dict[str, benchlib.Part] = {
    "model": bench_model,
    "engine": bench_engine,
    "agreement": bench_agreement,
    "profile": bench_profile,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    benchlib.add_common_arguments(parser)
    add_arguments(parser)
    parser.add_argument("--parts", default="model,engine,agreement", help=", ".join(PARTS))
    return benchlib.run_tool(parser.parse_args(argv), PARTS, "bench_model")


if __name__ == "__main__":
    sys.exit(main())
