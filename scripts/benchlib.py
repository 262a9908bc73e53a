"""What the GPU benchmarks share: synthetic frames, the model, timing loops, rows and the table.

Used by bench_model.py, bench_warmup.py, bench_service.py and bench_kernels.py (and
bench_tail_loss.py, for ``wait_ready``). Importing it needs
torch and numpy only, so every script answers ``--help`` on a machine without a GPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from peaknet_serve.engine import InferenceEngine

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
DEFAULT_BATCH = {(1920, 1920): 16, (512, 512): 64}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

Part = Callable[[argparse.Namespace, tuple[int, int], int], list["Row"]]
"""One benchmark part: ``(args, frame shape, batch) -> rows``, run once per ``--shapes`` entry."""


@dataclass
class Row:
    """One measured line of the table."""

    part: str
    shape: str
    variant: str
    batch: int
    frames_per_s: float
    note: str = ""


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags every GPU benchmark takes: model, shapes, batch, precision, compile, time."""
    parser.add_argument("--preset", default="peaknet-standard")
    parser.add_argument("--shapes", default="1920x1920,512x512")
    parser.add_argument(
        "--batch", type=int, default=0, help="frames per batch (0: 16 at 1920x1920, 64 at 512x512)"
    )
    parser.add_argument("--precisions", default="bf16", help="for model and engine parts")
    parser.add_argument("--modes", default="default", help="torch.compile modes, 'off' for eager")
    parser.add_argument("--no-cudnn-benchmark", action="store_true", help="bare model rows")
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per row")
    parser.add_argument("--out", default=os.environ.get("OUT", "."), help="folder for JSON/logs")


def parse_shape(text: str) -> tuple[int, int]:
    """``"1920x1920"`` -> ``(1920, 1920)`` (height, width)."""
    height, width = text.lower().split("x")
    return int(height), int(width)


def label(shape: tuple[int, int]) -> str:
    return f"{shape[0]}x{shape[1]}"


def frames(batch: int, shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """(batch, H, W) photon-count-like float32 frames with 50 bright spots each (never zeros)."""
    rng = np.random.default_rng(seed)
    out = rng.gamma(2.0, 5.0, size=(batch, *shape)).astype(np.float32)
    for frame in out:
        ys = rng.integers(8, shape[0] - 8, 50)
        xs = rng.integers(8, shape[1] - 8, 50)
        frame[ys, xs] += 500.0
    return out


def build_model(preset: str) -> torch.nn.Module:
    """The preset with random weights (seed 0), in eval mode, on the CPU.

    GRN's gamma and beta start at zero, which makes every GRN the identity; they get small
    random values too, so mask-agreement checks exercise GRN as a trained checkpoint does.
    """
    from peaknet_serve.model import build_peaknet, load_preset
    from peaknet_serve.model.grn import GlobalResponseNorm

    torch.manual_seed(0)
    model = build_peaknet(load_preset(preset)).eval().requires_grad_(False)
    for module in model.modules():
        if isinstance(module, GlobalResponseNorm):
            module.weight.normal_(std=0.1)
            module.bias.normal_(std=0.1)
    return model


def fuse_like_the_engine(model: torch.nn.Module) -> None:
    """The engine's default fast path: the Triton dwconv + LayerNorm kernel at its stages."""
    from peaknet_serve.engine import EngineConfig
    from peaknet_serve.model.kernels import use_fused_kernels

    use_fused_kernels(model, EngineConfig().fused_dwconv_stages)


def time_gpu(step: Callable[[], object], seconds: float) -> float:
    """Seconds per call of ``step`` run back to back for about ``seconds`` (after one untimed
    call, and one timed call that sets the repeat count)."""
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


async def drive(engine: InferenceEngine, batch: np.ndarray, seconds: float, tasks: int) -> float:
    """Frames/s with ``tasks`` concurrent callers each sending ``batch`` until time is up."""
    await engine.infer(batch)
    done = 0
    deadline = time.perf_counter() + seconds

    async def caller() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await engine.infer(batch)
            done += batch.shape[0]

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(tasks)))
    return done / (time.perf_counter() - start)


def device_us(event: object) -> float:
    """A profiler event's own GPU time in microseconds (the attribute's name changed in torch)."""
    for name in ("self_device_time_total", "self_cuda_time_total"):
        value = getattr(event, name, None)
        if value is not None:
            return float(value)
    return 0.0


def kernel_kind(name: str) -> str:
    """A CUDA kernel's family from its name, for the profile's summary."""
    lowered = name.lower()
    if "dwconv_layernorm" in lowered:
        return "fused dwconv+LN"
    if "triton" in lowered:
        return "triton fused"
    if "conv" in lowered or "cudnn" in lowered or "xmma" in lowered or "dgrad" in lowered:
        return "conv (cuDNN)"
    if "gemm" in lowered or "cutlass" in lowered or "nvjet" in lowered:
        return "gemm"
    if "memcpy" in lowered or "memset" in lowered:
        return "copy"
    return "other"


def profile_kernels(
    fn: Callable[[torch.Tensor], object], x: torch.Tensor, *, title: str, path: str
) -> float:
    """torch.profiler over 3 calls of ``fn(x)`` (after 3 untimed): GPU time per kind and the top
    25 CUDA kernels printed; every kernel (share, launches and ms per call, full name) written to
    ``path`` and the launch order as a Chrome trace beside it (``.json``), to match kernels with
    Inductor's output code. Returns GPU milliseconds per call."""
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode():
        for _ in range(3):
            fn(x)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(3):
                fn(x)
            torch.cuda.synchronize()
    events = prof.key_averages()
    total = sum(device_us(e) for e in events) or 1.0
    kinds: dict[str, float] = {}
    for event in events:
        kinds[kernel_kind(event.key)] = kinds.get(kernel_kind(event.key), 0.0) + device_us(event)
    per_call_ms = total / 3e3
    batch = x.shape[0]
    lines = [f"== profile {title}, 3 iterations =="]
    lines.append(f"GPU time {per_call_ms:.1f} ms per batch, {per_call_ms / batch:.2f} ms per frame")
    lines += [f"  {k:16} {v / total:6.1%}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])]
    ranked = sorted(events, key=device_us, reverse=True)
    listing = [
        f"{device_us(e) / total:6.1%} {e.count // 3:5}x {device_us(e) / 3e3:8.3f} ms  {e.key}"
        for e in ranked
        if device_us(e) > 0
    ]
    print("\n".join(lines + [line[:130] for line in listing[:25]]), flush=True)
    with open(path, "w") as fh:
        fh.write("\n".join(lines + listing) + "\n")
    prof.export_chrome_trace(os.path.splitext(path)[0] + ".json")
    return per_call_ms


def wait_ready(service: subprocess.Popen[bytes], url: str, timeout: float) -> None:
    """Poll ``url``/readyz once a second until it answers 200 (the service is up and its socket
    open); raises RuntimeError when ``service`` exits first or ``timeout`` seconds pass."""
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


def print_row(row: Row) -> None:
    fps = f"{row.frames_per_s:9.1f}" if row.frames_per_s else "        -"
    print(
        f"{row.part:9} {row.shape:9} {row.variant:34} {row.batch:5} {fps}  {row.note}", flush=True
    )


def start(args: argparse.Namespace) -> str | None:
    """Set cuDNN up as the engine does and print the card; None (after saying so) without CUDA."""
    if not torch.cuda.is_available():
        print("no CUDA device: this benchmark needs a GPU", file=sys.stderr)
        return None
    # As the engine does (EngineConfig.cudnn_benchmark), so bare model rows compare with it.
    torch.backends.cudnn.benchmark = not args.no_cudnn_benchmark
    card = torch.cuda.get_device_name()
    print(
        f"card: {card}, torch {torch.__version__}, preset {args.preset}, "
        f"cudnn.benchmark {torch.backends.cudnn.benchmark}",
        flush=True,
    )
    return card


def run_parts(args: argparse.Namespace, parts: dict[str, Part], names: list[str]) -> list[Row]:
    """Every part in ``names`` for every shape of ``--shapes``, in that order."""
    rows: list[Row] = []
    for text in args.shapes.split(","):
        shape = parse_shape(text)
        batch = args.batch or DEFAULT_BATCH.get(shape, 16)
        for name in names:
            rows += parts[name](args, shape, batch)
    return rows


def run_tool(
    args: argparse.Namespace,
    parts: dict[str, Part],
    name: str,
    summary: Callable[[list[Row]], list[str]] | None = None,
) -> int:
    """A benchmark script's run: the parts of ``--parts`` (all of ``parts`` if it has none), then
    the table of the whole run (and ``summary``'s lines) on stdout and as ``--out``/NAME.json.
    Returns the exit status: 1 without CUDA."""
    logging.basicConfig(level=logging.WARNING)
    card = start(args)
    if card is None:
        return 1
    names = args.parts.split(",") if "parts" in args else list(parts)
    rows = run_parts(args, parts, names)
    print(f"\n== {card} ==")
    print(f"{'part':9} {'shape':9} {'variant':34} {'batch':>5} {'frames/s':>9}  note")
    for row in rows:
        print_row(row)
    for line in summary(rows) if summary else []:
        print(line)
    with open(os.path.join(args.out, f"{name}.json"), "w") as fh:
        json.dump({"card": card, "torch": torch.__version__, "rows": [asdict(r) for r in rows]}, fh)
    return 0
