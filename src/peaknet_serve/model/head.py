"""The segmentation head's lateral layers: bring every BiFPN level to stride 4.

Kirillov et al., "Panoptic Feature Pyramid Networks" (arXiv:1901.02446) semantic branch, as the
PeakNet reference builds it: a level ``k`` steps above stride 4 gets ``k`` units of
conv 3x3 -> GroupNorm(32) -> GELU -> bilinear x2; the stride-4 level gets one unit without
upsampling. The reference sums the four results at stride 4 and applies ``head_segmask``, a 1x1
conv; ``peaknet`` applies it before the last x2 upsampling instead (see ``PeakNet.forward``), so
``SegLateralLayer`` stops short of that upsampling.
"""

from __future__ import annotations

import torch
from torch import nn

from peaknet_serve.model.bifpn import resize
from peaknet_serve.model.config import GROUP_NORM_GROUPS


class SegLateralLayer(nn.Module):
    """``max(num_upsamples, 1)`` conv units, each but the last followed by a x2 upsampling.

    The output is at stride 8 when ``num_upsamples`` > 0 (the caller does the last x2
    upsampling), else at stride 4.

    Args:
        in_channels: channels of the BiFPN level.
        out_channels: channels of the head.
        num_upsamples: number of x2 upsamplings to reach stride 4 (0 for the stride-4 level).
    """

    def __init__(self, in_channels: int, out_channels: int, *, num_upsamples: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, 3, padding=1),
                nn.GroupNorm(GROUP_NORM_GROUPS, out_channels),
                nn.GELU(),
            )
            for i in range(max(num_upsamples, 1))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            if i > 0:
                x = resize(x, 2.0)
            x = layer(x)
        return x
