"""GPU health: a start-up check that fails a replica on a sick GPU, and a cheap periodic re-check.

A node with several GPUs may have one that is broken (ECC errors, a fallen-off-the-bus card, a
driver in a bad state). Failing the replica's constructor makes Ray Serve place a new replica
elsewhere, instead of a replica that accepts batches and then errors on each one. The probes are
plain callables so tests can simulate a broken GPU on a CPU.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import torch

from peaknet_serve.errors import PeakNetServeError

logger = logging.getLogger(__name__)

Probe = Callable[[torch.device, float], dict[str, Any]]
"""``probe(device, timeout_s) -> facts``: raises when the device is broken."""

_MATMUL_SIZE = 512
_POLL_S = 0.001


class GPUHealthError(PeakNetServeError):
    """The GPU failed a health check; the replica should be restarted on another GPU."""


def startup_probe(device: torch.device, timeout_s: float) -> dict[str, Any]:
    """Allocate, multiply two matrices against a CPU reference and round-trip host memory.

    On a CPU there is nothing to check: returns ``{"device": "cpu"}``.
    """
    if device.type != "cuda":
        return {"device": "cpu"}
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(0)
    a = torch.rand((_MATMUL_SIZE, _MATMUL_SIZE), generator=generator, dtype=torch.float64)
    b = torch.rand((_MATMUL_SIZE, _MATMUL_SIZE), generator=generator, dtype=torch.float64)
    stream = torch.cuda.Stream(device)
    with torch.cuda.stream(stream):
        scratch = torch.empty(64 << 20, dtype=torch.uint8, device=device)  # 64 MiB allocation
        scratch.fill_(0x5A)
        product = a.to(device, non_blocking=False) @ b.to(device, non_blocking=False)
        host = torch.randint(0, 256, (1 << 20,), dtype=torch.uint8, generator=generator)
        on_device = host.pin_memory().to(device, non_blocking=True)
        done = torch.cuda.Event()
        done.record(stream)
    _wait(done, timeout_s, "the start-up check (64 MiB fill, 512x512 matmul, 1 MiB copy)")
    back = on_device.cpu()
    if not bool((scratch == 0x5A).all()):
        raise GPUHealthError(f"{_name(device)}: memory fill read back wrong values")
    expected = a @ b
    if not torch.allclose(product.cpu(), expected, rtol=1e-9, atol=1e-9):
        error = float((product.cpu() - expected).abs().max())
        raise GPUHealthError(
            f"{_name(device)}: float64 matmul differs from the CPU reference by up to {error:.3g}"
        )
    if not torch.equal(back, host):
        raise GPUHealthError(f"{_name(device)}: a host -> device -> host copy came back changed")
    del scratch
    return {"check_s": round(time.perf_counter() - start, 4)}


def tick_probe(device: torch.device, timeout_s: float) -> dict[str, Any]:
    """A tiny kernel on its own stream that must finish within ``timeout_s``."""
    if device.type != "cuda":
        return {"device": "cpu"}
    stream = torch.cuda.Stream(device)
    with torch.cuda.stream(stream):
        value = torch.full((256,), 2.0, device=device).sum()
        done = torch.cuda.Event()
        done.record(stream)
    _wait(done, timeout_s, "a tiny health-check kernel")
    if float(value) != 512.0:
        raise GPUHealthError(f"{_name(device)}: a tiny kernel computed {float(value)}, not 512")
    return {}


def is_device_error(exc: BaseException) -> bool:
    """Whether ``exc`` comes from the CUDA runtime (then the context is usually unusable)."""
    accelerator_error = getattr(torch, "AcceleratorError", None)
    if accelerator_error is not None and isinstance(exc, accelerator_error):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("CUDA error" in text or "CUDNN_STATUS" in text)


class GPUHealth:
    """Health of one replica's device: checked at start, re-checked cheaply, errors remembered.

    Args:
        device: the device the replica runs on.
        timeout_s: longest wait for a probe's kernels.
        startup: the start-up probe (``startup_probe``; tests pass a failing one).
        tick: the periodic probe (``tick_probe``).
    """

    def __init__(
        self,
        device: torch.device,
        *,
        timeout_s: float = 10.0,
        startup: Probe = startup_probe,
        tick: Probe = tick_probe,
    ) -> None:
        self.device = device
        self.timeout_s = timeout_s
        self._startup = startup
        self._tick = tick
        self._errors: list[str] = []
        self._facts: dict[str, Any] = {}

    def check_startup(self) -> None:
        """Run the start-up probe; raise GPUHealthError (with the device named) if it fails."""
        try:
            self._facts = dict(self._startup(self.device, self.timeout_s))
        except Exception as exc:
            raise GPUHealthError(
                f"GPU health check failed at start on {self.describe_device()}: {exc}. "
                "This replica stops so that Ray Serve starts one on another GPU; if every GPU "
                "fails, check `nvidia-smi` and the driver logs (Xid errors)."
            ) from exc
        logger.info("GPU health check passed on %s %s", self.describe_device(), self._facts)

    def record_error(self, exc: BaseException) -> None:
        """Remember a CUDA error seen while serving: the next ``check`` fails."""
        if is_device_error(exc):
            self._errors.append(f"{type(exc).__name__}: {exc}")
            logger.error("CUDA error on %s: %s", self.describe_device(), exc)

    def check(self) -> None:
        """Fail (GPUHealthError) if CUDA errors were seen or the tiny-kernel probe fails."""
        if self._errors:
            raise GPUHealthError(
                f"{len(self._errors)} CUDA error(s) on {self.describe_device()}, the last: "
                f"{self._errors[-1]}; restarting the replica"
            )
        try:
            self._tick(self.device, self.timeout_s)
        except Exception as exc:
            self._errors.append(f"{type(exc).__name__}: {exc}")
            raise GPUHealthError(
                f"GPU health re-check failed on {self.describe_device()}: {exc}"
            ) from exc

    def describe_device(self) -> str:
        if self.device.type != "cuda":
            return "cpu"
        return f"{self.device} ({_name(self.device)})"

    def status(self) -> dict[str, Any]:
        """JSON-ready facts for ``/status``: name, index, memory in use, errors seen."""
        status: dict[str, Any] = {"device": str(self.device), "healthy": not self._errors}
        status["errors"] = len(self._errors)
        if self.device.type == "cuda" and not self._errors:
            free, total = torch.cuda.mem_get_info(self.device)
            status |= {
                "name": _name(self.device),
                "index": self.device.index
                if self.device.index is not None
                else torch.cuda.current_device(),
                "memory_used_bytes": total - free,
                "memory_total_bytes": total,
                "memory_allocated_bytes": torch.cuda.memory_allocated(self.device),
                "memory_reserved_bytes": torch.cuda.memory_reserved(self.device),
            }
        elif self.device.type != "cuda":
            status["name"] = "cpu"
        return status | {"startup_check": self._facts}


def _wait(done: torch.cuda.Event, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not done.query():
        if time.monotonic() > deadline:
            raise GPUHealthError(f"{what} did not finish within {timeout_s:g} s")
        time.sleep(_POLL_S)


def _name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device)
