"""Check and time PeakNet's GPU fast paths on one card: the fused dwconv + LayerNorm kernel and the
head order (head_segmask before the last upsample), against the plain PyTorch path.

    python scripts/bench_kernels.py                       # check, dwconv, model, engine, profile
    python scripts/bench_kernels.py --parts check,dwconv  # no full-model compiles

Parts (``--parts``), in this order:
    check    the fused kernel against the plain path computed in float64 (every backbone stage
             shape at 1920x1920 and an odd one; fp32 and bf16); the fused model's fp32 logits
             against the plain model's (TF32 off); fp32 masks against those of the code before
             issue 16; bf16 masks (plain, fused at --stages and at all stages) against both
             fp32 masks
    dwconv   one block's dwconv + LayerNorm at each stage shape, batch --batch: cuDNN
             (channels_last, and NCHW conv alone), compiled plain, and the fused kernel at a few
             tile sizes; milliseconds and GB/s against the memory floor (read once, write once)
    model    the bare standard model, compiled --mode, bf16 channels_last: the code before
             (--before: reference head order, cuDNN dwconv, no folds, no materialize),
             the new code with the fused kernel at --stages without and with the BiFPN fold, and
             at all stages
    engine   InferenceEngine from float32 host arrays, compiled --mode, bf16, fused kernel at
             --stages (and at each --engine-stages set)
    profile  torch.profiler of the compiled model, fused kernel at --stages: top CUDA kernels

Prints a table last and writes it with the logs to --out ($OUT on the device machine).
Compiling the standard model costs ~35-60 s per variant.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import json
import os
import sys
import time
from collections.abc import Callable, Iterator

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402  (the shared helpers: frames, timing, engine driver, profiles)

from peaknet_serve.model import (  # noqa: E402
    InputConfig,
    bifpn,
    crop,
    mask_from_logits,
    predict_mask,
    prepare_batch,
)
from peaknet_serve.model.backbone import Block  # noqa: E402
from peaknet_serve.model.peaknet import reference_forward  # noqa: E402

STAGES = [(96, 4), (192, 8), (384, 16), (768, 32)]
"""(channels, stride) of the standard preset's four backbone stages."""

ROWS: list[tuple[str, str, float, str]] = []


def row(part: str, what: str, value: float, note: str = "") -> None:
    ROWS.append((part, what, value, note))
    print(f"{part:8} {what:48} {value:10.3f}  {note}", flush=True)


def _unfolded_forward(self: bifpn.DepthwiseSeparableConv2d, x: torch.Tensor) -> torch.Tensor:
    return self.pointwise_conv(self.depthwise_conv(x))


@contextlib.contextmanager
def _unfolded_bifpn() -> Iterator[None]:
    """The BiFPN's 1x1 depthwise + pointwise convs as two convs, as before issue 16."""
    saved = bifpn.DepthwiseSeparableConv2d.forward
    bifpn.DepthwiseSeparableConv2d.forward = _unfolded_forward
    try:
        yield
    finally:
        bifpn.DepthwiseSeparableConv2d.forward = saved


def _paper_grn_pwconv2(self: Block, x: torch.Tensor) -> torch.Tensor:
    grn = self.grn
    gx = torch.linalg.vector_norm(x, ord=2, dim=(1, 2), keepdim=True)
    nx = gx / (gx.mean(dim=-1, keepdim=True) + grn.eps)
    return self.pwconv2(grn.weight * (x * nx) + grn.bias + x)


@contextlib.contextmanager
def _code_before() -> Iterator[None]:
    """The BiFPN unfolded, GRN applied before pwconv2 in the paper's order and upsamples without
    ``materialize``, as before issue 16 (``reference_forward`` gives the head's order)."""
    saved = Block._grn_pwconv2, bifpn.materialize
    Block._grn_pwconv2, bifpn.materialize = _paper_grn_pwconv2, _identity
    try:
        with _unfolded_bifpn():
            yield
    finally:
        Block._grn_pwconv2, bifpn.materialize = saved


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _random_block(channels: int, dtype: torch.dtype) -> Block:
    block = Block(channels).eval().requires_grad_(False)
    with torch.no_grad():
        for param in block.parameters():
            param.copy_(torch.randn_like(param) * 0.1 + (1.0 if param.ndim == 1 else 0.0))
    return block.to(device="cuda", dtype=dtype, memory_format=torch.channels_last)


def _plain(block: Block, x: torch.Tensor) -> torch.Tensor:
    return block.layernorm(block.dwconv(x).permute(0, 2, 3, 1))


def _fused(block: Block, x: torch.Tensor, **knobs: int) -> torch.Tensor:
    from peaknet_serve.model.kernels import launch_dwconv_layernorm

    ln = block.layernorm
    return launch_dwconv_layernorm(
        x, block.dwconv.weight, block.dwconv.bias, ln.weight, ln.bias, ln.eps, **knobs
    )


def check(args: argparse.Namespace) -> None:
    # fp32 references without TF32 (cuDNN's default for fp32 convs: ~3e-4 relative).
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        _check(args)
    finally:
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cuda.matmul.allow_tf32 = True


def _check(args: argparse.Namespace) -> None:
    import peaknet_serve.model.kernels as kernels

    side = args.size
    shapes = [(c, side // s, side // s) for c, s in STAGES] + [(96, 83, 117)]
    worst = {torch.float32: 0.0, torch.bfloat16: 0.0}
    for dtype in worst:
        for channels, height, width in shapes:
            block = _random_block(channels, dtype)
            x = torch.randn(2, channels, height, width, device="cuda")
            x = x.to(dtype).contiguous(memory_format=torch.channels_last)
            ref = _plain(copy.deepcopy(block).double(), x.double())
            out = kernels.dwconv_layernorm(
                x,
                block.dwconv.weight,
                block.dwconv.bias,
                block.layernorm.weight,
                block.layernorm.bias,
                block.layernorm.eps,
            )
            assert out.shape == ref.shape and out.dtype == dtype
            assert torch.isfinite(out).all(), "non-finite output: unwritten or wrong"
            err = float((out.double() - ref).norm() / ref.norm())
            plain_err = float((_plain(block, x).double() - ref).norm() / ref.norm())
            worst[dtype] = max(worst[dtype], err)
            print(
                f"check {dtype} {channels}x{height}x{width}: fused {err:.2e}, plain {plain_err:.2e}"
            )
    row("check", "fused vs float64, worst fp32 (rel. L2)", worst[torch.float32])
    row("check", "fused vs float64, worst bf16 (rel. L2)", worst[torch.bfloat16])
    assert worst[torch.float32] < 1e-5 and worst[torch.bfloat16] < 1e-2, worst

    frames = torch.from_numpy(benchlib.frames(4, (side, side), seed=1)).cuda()
    base = benchlib.build_model(args.preset).cuda()
    with torch.inference_mode():
        x, _ = prepare_batch(frames, InputConfig(), torch.float32)
        x = x.contiguous(memory_format=torch.channels_last)
        plain32 = copy.deepcopy(base).to(memory_format=torch.channels_last)
        logits_plain = plain32(x)
        fused32 = copy.deepcopy(plain32)
        kernels.use_fused_kernels(fused32)
        logits_fused = fused32(x)
        err = float((logits_fused - logits_plain).norm() / logits_plain.norm())
        row("check", "model fp32 logits, fused vs plain (rel. L2)", err)
        assert err < 1e-4, err
        reference = predict_mask(base, frames, InputConfig(), torch.float32)
        with _code_before():
            xin, box = prepare_batch(frames, InputConfig(), torch.float32)
            before = crop(mask_from_logits(reference_forward(base, xin)), box)
        equal = float((reference == before).float().mean())
        row("check", "fp32 masks == fp32 masks of the code before", equal, f"{side}x{side}")
        assert equal >= 0.9999, equal
        for stages in dict.fromkeys([(), args.stages, ALL_STAGES]):
            model = copy.deepcopy(base).to(dtype=torch.bfloat16, memory_format=torch.channels_last)
            kernels.use_fused_kernels(model, stages)
            masks = predict_mask(model, frames, InputConfig(), torch.bfloat16)
            equal = float((masks == reference).float().mean())
            label = f"bf16 {'fused ' + _stages(stages) if stages else 'plain'} masks == fp32 plain"
            equal_before = float((masks == before).float().mean())
            note = f"{side}x{side}, 4 frames; == fp32 code before {equal_before:.6f}"
            row("check", label, equal, note)
            assert min(equal, equal_before) >= 0.999, (equal, equal_before)


def dwconv(args: argparse.Namespace) -> None:
    for channels, stride in STAGES:
        _dwconv_stage(channels, args.size // stride, args.batch)


def _dwconv_stage(channels: int, size: int, batch: int) -> None:
    block = _random_block(channels, torch.bfloat16)
    x = torch.randn(batch, channels, size, size, device="cuda", dtype=torch.bfloat16)
    x = x.contiguous(memory_format=torch.channels_last)
    x_nchw = x.contiguous()
    floor_bytes = 2 * x.numel() * x.element_size()
    compiled = torch.compile(lambda t: _plain(block, t), dynamic=False)
    variants: dict[str, Callable[[], object]] = {
        "cuDNN CL + LN (eager)": lambda: _plain(block, x),
        "cuDNN NCHW conv alone": lambda: block.dwconv(x_nchw),
        "compiled plain": lambda: compiled(x),
    }
    for tile, warps in ((2048, 4), (4096, 4), (4096, 8), (8192, 8)):
        variants[f"fused tile {tile} warps {warps}"] = lambda t=tile, w=warps: _fused(
            block, x, tile_elements=t, num_warps=w
        )
    label = f"{channels}x{size}x{size} b{batch}"
    with torch.inference_mode():
        for name, step in variants.items():
            ms = 1e3 * benchlib.time_gpu(step, 0.5)
            gbs = floor_bytes / ms / 1e6
            row("dwconv", f"{label} {name}", ms, f"ms; {gbs:.0f} GB/s (floor bytes)")


ALL_STAGES = (0, 1, 2, 3)


def _model_variants(
    args: argparse.Namespace,
) -> dict[str, tuple[Callable, Callable[[], contextlib.AbstractContextManager]]]:
    """name -> (function of the input, the patch it runs inside)."""
    import peaknet_serve.model.kernels as kernels

    base = benchlib.build_model(args.preset).to(
        device="cuda", dtype=torch.bfloat16, memory_format=torch.channels_last
    )
    variants: dict[str, tuple[Callable, Callable[[], contextlib.AbstractContextManager]]] = {}
    if args.before:
        variants["before: ref. head, cuDNN dwconv, no folds"] = (
            lambda x: reference_forward(base, x),
            _code_before,
        )
    for stages in dict.fromkeys([args.stages, ALL_STAGES]):
        for unfolded in (True, False) if stages == args.stages else (False,):
            fused = copy.deepcopy(base)
            kernels.use_fused_kernels(fused, stages)
            fold = "no BiFPN fold" if unfolded else "BiFPN fold"
            patch = _unfolded_bifpn if unfolded else contextlib.nullcontext
            variants[f"new head, fused {_stages(stages)}, {fold}"] = (fused, patch)
    return variants


def _stages(stages: tuple[int, ...]) -> str:
    return "stages " + ",".join(map(str, stages))


def model(args: argparse.Namespace) -> None:
    frames = torch.from_numpy(benchlib.frames(args.batch, (args.size, args.size))).cuda()
    x, _ = prepare_batch(frames, InputConfig(), torch.bfloat16)
    x = x.contiguous(memory_format=torch.channels_last)
    for name, (fn, patch) in _model_variants(args).items():
        # Dynamo's guards do not see the patched forward: without a reset the next variant of
        # the same class reused the last one's code (a 0 s "compile" and the same rate).
        torch._dynamo.reset()
        with torch.inference_mode(), patch():
            compiled = torch.compile(fn, mode=args.mode, dynamic=False)
            start = time.perf_counter()
            compiled(x)
            torch.cuda.synchronize()
            first = time.perf_counter() - start
            per = benchlib.time_gpu(lambda c=compiled: c(x), args.seconds)
        row("model", f"{args.mode} {name}", args.batch / per, f"frames/s; compile {first:.0f} s")
        del compiled
        torch.cuda.empty_cache()


def engine(args: argparse.Namespace) -> None:
    from peaknet_serve.engine import EngineConfig, InferenceEngine

    host = benchlib.frames(args.batch, (args.size, args.size))
    for stages in dict.fromkeys([args.stages, *args.engine_stages]):
        config = EngineConfig(
            device="cuda",
            precision="bf16",
            compile=args.mode,
            fused_dwconv_stages=stages,
            batch_buckets=(args.batch,),
            copy_threads=8,
        )
        eng = InferenceEngine.from_config(benchlib.build_model(args.preset), config, InputConfig())
        start = time.perf_counter()
        eng.warmup((args.size, args.size), [args.batch])
        warm = time.perf_counter() - start
        fps = asyncio.run(benchlib.drive(eng, host, args.seconds, 3))
        name = f"{args.mode} bf16 fused {_stages(stages)}, f32 in"
        row("engine", name, fps, f"frames/s; warm-up {warm:.0f} s")
        eng.close()
        del eng
        torch.cuda.empty_cache()


def profile(args: argparse.Namespace) -> None:
    frames = torch.from_numpy(benchlib.frames(args.batch, (args.size, args.size))).cuda()
    x, _ = prepare_batch(frames, InputConfig(), torch.bfloat16)
    x = x.contiguous(memory_format=torch.channels_last)
    fn, _ = _model_variants(args)[f"new head, fused {_stages(args.stages)}, BiFPN fold"]
    compiled = torch.compile(fn, mode=args.mode, dynamic=False)
    title = f"{args.size}x{args.size} batch {args.batch}, {_stages(args.stages)}"
    path = os.path.join(args.out, "profile_fused.txt")
    per_batch = benchlib.profile_kernels(compiled, x, title=title, path=path)
    row("profile", f"GPU ms per frame, fused {_stages(args.stages)}", per_batch / args.batch)


PARTS = {"check": check, "dwconv": dwconv, "model": model, "engine": engine, "profile": profile}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--preset", default="peaknet-standard")
    parser.add_argument("--size", type=int, default=1920, help="frame height = width")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--mode", default="default", help="torch.compile mode")
    parser.add_argument("--before", action="store_true", help="model part: the code before too")
    parser.add_argument(
        "--stages", default="1", help="backbone stages of the fused kernel (engine default: 1)"
    )
    parser.add_argument(
        "--engine-stages", default="", help="engine part: more stage sets, e.g. '0123,'"
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per row")
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    args = parser.parse_args(argv)
    args.stages = tuple(int(c) for c in args.stages.replace(",", ""))
    args.engine_stages = [tuple(int(c) for c in s) for s in args.engine_stages.split(",") if s]
    if not torch.cuda.is_available():
        print("no CUDA device: this benchmark needs a GPU", file=sys.stderr)
        return 1
    torch.backends.cudnn.benchmark = True  # as the engine does
    card = torch.cuda.get_device_name()
    print(f"card: {card}, torch {torch.__version__}, preset {args.preset}", flush=True)
    for part in args.parts.split(","):
        try:
            PARTS[part](args)
        except Exception as exc:  # one failed part still leaves the others' rows
            print(f"part {part} FAILED: {exc!r}", flush=True)
            row(part, "FAILED", float("nan"), repr(exc)[:80])
    print(f"\n== {card}, torch {torch.__version__} ==")
    for part, what, value, note in ROWS:
        print(f"{part:8} {what:48} {value:10.3f}  {note}")
    with open(os.path.join(args.out, "bench_kernels.json"), "w") as fh:
        json.dump({"card": card, "torch": torch.__version__, "rows": ROWS}, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
