"""PeakNet: ConvNeXt-V2 backbone -> 1x1 adapters -> BiFPN -> segmentation head -> logits.

Attribute names are the reference's state_dict keys, so its checkpoints load strictly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from pydantic import ValidationError
from torch import nn

from peaknet_serve.errors import ConfigError
from peaknet_serve.model.backbone import ConvNeXtV2Backbone
from peaknet_serve.model.bifpn import BiFPN, resize
from peaknet_serve.model.config import PeakNetConfig
from peaknet_serve.model.head import SegLateralLayer

STRIDE = 32
"""Input height and width must be multiples of this (the coarsest level's stride)."""

OUTPUT_STRIDE = 4
"""Stride of the head's fused map; the logits are upsampled by this factor."""


class PeakNet(nn.Module):
    """Segmentation network: B x C x H x W input, B x num_classes x H x W logits.

    H and W must be multiples of 32. No normalisation happens inside; see ``preprocess``.

    Args:
        hidden_sizes: channels of the four backbone stages.
        depths: blocks per backbone stage.
        bifpn_num_features: channels of the BiFPN levels.
        bifpn_num_blocks: number of BiFPN blocks.
        seg_out_channels: channels of the segmentation head (multiple of 32).
        num_channels: input channels.
        num_classes: output classes (class 1 is "peak").
    """

    def __init__(
        self,
        *,
        hidden_sizes: tuple[int, ...],
        depths: tuple[int, ...],
        bifpn_num_features: int,
        bifpn_num_blocks: int,
        seg_out_channels: int,
        num_channels: int = 1,
        num_classes: int = 2,
    ) -> None:
        super().__init__()
        self.backbone = ConvNeXtV2Backbone(
            num_channels=num_channels, hidden_sizes=hidden_sizes, depths=depths
        )
        self.backbone_to_bifpn = nn.ModuleList(
            nn.Conv2d(c, bifpn_num_features, kernel_size=1) for c in hidden_sizes
        )
        self.bifpn = BiFPN(bifpn_num_features, num_blocks=bifpn_num_blocks)
        self.seg_lateral_layers = nn.ModuleList(
            SegLateralLayer(bifpn_num_features, seg_out_channels, num_upsamples=level)
            for level in range(len(hidden_sizes))
        )
        self.head_segmask = nn.Conv2d(seg_out_channels, num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)
        levels = [adapter(f) for adapter, f in zip(self.backbone_to_bifpn, features, strict=True)]
        levels = self.bifpn(levels)
        # The reference upsamples every coarser branch x2 to stride 4 (256 channels), sums all
        # four and applies head_segmask, a 1x1 conv. A 1x1 conv and a bilinear resize commute
        # (both are linear; bilinear weights sum to 1), so the branches that end with an upsample
        # are summed at stride 8 (coarsest first, as the reference accumulates) and go through the
        # conv's weights first: the x2 upsample then moves num_classes channels instead of 256.
        # Equal to the reference in real arithmetic (``reference_forward``; tests/test_model.py).
        coarse = None
        for lateral, level in zip(self.seg_lateral_layers[:0:-1], levels[:0:-1], strict=True):
            y = lateral(level)
            coarse = y if coarse is None else coarse + y
        fine = self.seg_lateral_layers[0](levels[0])
        logits = self.head_segmask(fine) + resize(F.conv2d(coarse, self.head_segmask.weight), 2.0)
        return resize(logits, float(OUTPUT_STRIDE))


def reference_forward(model: PeakNet, x: torch.Tensor) -> torch.Tensor:
    """``model``'s logits in the reference's order of operations: every branch upsampled to
    stride 4 and summed coarsest first, then ``head_segmask`` (1x1 conv), then x4.

    ``PeakNet.forward`` equals it in real arithmetic at less cost; this is the check of that
    reordering (tests/test_model.py) and its baseline (scripts/bench_kernels.py).
    """
    features = model.backbone(x)
    levels = [a(f) for a, f in zip(model.backbone_to_bifpn, features, strict=True)]
    levels = model.bifpn(levels)
    fused = None
    for lateral, level in zip(model.seg_lateral_layers[::-1], levels[::-1], strict=True):
        y = level
        for layer in lateral.layers:
            y = layer(y)
            if lateral is not model.seg_lateral_layers[0]:
                y = resize(y, 2.0)
        fused = y if fused is None else fused + y
    return resize(model.head_segmask(fused), float(OUTPUT_STRIDE))


def build_peaknet(config: Mapping[str, Any] | PeakNetConfig) -> PeakNet:
    """Build a randomly initialised PeakNet; load weights with ``checkpoint.load_weights``.

    Raises:
        ConfigError: the mapping has unknown keys or invalid values.
    """
    if not isinstance(config, PeakNetConfig):
        try:
            config = PeakNetConfig.model_validate(dict(config))
        except ValidationError as exc:
            raise ConfigError(f"invalid PeakNet model config: {exc}") from exc
    return PeakNet(**config.model_dump())
