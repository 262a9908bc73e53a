"""Global Response Normalization (GRN), the layer that ConvNeXt-V2 adds to every block.

Woo et al., "ConvNeXt V2: Co-designing and Scaling ConvNets with Masked Autoencoders",
arXiv:2301.00808. It works on channels-last tensors, between the two pointwise layers of a block.
"""

from __future__ import annotations

import torch
from torch import nn


class GlobalResponseNorm(nn.Module):
    """``gamma * (x * N(x)) + beta + x`` with ``N = ||x||_2 over (H, W) / mean over channels``.

    Parameter names and shapes ``(1, 1, 1, C)`` are those of the Hugging Face ConvNextV2GRN, so
    reference checkpoints load unchanged. Padding pixels enter the spatial norm: pad with the
    frame mean (see ``preprocess``), not with arbitrary values. ``backbone.Block`` applies GRN
    folded into its next Linear (``channel_scale``), so the layer has no forward of its own.
    """

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(1, 1, 1, dim))
        self.bias = nn.Parameter(torch.zeros(1, 1, 1, dim))

    def channel_scale(self, x: torch.Tensor) -> torch.Tensor:
        """``gamma * N(x) + 1``, (N, 1, 1, C) for x (N, H, W, C), in float32 or x's wider dtype:
        GRN is ``x * channel_scale(x) + beta``, a per-sample scale of each channel plus a
        constant, which is how ``backbone.Block`` folds it into its next Linear."""
        dtype = torch.promote_types(x.dtype, torch.float32)
        gx = torch.linalg.vector_norm(x, ord=2, dim=(1, 2), keepdim=True, dtype=dtype)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + self.eps)
        return self.weight.to(dtype) * nx + 1.0
