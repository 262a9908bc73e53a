"""GPU health: a failing start-up probe takes the replica down with its message; CUDA errors seen
while serving fail the next health check; on a CPU the checks report "cpu"."""

from __future__ import annotations

import sys
from typing import Any

import pytest
import torch

from peaknet_serve.config import ServiceConfig
from peaknet_serve.engine import GPUHealth, GPUHealthError, is_device_error

CPU = torch.device("cpu")


def broken_gpu(device: torch.device, timeout_s: float) -> dict[str, Any]:
    raise RuntimeError("matmul differs from the CPU reference by up to 3.5e+02")


def stuck_gpu(device: torch.device, timeout_s: float) -> dict[str, Any]:
    raise GPUHealthError(f"a tiny health-check kernel did not finish within {timeout_s:g} s")


def test_cpu_checks_are_noops_that_report_cpu() -> None:
    health = GPUHealth(CPU)
    health.check_startup()
    health.check()
    status = health.status()
    assert status["name"] == "cpu"
    assert status["healthy"] is True
    assert status["startup_check"] == {"device": "cpu"}


def test_failing_startup_probe_raises_with_its_message() -> None:
    health = GPUHealth(CPU, startup=broken_gpu)
    with pytest.raises(GPUHealthError, match="failed at start on cpu: matmul differs") as info:
        health.check_startup()
    assert "Ray Serve starts one on another GPU" in str(info.value)


def test_cuda_errors_seen_fail_the_next_check() -> None:
    health = GPUHealth(CPU)
    health.record_error(ValueError("bad frame"))  # not a device error: ignored
    health.check()
    health.record_error(RuntimeError("CUDA error: an illegal memory access was encountered"))
    with pytest.raises(GPUHealthError, match="1 CUDA error.*illegal memory access"):
        health.check()
    assert health.status()["healthy"] is False


def test_tick_probe_failure_fails_the_check_and_is_remembered() -> None:
    health = GPUHealth(CPU, tick=stuck_gpu, timeout_s=0.5)
    with pytest.raises(GPUHealthError, match="re-check failed on cpu: .*within 0.5 s"):
        health.check()
    with pytest.raises(GPUHealthError, match="1 CUDA error"):
        health.check()


def test_is_device_error() -> None:
    assert is_device_error(RuntimeError("CUDA error: device-side assert triggered"))
    assert is_device_error(RuntimeError("cuDNN error: CUDNN_STATUS_EXECUTION_FAILED"))
    assert not is_device_error(RuntimeError("shape mismatch"))
    assert not is_device_error(ValueError("CUDA error"))


def _sections(**engine: Any) -> dict[str, Any]:
    """The PeakNet deployment's sections, as ``build_app`` hands them over."""
    from deployments.app import deployment_sections

    config = ServiceConfig.model_validate(
        {
            "model": {"preset": "peaknet-demo", "weights": "builtin:peaknet-demo"},
            "engine": {"device": "cpu", "batch_buckets": [1, 2], **engine},
            "warmup": {"frame_shapes": [[48, 64], [2, 32, 32]], "batch_sizes": [2]},
        }
    )
    return deployment_sections(config)["PeakNet"]


def test_replica_with_a_broken_gpu_fails_in_serve(ray_cluster: dict[str, str]) -> None:
    from ray import cloudpickle, serve

    from deployments.peaknet import PeakNet

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # probes travel by value
    serve.start(http_options={"host": "127.0.0.1", "port": int(ray_cluster["http_port"])})
    app = PeakNet.options(max_constructor_retry_count=1, ray_actor_options={"num_cpus": 0.5}).bind(
        **_sections(), health_startup=broken_gpu
    )
    try:
        with pytest.raises(RuntimeError, match="sick-gpu failed"):
            serve.run(app, name="sick-gpu", route_prefix=None)
        deployment = serve.status().applications["sick-gpu"].deployments["PeakNet"]
        assert deployment.status == "DEPLOY_FAILED"
        assert "GPU health check failed at start on cpu: matmul differs" in deployment.message
    finally:
        serve.delete("sick-gpu")


def test_replica_is_ready_only_with_its_shapes_warm(ray_cluster: dict[str, str]) -> None:
    from ray import serve

    from deployments.peaknet import PeakNet

    serve.start(http_options={"host": "127.0.0.1", "port": int(ray_cluster["http_port"])})
    app = PeakNet.options(ray_actor_options={"num_cpus": 0.5}).bind(**_sections())
    try:
        handle = serve.run(app, name="warm-gpu", route_prefix=None)
        assert handle.ready.remote().result(timeout_s=30) is True
        status = handle.gpu_status.remote().result(timeout_s=30)
        assert status["known_shapes"] == [[32, 32], [48, 64]]
        assert status["name"] == "cpu" and status["healthy"] is True
        engine = handle.describe.remote().result(timeout_s=30)["engine"]
        assert engine["warm"] == [[2, 32, 32], [2, 48, 64]]
        handle.check_health.remote().result(timeout_s=30)
    finally:
        serve.delete("warm-gpu")
