"""Input handling: any frame size in, a mask of exactly that size out, cropped exactly."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from peaknet_serve.model import (
    STRIDE,
    Crop,
    InputConfig,
    build_peaknet,
    crop,
    load_preset,
    mask_from_logits,
    predict_mask,
    prepare_batch,
)

# The ePix10k2M frame (1667 x 1668) scaled down ten times, and a few other awkward sizes.
ODD_SIZES = [(167, 171), (167, 167), (31, 33), (1, 1), (5, 70), (64, 96)]
POSITIONS = ["center", "bottom_right"]


class SignModel(nn.Module):
    """Stands in for PeakNet: class 1 wins exactly where the input is above zero.

    It also checks that the input it gets is padded to multiples of 32.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[-2] % STRIDE == 0 and x.shape[-1] % STRIDE == 0, x.shape
        return torch.cat([-x, x], dim=1)


def binary_frames(batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """Frames of 0s and 10s: after normalisation each pixel is exactly above or below zero."""
    generator = torch.Generator().manual_seed(seed)
    frames = (torch.rand(batch, height, width, generator=generator) > 0.7).to(torch.uint16) * 10
    frames[:, 0, 0] = 10
    frames[:, -1, -1] = 0
    return frames


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize(("height", "width"), ODD_SIZES)
def test_mask_has_the_frame_size_and_is_cropped_exactly(
    height: int, width: int, position: str
) -> None:
    frames = binary_frames(3, height, width)
    if (height, width) == (1, 1):
        frames[:, 0, 0] = torch.tensor([10, 0, 10], dtype=torch.uint16)
    config = InputConfig(pad_position=position)
    mask = predict_mask(SignModel(), frames, config)
    assert mask.shape == (3, height, width)
    assert mask.dtype == torch.uint8
    if (height, width) == (1, 1):
        # A constant frame normalises to 0 everywhere: no pixel is above the mean.
        assert not mask.any()
    else:
        assert torch.equal(mask, (frames.to(torch.int32) > 0).to(torch.uint8))


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize(("height", "width"), ODD_SIZES)
def test_crop_returns_the_original_pixels(height: int, width: int, position: str) -> None:
    frames = torch.randn(2, 1, height, width, dtype=torch.float64) * 50 + 100
    config = InputConfig(normalize=False, pad_position=position)
    padded, box = prepare_batch(frames, config, torch.float32)
    assert padded.shape[-2] % STRIDE == 0 and padded.shape[-1] % STRIDE == 0
    assert padded.shape[-2] - height < STRIDE and padded.shape[-1] - width < STRIDE
    assert torch.equal(crop(padded, box), frames.to(torch.float32))


def test_center_and_bottom_right_offsets() -> None:
    frames = torch.ones(1, 167, 171)
    _, centred = prepare_batch(frames, InputConfig(pad_position="center"))
    _, corner = prepare_batch(frames, InputConfig(pad_position="bottom_right"))
    assert centred == Crop(top=(192 - 167) // 2, left=(192 - 171) // 2, height=167, width=171)
    assert corner == Crop(top=0, left=0, height=167, width=171)


def padding_of(padded: torch.Tensor, box: Crop) -> torch.Tensor:
    inside = torch.zeros(padded.shape[-2:], dtype=torch.bool)
    inside[box.top : box.top + box.height, box.left : box.left + box.width] = True
    return padded[..., ~inside]


def test_normalised_frame_has_zero_mean_unit_variance_and_mean_padding() -> None:
    frames = torch.randint(0, 60000, (2, 100, 150), dtype=torch.int32)
    frames[1] //= 7
    frames = frames.to(torch.uint16)
    padded, box = prepare_batch(frames, InputConfig())
    content = crop(padded, box)
    assert torch.allclose(content.mean(dim=(1, 2, 3)), torch.zeros(2), atol=1e-5)
    assert torch.allclose(content.std(dim=(1, 2, 3), correction=0), torch.ones(2), atol=1e-4)
    assert torch.equal(padding_of(padded, box), torch.zeros_like(padding_of(padded, box)))


def test_statistics_ignore_the_padding() -> None:
    """The pixels the model sees are the frame normalised alone, whatever the padding."""
    x = torch.rand(1, 57, 87) * 1000
    expected = (x - x.mean()) / torch.sqrt(x.var(correction=0) + 1e-6)
    for position in POSITIONS:
        padded, box = prepare_batch(x, InputConfig(pad_position=position))
        assert padded.shape == (1, 1, 64, 96)
        assert torch.allclose(crop(padded, box)[:, 0], expected, atol=1e-5)


@pytest.mark.parametrize(
    ("normalize", "pad_value", "expected"),
    [
        (True, "mean", lambda mean, std: 0.0),
        (True, "zero", lambda mean, std: -mean / std),
        (False, "mean", lambda mean, std: mean),
        (False, "zero", lambda mean, std: 0.0),
    ],
)
def test_pad_value(normalize: bool, pad_value: str, expected) -> None:
    frame = torch.full((1, 40, 40), 3.0)
    frame[0, :20] = 7.0  # mean 5, std 2
    config = InputConfig(normalize=normalize, pad_value=pad_value)
    padded, box = prepare_batch(frame, config)
    pad = padding_of(padded, box)
    assert torch.allclose(pad, torch.full_like(pad, expected(5.0, 2.0)), atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_output_dtype_and_layouts(dtype: torch.dtype) -> None:
    frames = torch.rand(2, 50, 60, dtype=torch.float64)
    a, box_a = prepare_batch(frames, InputConfig(), dtype)
    b, box_b = prepare_batch(frames.unsqueeze(1), InputConfig(), dtype)
    assert a.dtype == dtype and a.shape == (2, 1, 64, 64)
    assert box_a == box_b and torch.equal(a, b)


def test_sizes_already_multiples_of_32_are_not_padded() -> None:
    frames = torch.rand(2, 64, 96)
    padded, box = prepare_batch(frames, InputConfig(normalize=False))
    assert padded.shape == (2, 1, 64, 96)
    assert box == Crop(top=0, left=0, height=64, width=96)


@pytest.mark.parametrize("shape", [(64, 64), (2, 3, 64, 64), (1, 2, 1, 64, 64)])
def test_bad_layouts_are_rejected(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="expected frames shaped"):
        prepare_batch(torch.zeros(shape), InputConfig())


def test_mask_rule_equals_softmax_argmax() -> None:
    logits = torch.randn(4, 2, 33, 47, generator=torch.Generator().manual_seed(1))
    expected = logits.softmax(dim=1).argmax(dim=1).to(torch.uint8)
    assert torch.equal(mask_from_logits(logits), expected)


def test_demo_model_gives_a_mask_of_the_frame_size() -> None:
    torch.manual_seed(0)
    model = build_peaknet(load_preset("peaknet-demo")).eval()
    frames = torch.randint(0, 1000, (2, 167, 171), dtype=torch.int32).to(torch.uint16)
    mask = predict_mask(model, frames, InputConfig())
    assert mask.shape == (2, 167, 171)
    assert mask.dtype == torch.uint8
    assert mask.is_contiguous()
    assert set(mask.unique().tolist()) <= {0, 1}
