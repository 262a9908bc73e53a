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


FLUSH_AT_EXIT = """\
# The producer-side fix of docs/operations.md, put in by the tests (LCLStreamer is unchanged):
# its socket waits up to {seconds} s at close for the batches it still queues. zmq: a LINGER
# (LCLStreamer main closes with linger=0); nng has none: a pause before the first close.
import time

import zmq

_zmq_close = zmq.Socket.close


def _zmq_close_lingering(self, linger=None):
    _zmq_close(self, linger={milliseconds})


zmq.Socket.close = _zmq_close_lingering
try:
    import pynng
except ImportError:
    pynng = None
if pynng is not None:
    _nng_close = pynng.Socket.close

    def _nng_close_after_a_pause(self):
        if not getattr(self, "_flushed_at_exit", False):
            self._flushed_at_exit = True
            time.sleep({seconds})
        _nng_close(self)

    pynng.Socket.close = _nng_close_after_a_pause
"""


def start(
    version: str, config: Path, cwd: Path, flush_at_exit_s: float = 0.0
) -> subprocess.Popen[bytes]:
    """``lclstreamer --config CONFIG`` as one rank, output in ``cwd/lclstreamer.log``.

    As shipped, LCLStreamer drops the batches still in its socket's queue when it exits (main:
    up to ``SNDHWM`` 5, ``LINGER 0``; 0.3: nng's close), and whether any are still there depends
    on the receiving process keeping pace with its last burst, i.e. on the host's load: a loaded
    2-core host lost 3-4 of 40 batches with the socket read all along. With ``flush_at_exit_s``
    its socket waits that long at close for them (``FLUSH_AT_EXIT``, the producer-side fix), so
    every batch it sent either arrives or was lost by the receiver."""
    log = (cwd / "lclstreamer.log").open("ab")
    env = {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    if flush_at_exit_s:
        site = cwd / "producer-site"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(
            FLUSH_AT_EXIT.format(seconds=flush_at_exit_s, milliseconds=round(flush_at_exit_s * 1e3))
        )
        env["PYTHONPATH"] = str(site)
    return subprocess.Popen(
        [str(executable(version)), "--config", str(config)],
        cwd=cwd,
        preexec_fn=_higher_priority,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )


def run(
    version: str, config: Path, cwd: Path, timeout: float = 120, flush_at_exit_s: float = 0.0
) -> None:
    """Run LCLStreamer to its end (``start``); fails the test when it does not exit 0."""
    proc = start(version, config, cwd, flush_at_exit_s)
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
