"""The ConvNeXt-V2 backbone, laid out as Hugging Face's ``ConvNextV2Backbone``.

Liu et al., "A ConvNet for the 2020s" (arXiv:2201.03545) and Woo et al., "ConvNeXt V2"
(arXiv:2301.00808). Attribute names are the Hugging Face checkpoint keys (``embeddings``,
``encoder.stages.N.layers.M``, ``hidden_states_norms.stageK``), so PeakNet checkpoints trained with
``transformers`` load without renaming. No layer-scale and no drop-path: PeakNet uses neither.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from peaknet_serve.model.grn import GlobalResponseNorm

LAYER_NORM_EPS = 1e-6


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor (the "channels_first" LayerNorm)."""

    def __init__(self, num_channels: int, eps: float = LAYER_NORM_EPS) -> None:
        super().__init__(num_channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class Embeddings(nn.Module):
    """The stem: a 4x4 stride-4 patchify convolution and a channels-first LayerNorm."""

    def __init__(self, in_channels: int, out_channels: int, patch_size: int = 4) -> None:
        super().__init__()
        self.patch_embeddings = nn.Conv2d(
            in_channels, out_channels, kernel_size=patch_size, stride=patch_size
        )
        self.layernorm = LayerNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layernorm(self.patch_embeddings(x))


class Block(nn.Module):
    """dwconv 7x7 -> LayerNorm -> Linear C->4C -> GELU -> GRN -> Linear 4C->C, plus the input.

    ``fused`` (off by default, not in the state_dict) runs dwconv + LayerNorm as one Triton
    kernel, ``torch.ops.peaknet.dwconv_layernorm``; see ``kernels.use_fused_kernels`` (GPU only).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.layernorm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.grn = GlobalResponseNorm(4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.fused = False

    def extra_repr(self) -> str:
        return "fused=True" if self.fused else ""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        if self.fused:
            ln = self.layernorm
            x = torch.ops.peaknet.dwconv_layernorm(
                x, self.dwconv.weight, self.dwconv.bias, ln.weight, ln.bias, ln.eps
            )
        else:
            x = self.layernorm(self.dwconv(x).permute(0, 2, 3, 1))
        x = self.act(self.pwconv1(x))
        x = self._grn_pwconv2(x)
        return shortcut + x.permute(0, 3, 1, 2)

    def _grn_pwconv2(self, x: torch.Tensor) -> torch.Tensor:
        """``pwconv2(grn(x))`` for x (N, H, W, 4C), with GRN's per-sample channel scale folded
        into pwconv2's weights (in float32, or float64 for float64 x) and its beta into the bias:
        one batched matmul reads x, instead of a GRN pass that reads and writes the block's
        widest map first."""
        n, h, w, c = x.shape
        scale = self.grn.channel_scale(x).view(n, 1, c)
        weight = self.pwconv2.weight.to(scale.dtype)
        per_sample = (weight * scale).to(x.dtype).transpose(1, 2)
        beta = self.grn.bias.to(scale.dtype).view(c)
        bias = (self.pwconv2.bias.to(scale.dtype) + weight @ beta).to(x.dtype)
        out = torch.baddbmm(bias, x.reshape(n, h * w, c), per_sample)
        return out.view(n, h, w, -1)


class Stage(nn.Module):
    """An optional downsampling (LayerNorm + 2x2 stride-2 conv) followed by ``depth`` blocks."""

    def __init__(self, in_channels: int, out_channels: int, depth: int, stride: int) -> None:
        super().__init__()
        if in_channels != out_channels or stride > 1:
            self.downsampling_layer: nn.Module = nn.Sequential(
                LayerNorm2d(in_channels),
                nn.Conv2d(in_channels, out_channels, kernel_size=stride, stride=stride),
            )
        else:
            self.downsampling_layer = nn.Identity()
        self.layers = nn.Sequential(*[Block(out_channels) for _ in range(depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.downsampling_layer(x))


class Encoder(nn.Module):
    """The four stages; returns the output of each (strides 4, 8, 16, 32)."""

    def __init__(self, hidden_sizes: Sequence[int], depths: Sequence[int]) -> None:
        super().__init__()
        in_sizes = [hidden_sizes[0], *hidden_sizes[:-1]]
        self.stages = nn.ModuleList(
            Stage(c_in, c_out, depth, stride=1 if i == 0 else 2)
            for i, (c_in, c_out, depth) in enumerate(
                zip(in_sizes, hidden_sizes, depths, strict=True)
            )
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        return outputs


class ConvNeXtV2Backbone(nn.Module):
    """ConvNeXt-V2 returning the four stage outputs, each through its own LayerNorm.

    Args:
        num_channels: input channels.
        hidden_sizes: channels of the four stages.
        depths: blocks per stage.
    """

    def __init__(
        self, *, num_channels: int, hidden_sizes: Sequence[int], depths: Sequence[int]
    ) -> None:
        super().__init__()
        self.embeddings = Embeddings(num_channels, hidden_sizes[0])
        self.encoder = Encoder(hidden_sizes, depths)
        self.hidden_states_norms = nn.ModuleDict(
            {f"stage{i + 1}": LayerNorm2d(c) for i, c in enumerate(hidden_sizes)}
        )
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Conv2d | nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        stage_outputs = self.encoder(self.embeddings(x))
        norms = self.hidden_states_norms.values()
        return [norm(y) for norm, y in zip(norms, stage_outputs, strict=True)]
