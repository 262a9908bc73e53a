"""The inference engine on the CPU: same masks as the model called directly, buffers reused."""

from __future__ import annotations

import asyncio
import copy

import numpy as np
import pytest
import torch

import peaknet_serve.engine as engine_pkg
from peaknet_serve.engine import EngineConfig, InferenceEngine, resolve_device, resolve_dtype
from peaknet_serve.errors import ConfigError, DecodeError
from peaknet_serve.model import InputConfig, build_peaknet, load_preset, predict_mask

INPUTS = InputConfig()


@pytest.fixture(scope="module")
def demo_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_peaknet(load_preset("peaknet-demo")).eval()


def _engine(model: torch.nn.Module, **overrides: object) -> InferenceEngine:
    config = EngineConfig(
        device="cpu", **{"num_buffers": 2, "batch_buckets": (1, 2, 4)} | overrides
    )
    return InferenceEngine.from_config(copy.deepcopy(model), config, INPUTS)


def _frames(batch: int, shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    frames = rng.gamma(2.0, 5.0, size=(batch, *shape))
    frames[:, shape[0] // 2, shape[1] // 3] += 400.0
    return frames.astype(np.float32)


def _direct(model: torch.nn.Module, frames: np.ndarray, dtype: torch.dtype) -> np.ndarray:
    model = copy.deepcopy(model).to(dtype)
    return predict_mask(model, torch.from_numpy(frames), INPUTS, dtype).numpy()


def test_public_names() -> None:
    for name in engine_pkg.__all__:
        assert hasattr(engine_pkg, name)


@pytest.mark.parametrize(
    ("precision", "dtype"), [("fp32", torch.float32), ("bf16", torch.bfloat16)]
)
async def test_masks_equal_direct_call_for_mixed_batches(
    demo_model: torch.nn.Module, precision: str, dtype: torch.dtype
) -> None:
    engine = _engine(demo_model, precision=precision)
    shape = (45, 77)  # odd: padded to 64 x 96 and cropped back
    frames = _frames(11, shape)
    direct = _direct(demo_model, frames, dtype)
    # 1 and 4 fill a bucket, 3 is padded up to 4, 11 is split 4 + 4 + 3.
    for start, stop in [(0, 1), (1, 4), (4, 8), (0, 11)]:
        masks = await engine.infer(frames[start:stop])
        assert masks.dtype == np.uint8
        assert masks.shape == (stop - start, *shape)
        np.testing.assert_array_equal(masks, direct[start:stop])
    assert 0 < direct.mean() < 1  # both classes present, so the comparison means something
    engine.close()


@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.float64, ">f4"])
async def test_any_input_dtype_is_cast_like_the_model(
    demo_model: torch.nn.Module, dtype: str
) -> None:
    engine = _engine(demo_model)
    frames = np.round(_frames(3, (40, 64), seed=1)).astype(dtype)
    masks = await engine.infer(frames)
    native = frames.astype(frames.dtype.newbyteorder("="))
    np.testing.assert_array_equal(masks, _direct(demo_model, native, torch.float32))
    engine.close()


async def test_panel_stacks_run_each_panel_as_a_frame(demo_model: torch.nn.Module) -> None:
    engine = _engine(demo_model)
    stack = _frames(6, (32, 48), seed=2).reshape(2, 3, 32, 48)
    masks = await engine.infer(stack)
    assert masks.shape == stack.shape
    direct = _direct(demo_model, stack.reshape(6, 32, 48), torch.float32)
    np.testing.assert_array_equal(masks.reshape(6, 32, 48), direct)
    engine.close()


async def test_overlapping_calls_each_get_their_own_result(demo_model: torch.nn.Module) -> None:
    engine = _engine(demo_model, num_buffers=2)
    batches = [_frames(n, (40, 40), seed=10 + i) for i, n in enumerate([1, 3, 4, 2, 5, 1, 4])]
    results = await asyncio.gather(*(engine.infer(b) for b in batches))
    for batch, masks in zip(batches, results, strict=True):
        np.testing.assert_array_equal(masks, _direct(demo_model, batch, torch.float32))
    # Results are the caller's own arrays, not views of reused staging memory.
    assert all(m.base is None or m.base.base is None for m in results)
    first = results[0].copy()
    await engine.infer(batches[1])
    np.testing.assert_array_equal(results[0], first)
    engine.close()


async def test_staging_buffers_are_allocated_once_and_reused(demo_model: torch.nn.Module) -> None:
    engine = _engine(demo_model, num_buffers=3)
    frames = _frames(4, (40, 40), seed=3)
    await asyncio.gather(*(engine.infer(frames[: 1 + i % 4]) for i in range(6)))
    stats = engine.staging_stats()
    assert stats.buffers == 3  # one staging set per slot for this (shape, dtype)
    pointers = {s.host_in.data_ptr() for slot in engine._pool.slots for s in slot.staging.values()}
    for round_ in range(10):
        await asyncio.gather(*(engine.infer(frames[: 1 + (round_ + i) % 4]) for i in range(5)))
    assert engine.staging_stats() == stats
    assert pointers == {
        s.host_in.data_ptr() for slot in engine._pool.slots for s in slot.staging.values()
    }
    # A new dtype or frame shape gets its own sets, once.
    await engine.infer(frames.astype(np.uint16))
    await engine.infer(frames.astype(np.uint16))
    assert engine.staging_stats().buffers == 4
    engine.close()


async def test_engine_survives_a_new_event_loop(demo_model: torch.nn.Module) -> None:
    engine = _engine(demo_model, num_buffers=1)
    frames = _frames(2, (32, 32))
    first = await engine.infer(frames)
    second = await asyncio.to_thread(asyncio.run, engine.infer(frames))
    np.testing.assert_array_equal(first, second)
    engine.close()


async def test_empty_batch_and_bad_input(demo_model: torch.nn.Module) -> None:
    engine = _engine(demo_model)
    assert (await engine.infer(np.zeros((0, 32, 32), np.float32))).shape == (0, 32, 32)
    with pytest.raises(DecodeError, match=r"\(B, H, W\)"):
        await engine.infer(np.zeros((32, 32), np.float32))
    with pytest.raises(DecodeError, match="integers or floats"):
        await engine.infer(np.zeros((1, 32, 32), np.complex64))
    engine.close()


def test_warmup_and_describe(demo_model: torch.nn.Module) -> None:
    engine = _engine(demo_model, batch_buckets=(2, 8))
    engine.warmup((32, 48), batch_sizes=[1, 5])
    info = engine.describe()
    assert info["device"] == "cpu"
    assert info["precision"] == "fp32"
    assert info["batch_buckets"] == [2, 8]
    assert engine.bucket_for(1) == 2
    assert engine.bucket_for(3) == 8
    assert engine.bucket_for(30) == 8
    engine.close()


def test_cpu_engine_runs_the_plain_path_whatever_the_fused_stages(
    demo_model: torch.nn.Module,
) -> None:
    from peaknet_serve.model.backbone import Block

    engine = _engine(demo_model, fused_dwconv_stages=(0, 1, 2, 3))
    assert engine.describe()["fused_dwconv_stages"] == []
    blocks = [m for m in engine.model.modules() if isinstance(m, Block)]
    assert blocks and not any(block.fused for block in blocks)
    engine.close()
    assert EngineConfig(fused_dwconv_stages=(3, 1, 1)).fused_dwconv_stages == (1, 3)
    with pytest.raises(ValueError, match="stages 0-3"):
        EngineConfig(fused_dwconv_stages=(4,))


def test_config_resolution_and_errors() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(ConfigError, match="fp16"):
        resolve_dtype("fp16", torch.device("cpu"))
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ConfigError, match="no CUDA"):
            resolve_device("cuda:0")
    assert EngineConfig(batch_buckets=(8, 1, 4, 4)).batch_buckets == (1, 4, 8)
    with pytest.raises(ValueError, match="positive"):
        EngineConfig(batch_buckets=(0, 4))
    with pytest.raises(ValueError, match="device"):
        EngineConfig(device="gpu")
