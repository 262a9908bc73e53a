"""Triton kernel for PeakNet on a GPU: a ConvNeXt block's depthwise 7x7 conv and LayerNorm in one.

Why: on channels_last bf16 maps cuDNN runs the depthwise 7x7 conv many times slower than its
memory floor and adds layout transforms around it (docs/perf-notes.md). This kernel reads the
channels_last input once (the 49 taps hit the L1/L2 caches), adds the taps and the bias in
float32, normalises over the channels (``nn.LayerNorm`` over the last dim of the NHWC map, as the
block does next) and writes the (N, H, W, C) map that the block's first Linear reads. The same
function as ``layernorm(dwconv(x).permute(0, 2, 3, 1))`` except that the conv output is not
rounded to the compute dtype before the LayerNorm.

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

TILE_ELEMENTS = 4096
"""Pixels x (channels rounded up to a power of 2) held by one program."""
NUM_WARPS = 4


@triton.jit
def _dwconv_layernorm_kernel(
    x_ptr,
    w_ptr,
    b_ptr,
    ln_w_ptr,
    ln_b_ptr,
    out_ptr,
    height,
    width,
    channels,
    eps,
    stride_xn,
    stride_xh,
    stride_xw,
    ksize: tl.constexpr,
    block_w: tl.constexpr,
    block_c: tl.constexpr,
):
    """One row segment of block_w pixels, all channels; x is channels_last (channel stride 1)."""
    pid_w = tl.program_id(0)
    h = tl.program_id(1)
    n = tl.program_id(2).to(tl.int64)
    offs_w = pid_w * block_w + tl.arange(0, block_w)
    offs_c = tl.arange(0, block_c)
    c_ok = offs_c < channels
    x_base = x_ptr + n * stride_xn
    acc = tl.zeros([block_w, block_c], dtype=tl.float32)
    for dy in tl.static_range(ksize):
        hh = h + dy - ksize // 2
        h_ok = (hh >= 0) & (hh < height)
        for dx in tl.static_range(ksize):
            ww = offs_w + dx - ksize // 2
            ok = (h_ok & (ww >= 0) & (ww < width))[:, None] & c_ok[None, :]
            ptrs = x_base + hh * stride_xh + ww[:, None] * stride_xw + offs_c[None, :]
            xv = tl.load(ptrs, mask=ok, other=0.0).to(tl.float32)
            wv = tl.load(w_ptr + (dy * ksize + dx) * channels + offs_c, mask=c_ok, other=0.0)
            acc += xv * wv[None, :]
    acc += tl.load(b_ptr + offs_c, mask=c_ok, other=0.0).to(tl.float32)[None, :]
    mean = tl.sum(acc, axis=1) / channels
    diff = tl.where(c_ok[None, :], acc - mean[:, None], 0.0)
    var = tl.sum(diff * diff, axis=1) / channels
    rstd = 1.0 / tl.sqrt(var + eps)
    ln_w = tl.load(ln_w_ptr + offs_c, mask=c_ok, other=0.0).to(tl.float32)
    ln_b = tl.load(ln_b_ptr + offs_c, mask=c_ok, other=0.0).to(tl.float32)
    y = diff * rstd[:, None] * ln_w[None, :] + ln_b[None, :]
    out_off = ((n * height + h) * width + offs_w)[:, None] * channels + offs_c[None, :]
    ok_out = (offs_w < width)[:, None] & c_ok[None, :]
    tl.store(out_ptr + out_off, y.to(out_ptr.dtype.element_ty), mask=ok_out)


def launch_dwconv_layernorm(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    ln_weight: torch.Tensor,
    ln_bias: torch.Tensor,
    eps: float,
    *,
    tile_elements: int = TILE_ELEMENTS,
    num_warps: int = NUM_WARPS,
    launcher: Callable[[Any], Any] | None = None,
) -> torch.Tensor:
    """(N, C, H, W) channels_last ``x`` -> (N, H, W, C) ``layernorm(dwconv(x))``, in x's dtype.

    ``weight`` is the conv's (C, 1, k, k) with k odd (padding k // 2, stride 1), ``bias`` (C,);
    the LayerNorm's are (C,). ``tile_elements`` and ``num_warps`` are tuning knobs for
    benchmarks; ``launcher`` wraps the kernel (``wrap_triton`` inside the custom op).
    """
    batch, channels, height, width = x.shape
    ksize = weight.shape[-1]
    x = x.contiguous(memory_format=torch.channels_last)
    taps = weight.reshape(channels, ksize * ksize).t().to(torch.float32).contiguous()
    out = torch.empty((batch, height, width, channels), dtype=x.dtype, device=x.device)
    block_c = triton.next_power_of_2(channels)
    block_w = max(1, min(triton.next_power_of_2(width), tile_elements // block_c))
    grid = (triton.cdiv(width, block_w), height, batch)
    kernel = _dwconv_layernorm_kernel if launcher is None else launcher(_dwconv_layernorm_kernel)
    kernel[grid](
        x,
        taps,
        bias,
        ln_weight,
        ln_bias,
        out,
        height,
        width,
        channels,
        eps,
        x.stride(0),
        x.stride(2),
        x.stride(3),
        ksize=ksize,
        block_w=block_w,
        block_c=block_c,
        num_warps=num_warps,
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
