"""Input handling around PeakNet: any frame size in, a mask of the same size out.

Everything here is tensor ops on the tensor's own device (no host copies, no syncs), so a GPU
engine can run it between the host-to-device copy and the model.

Order of operations, and why:
1. Cast to float32 (statistics in bf16/fp16 are too coarse; uint16 frames cannot be averaged).
2. Per-frame mean and variance over (C, H, W) of the *unpadded* frame's finite pixels, so the
   pixels the model sees do not depend on how much padding a frame size needs, nor on the
   invalid pixels (NaN/inf: ``peaks.invalid.PixelScreen`` turns sentinels and bad pixels into
   NaN before this).
3. Normalise the frame with them (``normalize``), as in training; non-finite pixels take the
   frame mean (0 after normalisation), the value that disturbs the model's norms least.
4. Pad to multiples of 32 with the raw value ``pad_value`` ("mean": the frame mean, which is 0
   after normalisation; "zero": raw 0, which is ``-mean / std`` after normalisation). GRN and the
   model's norms see the padding; mean padding shifts their statistics the least.
5. Cast to the compute dtype.
The model's output is cropped back with the returned ``Crop``, so peak coordinates refer to the
unpadded frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from peaknet_serve.model.config import InputConfig
from peaknet_serve.model.peaknet import STRIDE

NORM_EPS = 1e-6


@dataclass(frozen=True)
class Crop:
    """Where the frame sits in the padded input: rows [top, top+height), cols [left, left+width)."""

    top: int
    left: int
    height: int
    width: int


def padded_size(size: int, multiple: int = STRIDE) -> int:
    """``size`` rounded up to a multiple of ``multiple``."""
    return -(-size // multiple) * multiple


def prepare_batch(
    images: torch.Tensor,
    config: InputConfig | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, Crop]:
    """Turn a batch of frames into model input: normalised, padded to multiples of 32, cast.

    Args:
        images: (B, H, W) or (B, 1, H, W), any real dtype, any device; NaN and inf pixels are
            left out of the statistics and set to the frame's mean (a frame with no finite
            pixel becomes all zeros).
        config: input handling; the defaults when None.
        dtype: the model's compute dtype.

    Returns:
        The (B, 1, Hp, Wp) input on the same device, and the ``Crop`` that undoes the padding.

    Raises:
        ValueError: ``images`` is not (B, H, W) or (B, 1, H, W).
    """
    config = config or InputConfig()
    if images.ndim == 3:
        images = images.unsqueeze(1)
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(
            f"expected frames shaped (B, H, W) or (B, 1, H, W), got {tuple(images.shape)}; "
            "split panel stacks into single frames first"
        )
    batch, _, height, width = images.shape
    x = images.to(torch.float32)

    finite = torch.isfinite(x)
    count = finite.sum(dim=(1, 2, 3), keepdim=True).clamp_min(1)
    x = torch.where(finite, x, 0.0)
    mean = x.sum(dim=(1, 2, 3), keepdim=True) / count
    x = torch.where(finite, x, mean)
    var = (x - mean).square().sum(dim=(1, 2, 3), keepdim=True) / count
    fill = mean if config.pad_value == "mean" else torch.zeros_like(mean)
    if config.normalize:
        inv_std = torch.rsqrt(var + NORM_EPS)
        x = (x - mean) * inv_std
        fill = (fill - mean) * inv_std

    hp, wp = padded_size(height), padded_size(width)
    if config.pad_position == "center":
        top, left = (hp - height) // 2, (wp - width) // 2
    else:
        top, left = 0, 0
    box = Crop(top=top, left=left, height=height, width=width)
    if (hp, wp) == (height, width):
        return x.to(dtype), box

    out = fill.to(dtype).expand(batch, 1, hp, wp).clone()
    out[:, :, top : top + height, left : left + width] = x
    return out, box


def crop(t: torch.Tensor, box: Crop) -> torch.Tensor:
    """The part of ``t`` (any leading dims, last two H and W) that holds the original frame."""
    return t[..., box.top : box.top + box.height, box.left : box.left + box.width]


def mask_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W) peak mask: 1 where the peak logit beats the background logit.

    Equal to the softmax arg-max for two classes, and much cheaper.
    """
    return (logits[:, 1] > logits[:, 0]).to(torch.uint8)


@torch.inference_mode()
def predict_mask(
    model: nn.Module,
    images: torch.Tensor,
    config: InputConfig | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Run ``model`` on frames of any size; returns the uint8 (B, H, W) mask of the same size.

    ``images`` must be on the model's device and ``dtype`` its parameters' dtype.
    """
    x, box = prepare_batch(images, config, dtype)
    return crop(mask_from_logits(model(x)), box).contiguous()
