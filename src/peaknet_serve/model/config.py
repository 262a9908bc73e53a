"""Configuration sections of the model: its architecture and the handling of its input."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from peaknet_serve._section import Section

GROUP_NORM_GROUPS = 32
"""GroupNorm groups in the segmentation head, as in the reference (so head channels % 32 == 0)."""


class PeakNetConfig(Section):
    """The PeakNet architecture: ConvNeXt-V2 backbone, BiFPN, segmentation head.

    The defaults are the small demo network (``peaknet-demo`` preset); the named presets in
    ``peaknet_serve/presets/*.yaml`` hold the SLAC configurations.
    """

    hidden_sizes: tuple[int, int, int, int] = Field(
        default=(16, 32, 64, 128),
        description="Channels of the four ConvNeXt-V2 stages (strides 4, 8, 16, 32).",
    )
    depths: tuple[int, int, int, int] = Field(
        default=(1, 1, 2, 1), description="Number of ConvNeXt-V2 blocks in each of the four stages."
    )
    bifpn_num_features: int = Field(
        default=32, gt=0, description="Channels of every BiFPN level (and of the 1x1 adapters)."
    )
    bifpn_num_blocks: int = Field(default=1, gt=0, description="Number of stacked BiFPN blocks.")
    seg_out_channels: int = Field(
        default=32,
        gt=0,
        description=f"Channels of the segmentation head; a multiple of {GROUP_NORM_GROUPS} "
        "(GroupNorm groups).",
    )
    num_channels: int = Field(
        default=1, gt=0, description="Input channels (1 for detector frames)."
    )
    num_classes: int = Field(
        default=2, ge=2, description="Output classes; class 1 is 'peak', class 0 background."
    )

    @field_validator("hidden_sizes", "depths")
    @classmethod
    def _positive(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(v <= 0 for v in value):
            raise ValueError(f"every entry must be positive, got {list(value)}")
        return value

    @model_validator(mode="after")
    def _head_channels_fit_group_norm(self) -> PeakNetConfig:
        if self.seg_out_channels % GROUP_NORM_GROUPS:
            raise ValueError(
                f"seg_out_channels={self.seg_out_channels} must be a multiple of "
                f"{GROUP_NORM_GROUPS} (the head's GroupNorm groups); try "
                f"{-(-self.seg_out_channels // GROUP_NORM_GROUPS) * GROUP_NORM_GROUPS}"
            )
        return self


class InputConfig(Section):
    """How raw frames become model input (see ``peaknet_serve.model.preprocess``)."""

    normalize: bool = Field(
        default=True,
        description="Per-frame instance normalisation (x - mean) / sqrt(var + 1e-6) over "
        "(C, H, W), as in training; statistics are taken over the unpadded frame.",
    )
    pad_position: Literal["center", "bottom_right"] = Field(
        default="center",
        description="Where the frame sits in the input padded up to multiples of 32: centred, or "
        "at the top-left corner with the padding at the bottom and right.",
    )
    pad_value: Literal["mean", "zero"] = Field(
        default="mean",
        description="Raw value of the padding: the frame mean (0 after normalisation; GRN and "
        "instance norm see the padding, so this disturbs them least) or 0 (like the pusher's "
        "zero padding).",
    )
