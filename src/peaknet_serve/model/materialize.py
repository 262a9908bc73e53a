"""``materialize``: a copy that torch.compile (Inductor) must store, so it cannot recompute it.

Why: Inductor inlines a cheap pointwise producer into each of its readers. A bilinear x2 upsample
has four taps, so the BiFPN's coarser level (its LayerNorm, exact GELU and the residual chain
before it) was recomputed for every tap of every pixel of a four times larger map: the stride-4
fusion nodes were the model's slowest kernels, bound by ``erf`` rather than by memory
(docs/perf-notes.md, "Runs 19-22"). Inductor cannot look into a custom op, so it stores the
source once, and the upsample reads four stored values per output pixel.
"""

from __future__ import annotations

import torch


@torch.library.custom_op("peaknet::materialize", mutates_args=())
def materialize(x: torch.Tensor) -> torch.Tensor:
    """A copy of ``x`` (same shape, dtype, device and memory format); the same values."""
    return x.clone()


@materialize.register_fake
def _(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


def _backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:
    return grad


materialize.register_autograd(_backward)
