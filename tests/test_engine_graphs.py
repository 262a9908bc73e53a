"""engine/graphs.py on the CPU (the path CI runs): per-pair static buffers give the masks of the
forward called directly, for any input dtype, and a later batch never returns an earlier one's
masks. The CUDA capture itself runs in tests/test_engine_gpu.py (``cuda_graphs``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from peaknet_serve.engine.aot import FrameMasker
from peaknet_serve.engine.graphs import GraphedForward
from peaknet_serve.model import InputConfig, build_peaknet, load_preset


@pytest.fixture(scope="module")
def masker() -> FrameMasker:
    torch.manual_seed(0)
    model = build_peaknet(load_preset("peaknet-demo")).eval().requires_grad_(False)
    return FrameMasker(model, InputConfig(), torch.float32, channels_last=False)


def _frames(batch: int, shape: tuple[int, int], seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    frames = rng.gamma(2.0, 5.0, size=(batch, *shape))
    frames[:, rng.integers(0, shape[0], 6), rng.integers(0, shape[1], 6)] += 400.0
    return torch.from_numpy(np.round(frames).astype(np.float32))


def test_replays_give_the_forward_masks_per_pair(masker: FrameMasker) -> None:
    graphs = GraphedForward(masker, torch.device("cpu"))
    with torch.inference_mode():
        for shape in [(40, 64), (45, 77)]:
            graphs.capture(_frames(2, shape, seed=0))
        assert graphs.pairs() == [(2, 40, 64), (2, 45, 77)]
        assert graphs.has((2, 45, 77)) and not graphs.has((4, 45, 77))
        outputs = []
        for seed in (1, 2):  # the second batch must not come back with the first one's masks
            frames = _frames(2, (45, 77), seed)
            want = masker(frames)
            out = torch.full(want.shape, 7, dtype=torch.uint8)
            graphs.run(frames.to(torch.int32), out)  # cast into the static float32 input
            assert torch.equal(out, want)
            outputs.append(out)
        assert not torch.equal(outputs[0], outputs[1])
        assert 0 < float(outputs[0].float().mean()) < 1


def test_capture_is_once_per_pair(masker: FrameMasker) -> None:
    graphs = GraphedForward(masker, torch.device("cpu"))
    with torch.inference_mode():
        graphs.capture(_frames(1, (40, 64), seed=0))
        graphs.capture(_frames(1, (40, 64), seed=3))
        frames = _frames(1, (40, 64), seed=4)
        out = torch.empty((1, 40, 64), dtype=torch.uint8)
        graphs.run(frames, out)
        assert torch.equal(out, masker(frames))
    assert graphs.pairs() == [(1, 40, 64)]
