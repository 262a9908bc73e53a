"""The real LCLStreamer as a test producer: configs with its ``InternalEventSource`` written into a
tmp dir, a run of ``lclstreamer --config``, and the batches it also wrote to disk with its
``BinaryFileWritingDataHandler`` (the same bytes it pushed), to compare with what the service got.

``/work/shared/lclstreamer/setup.sh`` (run by ``scripts/test.sh`` as root) installs main (zmq
only) and 0.3 (nng by default) under ``/opt/lclstreamer`` or ``$LCLSTREAMER_PREFIX``. Tests that
need one skip where it is missing, but fail under CI (env ``CI``), like the browser test.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401  (LCLStreamer's compressed datasets)
import numpy as np
import pytest
import yaml

PREFIX = Path(os.environ.get("LCLSTREAMER_PREFIX", "/opt/lclstreamer"))
VERSIONS = {"main": "zmq", "0.3": "nng"}
"""LCLStreamer version -> the transport it pushes with by default (main: zmq only)."""
WAVELENGTH_NM = 0.124


def executable(version: str) -> Path:
    return PREFIX / version / "bin" / "lclstreamer"


def needs(version: str) -> pytest.MarkDecorator:
    """Skip without LCLStreamer ``version``, except under CI, where the test then fails."""
    return pytest.mark.skipif(
        not executable(version).exists() and not os.environ.get("CI"),
        reason=f"LCLStreamer {version} is not installed ({executable(version)}; scripts/test.sh "
        "runs ../shared/lclstreamer/setup.sh where it can; CI must have it)",
    )


def write_config(
    directory: Path,
    *,
    url: str,
    library: str,
    events: int,
    batch_size: int,
    shape: tuple[int, ...] = (64, 64),
    dtype: str = "float32",
    role: str = "client",
    wavelength: bool = True,
    timestamp: bool = True,
    files_dir: Path | None = None,
    compression: str | None = None,
) -> Path:
    """An LCLStreamer config: random images, a fixed wavelength (nm) and timestamp (int64 ns),
    pushed to ``url``; with ``files_dir`` every message is also written there as a file."""
    sources: dict[str, Any] = {
        "detector_data": {
            "type": "GenericRandomNumpyArray",
            "array_shape": ",".join(str(n) for n in shape),
            "array_dtype": dtype,
        }
    }
    fields = {"detector_data": "/data/data"}
    if wavelength:
        sources["photon_wavelength"] = {"type": "FloatValue", "value": WAVELENGTH_NM}
        fields["photon_wavelength"] = "/data/wavelength"
    if timestamp:
        sources["timestamp"] = {"type": "IntValue", "value": 1_700_000_000_123_456_789}
        fields["timestamp"] = "/data/timestamp"
    handlers: list[dict[str, Any]] = []
    if files_dir is not None:
        handlers.append({"type": "BinaryFileWritingDataHandler", "write_directory": str(files_dir)})
    handlers.append(
        {"type": "BinaryDataStreamingDataHandler", "urls": [url], "role": role, "library": library}
    )
    config = {
        "source_identifier": "peaknet-serve-test",
        "skip_incomplete_events": False,
        "event_source": {"type": "InternalEventSource", "number_of_events_to_generate": events},
        "data_sources": sources,
        "processing_pipeline": {"type": "BatchProcessingPipeline", "batch_size": batch_size},
        "data_serializer": {
            "type": "HDF5BinarySerializer",
            "compression": compression,
            "fields": fields,
        },
        "data_handlers": handlers,
    }
    path = directory / f"lclstreamer-{library}-{role}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _higher_priority() -> None:
    """LCLStreamer discards what its I/O thread has not sent when it exits (zmq ``LINGER 0``, nng
    close); on a loaded 2-core host that thread can be starved by the service's CPU model, and
    its last batch lost on the producer's side (docs/benchmarks.md). The tests measure the
    receiver, so the producer runs at a higher priority where allowed (root)."""
    with contextlib.suppress(PermissionError):
        os.nice(-10)


def start(version: str, config: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """``lclstreamer --config CONFIG`` as one rank, output in ``cwd/lclstreamer.log``."""
    log = (cwd / "lclstreamer.log").open("ab")
    return subprocess.Popen(
        [str(executable(version)), "--config", str(config)],
        cwd=cwd,
        preexec_fn=_higher_priority,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"},
    )


def run(version: str, config: Path, cwd: Path, timeout: float = 120) -> None:
    """Run LCLStreamer to its end; fails the test when it does not exit 0."""
    proc = start(version, config, cwd)
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"LCLStreamer {version} did not finish in {timeout} s") from None
    log = (cwd / "lclstreamer.log").read_text(errors="replace")
    assert code == 0, f"LCLStreamer {version} exited {code}:\n{log[-3000:]}"


def written_batches(files_dir: Path) -> list[dict[str, np.ndarray]]:
    """Every message LCLStreamer wrote to ``files_dir``, as {dataset path: array}, in order."""
    paths = sorted(files_dir.glob("*.h5"), key=lambda p: int(p.stem.rsplit("_", 1)[-1]))
    return [_datasets(path) for path in paths]


def _datasets(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        names: list[str] = []
        f.visititems(
            lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None
        )
        return {"/" + name: f[name][()] for name in names}
