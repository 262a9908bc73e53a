"""PeakNet equals the reference: golden weights load strictly and give the golden logits."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import peaknet_serve.model as model_pkg
from peaknet_serve.errors import ConfigError
from peaknet_serve.model import (
    PeakNetConfig,
    bifpn,
    build_peaknet,
    check_state_dict,
    load_preset,
    preset_names,
)
from peaknet_serve.model.backbone import Block
from peaknet_serve.model.materialize import materialize
from peaknet_serve.model.peaknet import reference_forward

GOLDEN = Path(__file__).parent / "data" / "peaknet_small_b2_64x96.npz"
TOLERANCE = 1e-4
STANDARD_PARAMS = 33_164_768


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out - ref).norm() / ref.norm())


@pytest.fixture(scope="module")
def golden() -> dict:
    with np.load(GOLDEN) as data:
        return {
            "config": ast.literal_eval(str(data["config"])),
            "state_dict": {
                k.removeprefix("param::"): torch.from_numpy(data[k])
                for k in data.files
                if k.startswith("param::")
            },
            "input": torch.from_numpy(data["input"]),
            "logits": torch.from_numpy(data["logits"]),
        }


def golden_model(golden: dict) -> nn.Module:
    model = build_peaknet(golden["config"]).eval()
    check_state_dict(model, golden["state_dict"])
    model.load_state_dict(golden["state_dict"], strict=True)
    return model


def test_state_dict_keys_are_exactly_the_reference(golden: dict) -> None:
    model = build_peaknet(golden["config"])
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in golden["state_dict"].items()}
    assert ours == theirs


def test_golden_logits_match(golden: dict) -> None:
    model = golden_model(golden)
    with torch.no_grad():
        logits = model(golden["input"])
    assert logits.shape == golden["logits"].shape == (2, 2, 64, 96)
    assert relative_error(logits, golden["logits"]) < TOLERANCE


def _tanh_gelu(model: nn.Module, monkeypatch: pytest.MonkeyPatch) -> None:
    replaced = 0
    for module in list(model.modules()):
        for child_name, child in module.named_children():
            if isinstance(child, nn.GELU):
                setattr(module, child_name, nn.GELU(approximate="tanh"))
                replaced += 1
    assert replaced > 0


def _swap_bifpn_fusion_weights(model: nn.Module, monkeypatch: pytest.MonkeyPatch) -> None:
    with torch.no_grad():
        for block in model.bifpn.blocks:
            block.w_m.copy_(block.w_m.flip(-1))


def _skip_stage_norms(model: nn.Module, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in model.backbone.hidden_states_norms:
        model.backbone.hidden_states_norms[key] = nn.Identity()


def _corner_aligned_bifpn_resampling(model: nn.Module, monkeypatch: pytest.MonkeyPatch) -> None:
    def resize(x: torch.Tensor, scale_factor: float) -> torch.Tensor:
        return F.interpolate(x, scale_factor=scale_factor, mode="bilinear", align_corners=True)

    monkeypatch.setattr(bifpn, "resize", resize)


WRONG_WIRINGS = [
    _tanh_gelu,
    _swap_bifpn_fusion_weights,
    _skip_stage_norms,
    _corner_aligned_bifpn_resampling,
]


@pytest.mark.parametrize("break_it", WRONG_WIRINGS, ids=lambda f: f.__name__.strip("_"))
def test_wrong_wiring_fails_the_golden_check(
    golden: dict, break_it, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = golden_model(golden)
    break_it(model, monkeypatch)
    with torch.no_grad():
        logits = model(golden["input"])
    assert relative_error(logits, golden["logits"]) > TOLERANCE


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_standard_preset_has_the_reference_parameter_count() -> None:
    with torch.device("meta"):
        model = build_peaknet(load_preset("peaknet-standard"))
    assert count_parameters(model) == STANDARD_PARAMS


def test_preset_names_are_the_yaml_files() -> None:
    assert preset_names() == ["peaknet-673m", "peaknet-demo", "peaknet-standard"]


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_builds(name: str) -> None:
    config = load_preset(name)
    assert isinstance(config, PeakNetConfig)
    with torch.device("meta"):
        model = build_peaknet(config)
    assert count_parameters(model) > 0
    if name == "peaknet-673m":
        assert count_parameters(model) == 672_994_046


def test_demo_preset_runs_on_cpu() -> None:
    torch.manual_seed(0)
    model = build_peaknet(load_preset("peaknet-demo")).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 1, 64, 96))
    assert logits.shape == (2, 2, 64, 96)
    assert torch.isfinite(logits).all()


def test_build_from_mapping_equals_build_from_config(golden: dict) -> None:
    a = build_peaknet(golden["config"])
    b = build_peaknet(PeakNetConfig(**golden["config"]))
    assert a.state_dict().keys() == b.state_dict().keys()


def test_unknown_preset_names_the_choices() -> None:
    with pytest.raises(ConfigError, match="peaknet-standard"):
        load_preset("peaknet-huge")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"hidden_size": [1, 2, 3, 4]}, "hidden_size"),
        ({"seg_out_channels": 48}, "multiple of 32"),
        ({"depths": [1, 1, 0, 1]}, "positive"),
        ({"hidden_sizes": [16, 32, 64]}, "hidden_sizes"),
    ],
)
def test_invalid_model_config_is_a_config_error(change: dict, message: str) -> None:
    config = PeakNetConfig().model_dump() | change
    with pytest.raises(ConfigError, match=message):
        build_peaknet(config)


def test_public_names_are_exported() -> None:
    for name in model_pkg.__all__:
        assert hasattr(model_pkg, name), name


def test_head_segmask_before_the_last_upsample_equals_the_reference_order() -> None:
    torch.manual_seed(3)
    model = build_peaknet(load_preset("peaknet-demo")).eval()
    with torch.no_grad():
        for param in model.parameters():  # GRN starts at zero: give every weight a value
            param.copy_(torch.randn_like(param) * 0.2 + (1.0 if param.ndim == 1 else 0.0))
        x = torch.randn(2, 1, 96, 160)
        ours = model(x)
        reference = reference_forward(model, x)
    assert ours.shape == reference.shape == (2, 2, 96, 160)
    assert reference.std() > 0.1  # not a degenerate network
    assert relative_error(ours, reference) < 1e-5


def test_folded_1x1_depthwise_separable_conv_equals_the_two_convs() -> None:
    torch.manual_seed(1)
    conv = bifpn.DepthwiseSeparableConv2d(8, 12)
    with torch.no_grad():
        conv.depthwise_conv.weight.normal_()
        x = torch.randn(2, 8, 5, 7)
        expected = conv.pointwise_conv(conv.depthwise_conv(x))
        out = conv(x)
    assert out.shape == (2, 12, 5, 7)
    assert relative_error(out, expected) < 1e-6


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_block_with_grn_folded_into_pwconv2_equals_the_paper_order(
    dtype: torch.dtype, tolerance: float
) -> None:
    torch.manual_seed(2)
    block = Block(8).eval().to(dtype)
    with torch.no_grad():
        for param in block.parameters():  # GRN's gamma and beta start at zero
            param.copy_(torch.randn_like(param) * 0.3)
        x = torch.randn(3, 8, 5, 7, dtype=dtype)
        y = block.act(block.pwconv1(block.layernorm(block.dwconv(x).permute(0, 2, 3, 1))))
        gx = y.norm(p=2, dim=(1, 2), keepdim=True)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + block.grn.eps)
        grn = block.grn.weight * (y * nx) + block.grn.bias + y  # ConvNeXt-V2, eq. in section 3
        expected = x + block.pwconv2(grn).permute(0, 3, 1, 2)
        out = block(x)
    assert out.shape == (3, 8, 5, 7) and out.dtype == dtype
    assert relative_error(out - x, expected - x) < tolerance


def test_materialize_is_a_copy_that_keeps_the_memory_format() -> None:
    x = torch.randn(2, 4, 6, 5).contiguous(memory_format=torch.channels_last)
    out = materialize(x)
    assert torch.equal(out, x)
    assert out.data_ptr() != x.data_ptr()
    assert out.stride() == x.stride()


def test_materialize_passes_gradients_through() -> None:
    x = torch.randn(2, 3, 4, 5, requires_grad=True)
    torch.library.opcheck(torch.ops.peaknet.materialize.default, (x,))
    (materialize(x) * 3.0).sum().backward()
    assert torch.equal(x.grad, torch.full_like(x, 3.0))


class _OpLog(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


def test_upsampling_reads_a_materialized_source_and_downsampling_does_not() -> None:
    # Compiled, an upsample's four taps would otherwise each recompute the source's producers.
    x = torch.randn(1, 4, 6, 8)
    with _OpLog() as up:
        bifpn.resize(x, 2.0)
    with _OpLog() as down:
        bifpn.resize(x, 0.5)
    assert "peaknet.materialize.default" in up.ops
    assert "peaknet.materialize.default" not in down.ops
