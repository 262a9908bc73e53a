"""Weights files: strict loading with clear errors, and exact round trips."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from peaknet_serve.errors import CheckpointError
from peaknet_serve.model import (
    build_peaknet,
    load_preset,
    load_state_dict_file,
    load_weights,
    save_weights,
)

GOLDEN = Path(__file__).parent / "data" / "peaknet_small_b2_64x96.npz"


def demo_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = build_peaknet(load_preset("peaknet-demo")).eval()
    with torch.no_grad():  # the default init zeroes some tensors: make every one distinct
        for tensor in model.parameters():
            tensor.add_(0.01 * torch.randn_like(tensor))
    return model


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


@pytest.mark.parametrize("suffix", [".safetensors", ".pt", ".bin"])
def test_round_trip(tmp_path: Path, suffix: str) -> None:
    source, target = demo_model(0), demo_model(1)
    path = tmp_path / f"weights{suffix}"
    save_weights(source, path)
    load_weights(target, path)
    assert_same_weights(source, target)
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(source(x), target(x))


def test_torch_save_state_dict_loads(tmp_path: Path) -> None:
    """The reference's checkpoints are plain ``torch.save(model.state_dict())`` files."""
    source, target = demo_model(0), demo_model(1)
    path = tmp_path / "model_state_dict.pt"
    torch.save(source.state_dict(), path)
    load_weights(target, path)
    assert_same_weights(source, target)


@pytest.mark.parametrize("wrapper", ["model_state_dict", "state_dict"])
def test_training_checkpoint_wrapper_is_unwrapped(tmp_path: Path, wrapper: str) -> None:
    source, target = demo_model(0), demo_model(1)
    path = tmp_path / "checkpoint.pt"
    torch.save({wrapper: source.state_dict(), "epoch": torch.tensor(3)}, path)
    load_weights(target, path)
    assert_same_weights(source, target)


def test_golden_weights_through_safetensors(tmp_path: Path) -> None:
    with np.load(GOLDEN) as data:
        config = ast.literal_eval(str(data["config"]))
        state_dict = {
            k.removeprefix("param::"): torch.from_numpy(data[k])
            for k in data.files
            if k.startswith("param::")
        }
        x, ref = torch.from_numpy(data["input"]), torch.from_numpy(data["logits"])
    from safetensors.torch import save_file

    path = tmp_path / "golden.safetensors"
    save_file(state_dict, path)
    model = build_peaknet(config).eval()
    load_weights(model, path)
    with torch.no_grad():
        out = model(x)
    assert float((out - ref).norm() / ref.norm()) < 1e-4


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "peaknet.pt"
    with pytest.raises(CheckpointError, match=r"does not exist.*PeakNet checkpoint"):
        load_weights(demo_model(0), path)


def save_edited(tmp_path: Path, edit) -> tuple[nn.Module, Path]:
    """A demo model and a safetensors file of its weights after ``edit(state_dict)``."""
    model = demo_model(0)
    state_dict = {k: v.clone() for k, v in model.state_dict().items()}
    edit(state_dict)
    path = tmp_path / "edited.safetensors"
    from safetensors.torch import save_file

    save_file(state_dict, path)
    return model, path


KEY = "backbone.encoder.stages.2.layers.1.grn.weight"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda sd: sd.pop(KEY), rf"missing keys: {KEY}"),
        (
            lambda sd: sd.update({"final_conv.weight": torch.zeros(2)}),
            "unexpected keys: final_conv",
        ),
        (
            lambda sd: sd.update({KEY: torch.zeros(1, 1, 1, 7)}),
            rf"shape mismatches: {KEY} \(file \(1, 1, 1, 7\), model \(1, 1, 1, 256\)\)",
        ),
    ],
    ids=["missing", "unexpected", "shape"],
)
def test_mismatched_weights_are_named_and_leave_the_model_alone(
    tmp_path: Path, edit, message: str
) -> None:
    _, path = save_edited(tmp_path, edit)
    target = demo_model(1)
    target_before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(CheckpointError, match=message):
        load_weights(target, path)
    assert all(torch.equal(target.state_dict()[k], v) for k, v in target_before.items())


def test_wrong_preset_says_so(tmp_path: Path) -> None:
    path = tmp_path / "demo.safetensors"
    save_weights(demo_model(0), path)
    with torch.device("meta"):
        standard = build_peaknet(load_preset("peaknet-standard"))
    with pytest.raises(CheckpointError, match="model preset matches the checkpoint"):
        load_weights(standard, path)


def test_unreadable_file_is_an_error(tmp_path: Path) -> None:
    for name in ("garbage.pt", "garbage.safetensors"):
        path = tmp_path / name
        path.write_bytes(b"this is not a checkpoint")
        with pytest.raises(CheckpointError, match="cannot read weights file"):
            load_state_dict_file(path)


def test_file_without_a_state_dict_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), path)
    with pytest.raises(CheckpointError, match="not a state_dict"):
        load_state_dict_file(path)
    torch.save({"a": torch.zeros(3), "step": 7}, path)
    with pytest.raises(CheckpointError, match="not tensors: step"):
        load_state_dict_file(path)
