"""Ahead-of-time packages (engine.compile="aot"): built in a real child process, loaded from disk
on a restart without building, a new frame shape built in the background while known shapes
run, and failed builds reported with the child's log. On the CPU: AOTInductor builds C++ there."""

from __future__ import annotations

import asyncio
import copy
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from peaknet_serve.engine import EngineConfig, InferenceEngine, WarmupConfig, aot
from peaknet_serve.engine.aot import AotBuildError, AotPackages, FrameMasker, fingerprint
from peaknet_serve.model import InputConfig, build_peaknet, load_preset, predict_mask

INPUTS = InputConfig()
KNOWN = (48, 40)
NEW = (40, 56)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def demo_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_peaknet(load_preset("peaknet-demo")).eval()


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("compile-cache")


def _engine(model: torch.nn.Module, cache_dir: Path) -> InferenceEngine:
    config = EngineConfig(
        device="cpu", compile="aot", batch_buckets=(1, 2, 4), compile_cache_dir=cache_dir
    )
    return InferenceEngine.from_config(copy.deepcopy(model), config, INPUTS)


def _frames(batch: int, shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    frames = rng.gamma(2.0, 5.0, size=(batch, *shape)).astype(np.float32)
    frames[:, shape[0] // 2, shape[1] // 3] += 400.0
    return frames


def _direct(model: torch.nn.Module, frames: np.ndarray) -> np.ndarray:
    return predict_mask(model, torch.from_numpy(frames), INPUTS).numpy()


def test_built_package_gives_the_model_masks_and_a_restart_loads_it(
    demo_model: torch.nn.Module, cache_dir: Path
) -> None:
    frames = _frames(2, KNOWN)
    engine = _engine(demo_model, cache_dir)
    engine.warmup_all(WarmupConfig(frame_shapes=[KNOWN], batch_sizes=[2]))
    first = engine.describe()["aot"]
    masks = asyncio.run(engine.infer(frames))
    engine.close()
    assert (first["built"], first["loaded"]) == (1, 1)
    assert len(list((cache_dir / "aot").glob("*-b2-48x40.pt2"))) == 1
    np.testing.assert_array_equal(masks, _direct(demo_model, frames))

    restarted = _engine(demo_model, cache_dir)
    restarted.warmup_all(WarmupConfig(frame_shapes=[KNOWN], batch_sizes=[2]))
    again = restarted.describe()
    restarted_masks = asyncio.run(restarted.infer(frames))
    restarted.close()
    assert (again["aot"]["built"], again["aot"]["loaded"]) == (0, 1)
    assert again["warm"] == [[2, *KNOWN]]
    np.testing.assert_array_equal(restarted_masks, masks)


def test_new_shape_builds_in_the_background_while_known_shapes_run(
    demo_model: torch.nn.Module, cache_dir: Path
) -> None:
    engine = _engine(demo_model, cache_dir)
    engine.warmup_all(WarmupConfig(frame_shapes=[KNOWN], batch_sizes=[2]))
    known = _frames(2, KNOWN, seed=1)
    new = _frames(3, NEW, seed=2)

    async def scenario() -> dict[str, object]:
        eager = await engine.infer(new)  # bucket 4 of 40x56: not warm, runs eagerly
        building = engine.pending_builds()
        during = [await engine.infer(known) for _ in range(5)]
        still_building = engine.pending_builds()
        deadline = time.monotonic() + 240
        while [4, *NEW] not in engine.describe()["warm"]:
            assert time.monotonic() < deadline, engine.describe()
            await asyncio.sleep(0.2)
        compiled = await engine.infer(new)
        return {
            "eager": eager,
            "building": building,
            "during": during,
            "still_building": still_building,
            "compiled": compiled,
        }

    try:
        seen = asyncio.run(scenario())
        state = engine.describe()
    finally:
        engine.close()
    assert seen["building"] == [(4, *NEW)]
    assert seen["still_building"] == [(4, *NEW)]  # known batches finished while it built
    for masks in seen["during"]:
        np.testing.assert_array_equal(masks, _direct(demo_model, known))
    np.testing.assert_array_equal(seen["eager"], _direct(demo_model, new))
    np.testing.assert_array_equal(seen["compiled"], seen["eager"])
    assert state["aot"]["built"] == 1 and state["aot"]["building"] == []
    assert state["uncompiled"] == []


def test_failed_build_raises_with_the_child_log(
    demo_model: torch.nn.Module, tmp_path: Path
) -> None:
    masker = FrameMasker(copy.deepcopy(demo_model), INPUTS, torch.float32, channels_last=False)
    packages = AotPackages(masker, tmp_path, CPU, options={"no_such_inductor_option": True})
    future = packages.build((1, 40, 40))
    with pytest.raises(AotBuildError, match="no_such_inductor_option"):
        future.result(timeout=300)
    assert packages.build((1, 40, 40)) is future  # not retried on every batch
    assert not packages.on_disk((1, 40, 40))
    packages.close()


def test_fingerprint_follows_weights_dtype_and_options(demo_model: torch.nn.Module) -> None:
    def key(model: torch.nn.Module, dtype: torch.dtype = torch.float32, **options: object) -> str:
        return fingerprint(FrameMasker(model, INPUTS, dtype, False), CPU, dict(options))

    base = key(demo_model)
    assert key(copy.deepcopy(demo_model)) == base
    assert key(copy.deepcopy(demo_model).to(memory_format=torch.channels_last)) == base
    changed = copy.deepcopy(demo_model)
    with torch.no_grad():
        next(changed.parameters()).add_(1e-3)
    assert key(changed) != base
    assert key(demo_model, torch.bfloat16) != base
    assert key(demo_model, max_autotune=True) != base


def test_fingerprint_follows_the_model_and_masker_code(
    demo_model: torch.nn.Module, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert {p.name for p in aot.EXPORTED_CODE} >= {"aot.py", "backbone.py", "bifpn.py", "grn.py"}
    copies = []
    for path in aot.EXPORTED_CODE:
        copies.append(tmp_path / path.parent.name / path.name)
        copies[-1].parent.mkdir(exist_ok=True)
        shutil.copy(path, copies[-1])
    assert aot.code_digest(copies) == aot.code_digest(aot.EXPORTED_CODE)
    base = fingerprint(FrameMasker(demo_model, INPUTS, torch.float32, False), CPU, {})
    monkeypatch.setattr(aot, "EXPORTED_CODE", tuple(copies))
    assert fingerprint(FrameMasker(demo_model, INPUTS, torch.float32, False), CPU, {}) == base
    for copy_ in (copies[0], copies[-1]):  # a model file, and aot.py (FrameMasker)
        with copy_.open("a") as fh:
            fh.write("# an edit\n")
        edited = fingerprint(FrameMasker(demo_model, INPUTS, torch.float32, False), CPU, {})
        assert edited != base
        base = edited


def test_a_crashed_loader_is_named_with_the_way_out() -> None:
    log = 'File "torch/_inductor/__init__.py", line 1 in aoti_load_package\n'
    reason = aot._exit_reason(-signal.SIGSEGV, log)
    assert "loader crashed (SIGSEGV)" in reason and 'use compile="default"' in reason
    assert aot._exit_reason(-signal.SIGKILL, "building...") == "killed by SIGKILL"
    assert aot._exit_reason(1, "Traceback ...") == "exit 1"
