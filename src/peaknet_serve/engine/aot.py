"""Ahead-of-time compiled PeakNet: torch.export + AOTInductor packages, built in a child process.

Why not torch.compile alone: Dynamo traces the model again in every process (a restart with a
filled compile cache still takes tens of seconds: docs/perf-notes.md), and in torch 2.11 a new
frame shape cannot be compiled on a thread while compiled graphs run. An AOTInductor package
(``.pt2``: a shared library and the weights) is built once per (batch bucket, frame shape, model,
GPU, torch) in a separate Python process, kept on disk, and loaded in well under a second. The
replica keeps serving while a package builds; a restarted replica loads what is on disk.

Run as ``python -m peaknet_serve.engine.aot SPEC.json`` it builds one package (the child).
"""

from __future__ import annotations

import argparse
import faulthandler
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from torch import nn

import peaknet_serve.model as model_package
from peaknet_serve.engine.shapes import Pair
from peaknet_serve.errors import PeakNetServeError
from peaknet_serve.model import InputConfig, crop, mask_from_logits, prepare_batch

logger = logging.getLogger(__name__)

class FrameMasker(nn.Module):
    """float32 (B, H, W) frames -> uint8 (B, H, W) peak masks: what is compiled and exported."""

    def __init__(
        self, model: nn.Module, inputs: InputConfig, dtype: torch.dtype, channels_last: bool
    ) -> None:
        super().__init__()
        self.model = model
        self.inputs = inputs
        self.dtype = dtype
        self.channels_last = channels_last

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x, box = prepare_batch(frames, self.inputs, self.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return crop(mask_from_logits(self.model(x)), box)


class AotBuildError(PeakNetServeError):
    """A package could not be built; the message ends with the child's log."""


EXPORTED_CODE = (*sorted(Path(model_package.__file__).parent.glob("*.py")), Path(__file__))
"""The source files whose code a package's graph was traced from: the model and ``FrameMasker``."""


def code_digest(paths: Iterable[Path]) -> str:
    """SHA-256 of the files' names and contents: a package holds the graph that code traced, so
    a code change, exact or not, must not reuse it."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def fingerprint(masker: FrameMasker, device: torch.device, options: dict[str, Any]) -> str:
    """A key that changes with anything that makes a package invalid: weights, architecture,
    model code, input handling, dtype, layout, inductor options, torch version and GPU model."""
    digest = hashlib.sha256()
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    header = [
        repr(masker.model),
        code_digest(EXPORTED_CODE),
        masker.inputs.model_dump_json(),
        str(masker.dtype),
        str(masker.channels_last),
        json.dumps(options, sort_keys=True),
        torch.__version__,
        device_name,
    ]
    digest.update("\n".join(header).encode())
    for name, tensor in masker.model.state_dict().items():
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        flat = tensor.detach().cpu().clone(memory_format=torch.contiguous_format).reshape(-1)
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:20]


class AotPackages:
    """PeakNet packages in ``directory``: loads those on disk, builds the others in the background.

    At most ``processes`` packages build at once, each in its own child process (~1 min and a
    CUDA context each for the standard model on an H100). Loading happens in the caller's thread.

    Args:
        masker: the model wrapped for export, already on ``device`` in its dtype and layout.
        directory: where packages and the saved model live; share it between a node's replicas.
        options: inductor options of the build (``max_autotune``, ...).
    """

    def __init__(
        self,
        masker: FrameMasker,
        directory: Path,
        device: torch.device,
        *,
        options: dict[str, Any] | None = None,
        processes: int = 1,
    ) -> None:
        self.device = device
        self.options = dict(options or {})
        self.directory = directory.expanduser().resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.key = fingerprint(masker, device, self.options)
        self._masker = masker
        self._module_path = self.directory / f"peaknet-{self.key}.module.pt"
        self._builders = ThreadPoolExecutor(processes, thread_name_prefix="peaknet-aot")
        self._lock = threading.Lock()
        self._pending: dict[Pair, Future[Path]] = {}
        self.built = 0
        self.loaded = 0

    def path(self, pair: Pair) -> Path:
        bucket, height, width = pair
        return self.directory / f"peaknet-{self.key}-b{bucket}-{height}x{width}.pt2"

    def on_disk(self, pair: Pair) -> bool:
        return self.path(pair).is_file()

    def pending(self) -> list[Pair]:
        """Pairs whose package is being built."""
        with self._lock:
            return sorted(p for p, f in self._pending.items() if not f.done())

    def build(self, pair: Pair) -> Future[Path]:
        """Start building ``pair``'s package unless it is on disk or already building."""
        with self._lock:
            future = self._pending.get(pair)
            if future is not None:  # a failed build is not retried: its pair stays uncompiled
                return future
            if self.on_disk(pair):
                done: Future[Path] = Future()
                done.set_result(self.path(pair))
                return done
            self._save_module()
            future = self._builders.submit(self._build_in_child, pair)
            self._pending[pair] = future
            return future

    def load(self, pair: Pair) -> Callable[[torch.Tensor], torch.Tensor]:
        """The compiled masker of ``pair`` (its package must be on disk)."""
        index = self.device.index if self.device.index is not None else -1
        runner = torch._inductor.aoti_load_package(str(self.path(pair)), device_index=index)
        self.loaded += 1
        return runner

    def describe(self) -> dict[str, Any]:
        """Where the packages live and what is built, loaded or building, for status pages."""
        return {
            "directory": str(self.directory),
            "model_key": self.key,
            "building": [list(pair) for pair in self.pending()],
            "built": self.built,
            "loaded": self.loaded,
        }

    def close(self) -> None:
        """Stop waiting for builds that have not started; running children finish."""
        self._builders.shutdown(wait=False, cancel_futures=True)

    def _save_module(self) -> None:
        if self._module_path.is_file():
            return
        tmp = self._module_path.with_name(f"{self._module_path.name}.{os.getpid()}.tmp")
        torch.save(self._masker, tmp)
        os.replace(tmp, self._module_path)

    def _build_in_child(self, pair: Pair) -> Path:
        target = self.path(pair)
        spec = {
            "module": str(self._module_path),
            "package": str(target),
            "pair": list(pair),
            "device": str(self.device),
            "options": self.options,
        }
        log_path = target.with_suffix(".log")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        started = time.monotonic()
        logger.info("building AOT package %s for batch x shape %s", target.name, pair)
        with log_path.open("w") as log:
            result = subprocess.run(
                [sys.executable, "-m", __name__, json.dumps(spec)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                check=False,
            )
        if result.returncode != 0 or not target.is_file():
            log_text = log_path.read_text(errors="replace")
            raise AotBuildError(
                f"building the PeakNet package for batch x shape {pair} failed "
                f"({_exit_reason(result.returncode, log_text)}); log {log_path}:\n"
                f"{log_text[-2000:]}"
            )
        self.built += 1
        logger.info("built %s in %.1f s", target.name, time.monotonic() - started)
        return target


def _exit_reason(returncode: int, log_text: str) -> str:
    """Why the build child failed; a loader crash says that compile="aot" cannot run here."""
    if returncode >= 0:
        return f"exit {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    if "aoti_load_package" not in log_text:
        return f"killed by {name}"
    return (
        f"AOTInductor's loader crashed ({name}) on the package it had just built: "
        f'compile="aot" cannot run with torch {torch.__version__} on this host, use '
        'compile="default" (docs/perf-notes.md, issue 16)'
    )


def build_package(spec: dict[str, Any]) -> None:
    """Export the saved masker at one (bucket, H, W) and write its AOTInductor package.

    The package is loaded and run here, against the model, before it is published under its
    final name: a package that crashes its loader (as every CUDA package does with the lent
    H200 image's torch 2.11.0+cu130, see docs/perf-notes.md) or gives other masks kills or fails
    this child, never the replica.
    """
    device = torch.device(spec["device"])
    if device.type == "cuda":
        torch.cuda.set_device(device)
    bucket, height, width = spec["pair"]
    masker = torch.load(spec["module"], map_location=device, weights_only=False)
    example = torch.rand((bucket, height, width), device=device)
    target = Path(spec["package"])
    tmp = target.with_name(f"{target.stem}.{os.getpid()}.tmp.pt2")
    with torch.no_grad():
        program = torch.export.export(masker, (example,), strict=False)
        torch._inductor.aoti_compile_and_package(
            program, package_path=str(tmp), inductor_configs=spec["options"]
        )
        index = device.index if device.index is not None else -1
        compiled = torch._inductor.aoti_load_package(str(tmp), device_index=index)(example)
        expected = masker(example)
    agreement = float((compiled == expected).float().mean())
    if agreement < 0.999:
        tmp.unlink()
        raise AotBuildError(f"the package's masks agree with the model on {agreement:.4%} only")
    os.replace(tmp, target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build one PeakNet AOTInductor package.")
    parser.add_argument("spec", help="JSON: module, package, pair, device, options")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    faulthandler.enable()  # a crash in the loader leaves its Python stack in the build log
    build_package(json.loads(args.spec))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
