"""Warm-up and frame shapes: warm pairs run compiled, others run eagerly without holding up warm
ones (or are rejected when shapes are fixed), configuration checks, the compile cache setting."""

from __future__ import annotations

import asyncio
import copy
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from peaknet_serve.config import ServiceConfig
from peaknet_serve.engine import (
    EngineConfig,
    InferenceEngine,
    WarmupConfig,
    configure_compile_cache,
)
from peaknet_serve.engine.shapes import ShapeGate
from peaknet_serve.errors import DecodeError
from peaknet_serve.model import InputConfig, build_peaknet, load_preset, predict_mask

INPUTS = InputConfig()


@pytest.fixture(scope="module")
def demo_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_peaknet(load_preset("peaknet-demo")).eval()


def _engine(model: torch.nn.Module, warmup: WarmupConfig | None = None) -> InferenceEngine:
    config = EngineConfig(device="cpu", num_buffers=2, batch_buckets=(1, 2, 4))
    return InferenceEngine.from_config(copy.deepcopy(model), config, INPUTS, warmup)


def _frames(batch: int, shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    frames = rng.gamma(2.0, 5.0, size=(batch, *shape)).astype(np.float32)
    frames[:, shape[0] // 2, shape[1] // 3] += 400.0
    return frames


def test_gate_pads_to_a_warm_bucket_and_runs_unknown_pairs_eagerly() -> None:
    asked: list[tuple[int, int, int]] = []
    gate = ShapeGate(buckets=(1, 2, 4, 8), compiled=True, on_new_eager_pair=asked.append)
    gate.mark_warm(4, 64, 64)
    assert gate.choose(1, 64, 64) == (4, True)  # padded up rather than compiled anew
    assert gate.choose(4, 64, 64) == (4, True)
    assert gate.choose(7, 64, 64) == (8, False)  # no warm bucket holds 7
    assert gate.choose(2, 32, 32) == (2, False)  # new shape
    assert gate.choose(2, 32, 32) == (2, False)
    assert gate.eager_pairs() == [(2, 32, 32), (8, 64, 64)]
    assert asked == [(8, 64, 64), (2, 32, 32)]  # once per pair, to compile in the background
    assert gate.known_shapes() == [(64, 64)]


def test_gate_without_compilation_uses_natural_buckets() -> None:
    gate = ShapeGate(buckets=(1, 2, 4), compiled=False)
    gate.mark_warm(4, 64, 64)
    assert gate.choose(1, 64, 64) == (1, False)
    assert gate.choose(9, 10, 10) == (4, False)
    assert gate.eager_pairs() == []


def test_gate_rejects_unknown_shapes_when_fixed() -> None:
    gate = ShapeGate(buckets=(1, 2), compiled=True, fixed=True)
    gate.mark_warm(2, 64, 64)
    assert gate.choose(2, 64, 64) == (2, True)
    with pytest.raises(
        DecodeError, match=r"frame shape 32 x 48 .*\[\[64, 64\]\].*fixed_shapes"
    ) as e:
        gate.choose(1, 32, 48)
    assert e.value.reason == "unexpected_shape"


def test_warmup_config_checks_and_panel_shapes() -> None:
    warmup = WarmupConfig(frame_shapes=[(2, 32, 32), (48, 64), (32, 32)], batch_sizes=[2])
    assert warmup.image_shapes() == [(32, 32), (48, 64)]
    with pytest.raises(ValidationError, match="fixed_shapes needs frame_shapes"):
        WarmupConfig(fixed_shapes=True)
    with pytest.raises(ValidationError, match="frame shapes are"):
        WarmupConfig(frame_shapes=[(1, 2, 3, 4)])
    config = ServiceConfig.model_validate(
        {
            "model": {"preset": "peaknet-demo", "random_weights_seed": 0},
            "warmup": {"frame_shapes": [[64, 64]], "fixed_shapes": True},
            "engine": {"compile_cache_dir": "/tmp/cache", "cpu_affinity": False},
        }
    )
    assert config.warmup.fixed_shapes and config.engine.compile_cache_dir == Path("/tmp/cache")


async def test_engine_warmup_records_pairs_and_fixed_shapes_reject(
    demo_model: torch.nn.Module,
) -> None:
    warmup = WarmupConfig(frame_shapes=[(2, 32, 48)], batch_sizes=[2, 3], fixed_shapes=True)
    engine = _engine(demo_model, warmup)
    assert engine.known_shapes() == []
    assert engine.warmup_all(warmup) >= 0
    assert engine.known_shapes() == [(32, 48)]
    described = engine.describe()
    assert described["warm"] == [[2, 32, 48], [4, 32, 48]]
    assert described["fixed_shapes"] is True
    assert described["cpu_affinity"]["cpus"] == ""  # CPU device: nothing pinned
    masks = await engine.infer(_frames(3, (32, 48)))
    assert masks.shape == (3, 32, 48)
    with pytest.raises(DecodeError, match="not one of the configured shapes"):
        await engine.infer(_frames(1, (40, 40)))
    engine.close()


async def test_unwarmed_shape_runs_eagerly_while_warm_shape_runs_compiled(
    demo_model: torch.nn.Module,
) -> None:
    """With compilation on, only warm pairs call the compiled function; a new shape's batches run
    the same model eagerly, with the same masks, and never wait for a compile."""
    engine = _engine(demo_model)
    engine.warmup((32, 48), [2])
    engine._gate = ShapeGate(buckets=(1, 2, 4), compiled=True)  # as with compile != "off"
    engine._gate.mark_warm(2, 32, 48)
    compiled_calls: list[tuple[int, ...]] = []
    eager = engine._forward

    def spy(frames: torch.Tensor) -> torch.Tensor:
        compiled_calls.append(tuple(frames.shape))
        return eager(frames)

    engine._forward = spy
    known, new = _frames(2, (32, 48)), _frames(3, (40, 56), seed=1)
    got_known, got_new = await asyncio.gather(engine.infer(known), engine.infer(new))
    assert compiled_calls == [(2, 32, 48)]
    for frames, got in ((known, got_known), (new, got_new)):
        direct = predict_mask(engine.model, torch.from_numpy(frames), INPUTS, torch.float32)
        # Padded batches may round differently on a CPU (another conv batch size): a pixel or so.
        assert got.shape == frames.shape and (got == direct.numpy()).mean() > 0.999
    assert engine.describe()["uncompiled"] == [[4, 40, 56]]
    engine.close()


def test_compile_cache_directory_is_set_for_inductor_and_triton(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.delenv("TRITON_CACHE_DIR", raising=False)
    in_use = configure_compile_cache(tmp_path / "cache")
    assert in_use == (tmp_path / "cache").resolve() and in_use.is_dir()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(in_use)
    assert os.environ["TRITON_CACHE_DIR"] == str(in_use / "triton")
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config

    assert inductor_config.fx_graph_cache and functorch_config.enable_autograd_cache
