"""Triton kernel for PeakNet on a GPU: a ConvNeXt block's depthwise 7x7 conv and LayerNorm in one.

Why: on channels_last bf16 maps cuDNN runs the depthwise 7x7 conv many times slower than its
memory floor and adds layout transforms around it (docs/perf-notes.md). This kernel reads the
channels_last input once (the 49 taps hit the L1/L2 caches), adds the taps and the bias in
float32, normalises over the channels (``nn.LayerNorm`` over the last dim of the NHWC map, as the
block does next) and writes the (N, H, W, C) map that the block's first Linear reads. The same
function as ``layernorm(dwconv(x).permute(0, 2, 3, 1))`` except that the conv output is not
rounded to the compute dtype before the LayerNorm.

Its cost is instructions per tap, not bytes, so the kernel keeps them few: the map's shape is a
compile-time constant (every tap's offset folds into the load), programs away from the border
load without masks, and the channels are split into up to four tiles of a power of 2 (96 = 3 x 32
for the standard preset, no padding to 128).

Importing this module needs Triton (GPU hosts only) and registers ``torch.ops.peaknet.
dwconv_layernorm``; ``use_fused_kernels`` switches the blocks of chosen stages to it. CPUs keep the
plain PyTorch path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
import triton
import triton.language as tl
from torch import nn
from torch.library import triton_op, wrap_triton

from peaknet_serve.model.backbone import Block, Encoder

MAX_CHANNEL_TILES = 4
"""Channels are split into at most this many equal power-of-2 tiles (else padded to one)."""

CONFIGS = [
    triton.Config({"tile": tile, "rows": rows}, num_warps=warps)
    for tile, rows, warps in (
        (1024, 1, 2),
        (2048, 1, 4),
        (2048, 4, 4),
        (4096, 1, 4),
        (4096, 1, 8),
    )
]
"""Pixels x channel-tile elements per program, output rows per program, warps: autotuned per
map shape (the first call of a shape times them all)."""


def channel_tiles(channels: int) -> tuple[int, int]:
    """(tiles, lanes): the fewest tiles of a power-of-2 lane count that ``channels`` fills
    exactly (96 -> 3 x 32, 768 -> 3 x 256); (1, next power of 2) when none does."""
    for tiles in range(1, MAX_CHANNEL_TILES + 1):
        lanes = channels // tiles
        if channels % tiles == 0 and lanes & (lanes - 1) == 0:
            return tiles, lanes
    return 1, triton.next_power_of_2(channels)


@triton.jit
def _taps(
    x_img,
    w_ptr,
    h,
    offs_w,
    offs_c,
    height: tl.constexpr,
    width: tl.constexpr,
    channels: tl.constexpr,
    ksize: tl.constexpr,
    masked: tl.constexpr,
    even_c: tl.constexpr,
    block_w: tl.constexpr,
    block_c: tl.constexpr,
):
    """Sum of the ksize x ksize taps for row ``h``, pixels ``offs_w``, channels ``offs_c``."""
    acc = tl.zeros([block_w, block_c], dtype=tl.float32)
    c_ok = offs_c < channels
    base = x_img + (h * width + offs_w)[:, None] * channels + offs_c[None, :]
    for dy in tl.static_range(ksize):
        hh = h + dy - ksize // 2
        for dx in tl.static_range(ksize):
            ptrs = base + ((dy - ksize // 2) * width + dx - ksize // 2) * channels
            if masked:
                ww = offs_w + dx - ksize // 2
                ok = ((ww >= 0) & (ww < width) & (hh >= 0) & (hh < height))[:, None]
                if not even_c:
                    ok = ok & c_ok[None, :]
                xv = tl.load(ptrs, mask=ok, other=0.0)
            elif even_c:
                xv = tl.load(ptrs)
            else:
                xv = tl.load(ptrs, mask=c_ok[None, :], other=0.0)
            if even_c:
                wv = tl.load(w_ptr + (dy * ksize + dx) * channels + offs_c)
            else:
                wv = tl.load(w_ptr + (dy * ksize + dx) * channels + offs_c, mask=c_ok, other=0.0)
            acc += xv.to(tl.float32) * wv[None, :]
    return acc


@triton.jit
def _row_taps(
    x_img,
    w_ptr,
    h,
    offs_w,
    offs_c,
    interior,
    height: tl.constexpr,
    width: tl.constexpr,
    channels: tl.constexpr,
    ksize: tl.constexpr,
    even_c: tl.constexpr,
    block_w: tl.constexpr,
    block_c: tl.constexpr,
):
    """``_taps`` without masks where the whole window lies inside the map."""
    if interior:
        acc = _taps(
            x_img,
            w_ptr,
            h,
            offs_w,
            offs_c,
            height,
            width,
            channels,
            ksize,
            False,
            even_c,
            block_w,
            block_c,
        )
    else:
        acc = _taps(
            x_img,
            w_ptr,
            h,
            offs_w,
            offs_c,
            height,
            width,
            channels,
            ksize,
            True,
            even_c,
            block_w,
            block_c,
        )
    return acc


@triton.jit
def _dwconv_layernorm_kernel(
    x_ptr,
    w_ptr,
    b_ptr,
    ln_w_ptr,
    ln_b_ptr,
    out_ptr,
    eps,
    height: tl.constexpr,
    width: tl.constexpr,
    channels: tl.constexpr,
    ksize: tl.constexpr,
    c_tiles: tl.constexpr,
    block_c: tl.constexpr,
    tile: tl.constexpr,
    rows: tl.constexpr,
):
    """rows output rows x block_w pixels x all channels (c_tiles tiles of block_c lanes);
    x and out are contiguous (N, H, W, C)."""
    block_w: tl.constexpr = tile // block_c
    even_c: tl.constexpr = c_tiles * block_c == channels
    pad: tl.constexpr = ksize // 2
    w0 = tl.program_id(0) * block_w
    h0 = tl.program_id(1) * rows
    n = tl.program_id(2).to(tl.int64)
    offs_w = w0 + tl.arange(0, block_w)
    offs_c = tl.arange(0, block_c)
    w_ok = offs_w < width
    x_img = x_ptr + n * (height * width * channels)
    out_img = out_ptr + n * (height * width * channels)
    cols_inside = (w0 >= pad) & (w0 + block_w + pad <= width)
    for r in range(rows):
        h = h0 + r
        if h < height:
            interior = cols_inside & (h >= pad) & (h + pad < height)
            a0 = _row_taps(
                x_img,
                w_ptr,
                h,
                offs_w,
                offs_c,
                interior,
                height,
                width,
                channels,
                ksize,
                even_c,
                block_w,
                block_c,
            )
            a0 += tl.load(b_ptr + offs_c, mask=offs_c < channels, other=0.0).to(tl.float32)[None, :]
            total = tl.sum(a0, axis=1)
            if c_tiles > 1:
                a1 = _row_taps(
                    x_img,
                    w_ptr,
                    h,
                    offs_w,
                    offs_c + block_c,
                    interior,
                    height,
                    width,
                    channels,
                    ksize,
                    even_c,
                    block_w,
                    block_c,
                )
                a1 += tl.load(b_ptr + block_c + offs_c).to(tl.float32)[None, :]
                total += tl.sum(a1, axis=1)
            if c_tiles > 2:
                a2 = _row_taps(
                    x_img,
                    w_ptr,
                    h,
                    offs_w,
                    offs_c + 2 * block_c,
                    interior,
                    height,
                    width,
                    channels,
                    ksize,
                    even_c,
                    block_w,
                    block_c,
                )
                a2 += tl.load(b_ptr + 2 * block_c + offs_c).to(tl.float32)[None, :]
                total += tl.sum(a2, axis=1)
            if c_tiles > 3:
                a3 = _row_taps(
                    x_img,
                    w_ptr,
                    h,
                    offs_w,
                    offs_c + 3 * block_c,
                    interior,
                    height,
                    width,
                    channels,
                    ksize,
                    even_c,
                    block_w,
                    block_c,
                )
                a3 += tl.load(b_ptr + 3 * block_c + offs_c).to(tl.float32)[None, :]
                total += tl.sum(a3, axis=1)
            mean = (total / channels)[:, None]
            # Two passes over the registers, as nn.LayerNorm: no E[x^2] - E[x]^2 cancellation.
            d0 = a0 - mean
            if not even_c:
                d0 = tl.where((offs_c < channels)[None, :], d0, 0.0)
            ssq = tl.sum(d0 * d0, axis=1)
            if c_tiles > 1:
                d1 = a1 - mean
                ssq += tl.sum(d1 * d1, axis=1)
            if c_tiles > 2:
                d2 = a2 - mean
                ssq += tl.sum(d2 * d2, axis=1)
            if c_tiles > 3:
                d3 = a3 - mean
                ssq += tl.sum(d3 * d3, axis=1)
            rstd = (1.0 / tl.sqrt(ssq / channels + eps))[:, None]
            row_out = out_img + (h * width + offs_w)[:, None] * channels
            _store_tile(row_out, d0, rstd, ln_w_ptr, ln_b_ptr, offs_c, w_ok, channels, even_c)
            if c_tiles > 1:
                _store_tile(
                    row_out,
                    d1,
                    rstd,
                    ln_w_ptr,
                    ln_b_ptr,
                    offs_c + block_c,
                    w_ok,
                    channels,
                    even_c,
                )
            if c_tiles > 2:
                _store_tile(
                    row_out,
                    d2,
                    rstd,
                    ln_w_ptr,
                    ln_b_ptr,
                    offs_c + 2 * block_c,
                    w_ok,
                    channels,
                    even_c,
                )
            if c_tiles > 3:
                _store_tile(
                    row_out,
                    d3,
                    rstd,
                    ln_w_ptr,
                    ln_b_ptr,
                    offs_c + 3 * block_c,
                    w_ok,
                    channels,
                    even_c,
                )


@triton.jit
def _store_tile(
    row_out,
    diff,
    rstd,
    ln_w_ptr,
    ln_b_ptr,
    offs_c,
    w_ok,
    channels: tl.constexpr,
    even_c: tl.constexpr,
):
    """LayerNorm's scale and shift for one channel tile, stored in out's dtype."""
    c_ok = offs_c < channels
    if even_c:
        ln_w = tl.load(ln_w_ptr + offs_c).to(tl.float32)
        ln_b = tl.load(ln_b_ptr + offs_c).to(tl.float32)
        ok = w_ok[:, None]
    else:
        ln_w = tl.load(ln_w_ptr + offs_c, mask=c_ok, other=0.0).to(tl.float32)
        ln_b = tl.load(ln_b_ptr + offs_c, mask=c_ok, other=0.0).to(tl.float32)
        ok = w_ok[:, None] & c_ok[None, :]
    y = diff * rstd * ln_w[None, :] + ln_b[None, :]
    tl.store(row_out + offs_c[None, :], y.to(row_out.dtype.element_ty), mask=ok)


def _fitting_configs(configs: list[triton.Config], named_args: dict, **kwargs: Any) -> list:
    """The configs whose tile holds at least one pixel of a channel tile (else one that does)."""
    lanes = kwargs["block_c"]
    fitting = [c for c in configs if c.kwargs["tile"] >= lanes]
    return fitting or [triton.Config({"tile": lanes, "rows": 1}, num_warps=8)]


_autotuned_kernel = triton.autotune(
    configs=CONFIGS,
    key=["height", "width", "channels"],
    prune_configs_by={"early_config_prune": _fitting_configs},
)(_dwconv_layernorm_kernel)


def launch_dwconv_layernorm(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    ln_weight: torch.Tensor,
    ln_bias: torch.Tensor,
    eps: float,
    *,
    config: dict[str, int] | None = None,
    launcher: Callable[[Any], Any] | None = None,
) -> torch.Tensor:
    """(N, C, H, W) channels_last ``x`` -> (N, H, W, C) ``layernorm(dwconv(x))``, in x's dtype.

    ``weight`` is the conv's (C, 1, k, k) with k odd (padding k // 2, stride 1), ``bias`` (C,);
    the LayerNorm's are (C,). ``config`` (``tile``, ``rows``, ``num_warps``; benchmarks) skips
    the autotuner; ``launcher`` wraps the kernel (``wrap_triton`` inside the custom op).
    """
    batch, channels, height, width = x.shape
    ksize = weight.shape[-1]
    x = x.contiguous(memory_format=torch.channels_last)
    taps = weight.reshape(channels, ksize * ksize).t().to(torch.float32).contiguous()
    out = torch.empty((batch, height, width, channels), dtype=x.dtype, device=x.device)
    c_tiles, block_c = channel_tiles(channels)
    meta = dict(config or {})
    kernel = _autotuned_kernel if config is None else _dwconv_layernorm_kernel
    kernel = kernel if launcher is None else launcher(kernel)

    def grid(m: dict[str, int]) -> tuple[int, int, int]:
        return (triton.cdiv(width, m["tile"] // block_c), triton.cdiv(height, m["rows"]), batch)

    kernel[grid](
        x,
        taps,
        bias,
        ln_weight,
        ln_bias,
        out,
        eps,
        height=height,
        width=width,
        channels=channels,
        ksize=ksize,
        c_tiles=c_tiles,
        block_c=block_c,
        **meta,
    )
    return out


@triton_op("peaknet::dwconv_layernorm", mutates_args=())
def dwconv_layernorm(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    ln_weight: torch.Tensor,
    ln_bias: torch.Tensor,
    eps: float,
) -> torch.Tensor:
    """``launch_dwconv_layernorm`` as a custom op that torch.compile and export see into."""
    return launch_dwconv_layernorm(x, weight, bias, ln_weight, ln_bias, eps, launcher=wrap_triton)


def use_fused_kernels(model: nn.Module, stages: Iterable[int] | None = None) -> int:
    """Switch the ConvNeXt blocks of ``model``'s backbone stages ``stages`` (0-based; all when
    None) to the fused kernel and every other block to the plain path.

    The weights and the state_dict do not change. Returns the number of blocks switched on.
    """
    count = 0
    for encoder in (m for m in model.modules() if isinstance(m, Encoder)):
        for index, stage in enumerate(encoder.stages):
            on = stages is None or index in stages
            for block in stage.modules():
                if isinstance(block, Block):
                    block.fused = on
                    count += on
    return count
