"""The BiFPN that fuses the four backbone levels, in PeakNet's variant.

Tan et al., "EfficientDet: Scalable and Efficient Object Detection" (arXiv:1911.09070), with the
changes of the PeakNet reference: 1x1 depthwise-separable convs without bias, a channels-first
LayerNorm and exact GELU instead of BatchNorm and ReLU, a residual add after each fused node, and
ReLU-clamped fusion weights where a fixed mask drops the duplicate ``p7`` input at the top level.
Levels are named by their stride exponent: 4..7 are strides 4..32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from peaknet_serve.model.backbone import LayerNorm2d
from peaknet_serve.model.materialize import materialize

FUSION_EPS = 1e-5


def resize(x: torch.Tensor, scale_factor: float) -> torch.Tensor:
    """Bilinear resize (``align_corners=False``) computed in float32, as the reference does.

    An upsample reads a stored copy of ``x`` (``materialize``): compiled, it would otherwise
    recompute ``x``'s producers for each of its four taps.
    """
    if scale_factor > 1:
        x = materialize(x)
    out = F.interpolate(
        x.to(torch.float32), scale_factor=scale_factor, mode="bilinear", align_corners=False
    )
    return out.to(x.dtype)


class DepthwiseSeparableConv2d(nn.Module):
    """A depthwise conv followed by a pointwise (1x1) conv; PeakNet uses kernel 1, no bias."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1) -> None:
        super().__init__()
        self.depthwise_conv = nn.Conv2d(
            in_channels,
            in_channels,
            kernel_size=kernel_size,
            padding=kernel_size // 2,
            groups=in_channels,
            bias=False,
        )
        self.pointwise_conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.depthwise_conv.kernel_size != (1, 1):
            return self.pointwise_conv(self.depthwise_conv(x))
        # A 1x1 depthwise conv scales each input channel: fold it into the pointwise weights
        # (in float32) and run one conv instead of a cuDNN depthwise pass over the map.
        scale = self.depthwise_conv.weight.to(torch.float32).view(1, -1, 1, 1)
        weight = (self.pointwise_conv.weight.to(torch.float32) * scale).to(x.dtype)
        return F.conv2d(x, weight)


def _fusion_conv(num_features: int) -> nn.Sequential:
    return nn.Sequential(
        DepthwiseSeparableConv2d(num_features, num_features),
        LayerNorm2d(num_features),
        nn.GELU(),
    )


class BiFPNBlock(nn.Module):
    """One top-down (``m``) then bottom-up (``q``) pass over ``num_levels`` levels.

    Args:
        num_features: channels of every level.
        num_levels: number of input levels (PeakNet: 4).
        base_level: name of the finest level (PeakNet: 4, i.e. stride 4).
    """

    def __init__(self, num_features: int, *, num_levels: int = 4, base_level: int = 4) -> None:
        super().__init__()
        self.min_level = base_level
        self.max_level = base_level + num_levels - 1
        levels_m = range(self.min_level, self.max_level)
        levels_q = range(self.min_level + 1, self.max_level + 1)
        self.conv = nn.ModuleDict(
            {f"m{level}": _fusion_conv(num_features) for level in levels_m}
            | {f"q{level}": _fusion_conv(num_features) for level in levels_q}
        )
        self.w_m = nn.Parameter(torch.ones(num_levels - 1, 2))
        self.w_q = nn.Parameter(torch.ones(num_levels - 1, 3))
        # At the top level m7 is p7 itself: drop the p7 term so p7 is not counted twice.
        w_q_mask = torch.ones(num_levels - 1, 3, dtype=torch.bool)
        w_q_mask[-1, 0] = False
        self.register_buffer("w_q_mask", w_q_mask)

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        p = dict(zip(range(self.min_level, self.max_level + 1), x, strict=True))

        # Top-down: m[high] from p[high] and the upsampled coarser level.
        m = {self.max_level: p[self.max_level]}
        w_m = F.relu(self.w_m)
        for idx, low in enumerate(range(self.max_level, self.min_level, -1)):
            high = low - 1
            w0, w1 = w_m[idx]
            fused = (w0 * p[high] + w1 * resize(m[low], 2.0)) / (w0 + w1 + FUSION_EPS)
            m[high] = self.conv[f"m{high}"](fused) + p[high]

        # Bottom-up: q[low] from p[low], m[low] and the downsampled finer level.
        q = {self.min_level: m[self.min_level]}
        w_q = F.relu(self.w_q * self.w_q_mask)
        for idx, high in enumerate(range(self.min_level, self.max_level)):
            low = high + 1
            w0, w1, w2 = w_q[idx]
            fused = w0 * p[low] + w1 * m[low] + w2 * resize(q[high], 0.5)
            fused = fused / (w0 + w1 + w2 + FUSION_EPS)
            q[low] = self.conv[f"q{low}"](fused) + p[low]

        return [q[level] for level in range(self.min_level, self.max_level + 1)]


class BiFPN(nn.Module):
    """``num_blocks`` BiFPN blocks in sequence; takes and returns four levels, finest first."""

    def __init__(self, num_features: int, *, num_blocks: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*[BiFPNBlock(num_features) for _ in range(num_blocks)])

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        return self.blocks(x)
