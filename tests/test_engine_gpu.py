"""The inference engine on a CUDA GPU gives the masks of the model called directly: an odd frame
shape, batches that fill, pad and split the buckets, uint16/float64/(B, 1, H, W) input, calls
overlapping on the buffers, eager and compiled. Skipped (shown as a skip) without CUDA."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import torch

from peaknet_serve.engine import EngineConfig, InferenceEngine
from peaknet_serve.model import InputConfig, predict_mask
from peaknet_serve.model.section import ModelSection
from peaknet_serve.pipeline import load_model
from peaknet_serve.synthetic import SyntheticFrames

pytestmark = pytest.mark.gpu

SHAPE = (333, 517)  # odd: padded to the model's multiple and cropped back
# Another batch size may get another cuDNN algorithm (TF32 in fp32), which can flip a pixel at
# the threshold; a wrong pad, crop or dtype path flips far more.
MIN_EQUAL = {"fp32": 0.9999, "bf16": 0.999}


def _frames(batch: int) -> np.ndarray:
    """Synthetic hits (what the shipped demo model was trained on), whole numbers of photons so
    that their uint16 copy is the same input."""
    images, _ = SyntheticFrames(shape=SHAPE, peaks=30, hit_fraction=1.0, seed=5).batch(0, batch)
    return np.round(images)


@pytest.mark.parametrize(
    ("precision", "mode"),
    [("fp32", "off"), ("bf16", "off"), ("bf16", "reduce-overhead"), ("bf16", "aot")],
)
def test_engine_masks_equal_the_direct_call_on_the_gpu(
    tmp_path: Path, precision: str, mode: str
) -> None:
    frames = _frames(23)
    config = EngineConfig(
        device="cuda",
        precision=precision,
        compile=mode,
        batch_buckets=(4, 8),
        num_buffers=2,
        compile_cache_dir=tmp_path,
        aot_build_processes=2,
    )
    model = load_model(ModelSection(weights="builtin:peaknet-demo"))  # compiles in seconds
    engine = InferenceEngine.from_config(model, config, InputConfig())
    try:
        engine.warmup(SHAPE)
        with torch.inference_mode():
            gpu_frames = torch.from_numpy(frames).cuda()
            direct = predict_mask(engine.model, gpu_frames, InputConfig(), engine.dtype)
            direct = direct.cpu().numpy()
        # 1 pads to 4, 3 pads to 4, 19 splits 8 + 8 + 3, 5 as (1, 5, H, W) pads to 8.
        calls = [
            frames[:1],
            frames[1:4].astype(np.uint16),
            frames[4:23].astype(np.float64),
            frames[:5].reshape(1, 5, *SHAPE),
        ]

        async def overlapping() -> list[np.ndarray]:
            return await asyncio.gather(*(engine.infer(c) for c in calls * 3))

        results = asyncio.run(overlapping())
    finally:
        engine.close()
    expect = [direct[:1], direct[1:4], direct[4:23], direct[:5]]
    for i, want in enumerate(expect):
        got = results[i].reshape(want.shape)
        equal = float((got == want).mean())
        assert equal >= MIN_EQUAL[precision], (i, equal)
        for k in (1, 2):
            assert np.array_equal(results[i + 4 * k], results[i]), (i, k)
    assert 0 < direct.mean() < 0.1, direct.mean()  # peaks found, not everywhere
