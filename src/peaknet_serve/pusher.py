"""A synthetic LCLStreamer that pushes diffraction-like frames (``peaknet-serve push``).

It speaks LCLStreamer's protocol: one message per batch of events, HDF5 (or NPZ) bytes with the
image as (B, 1, H, W) (or (B, P, H, W)), the wavelength in nm and a uint64 ``(sec << 32) | ns``
timestamp per event, no header and no end-of-stream marker; the last batch may be partial.
Unlike LCLStreamer, a dialling pusher waits for its listener (``--connect-timeout``) instead of
exiting. Each ``--rank`` sends its own block of event indices, so timestamps never collide
between pushers, and ``--truth`` records what every event holds.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import h5py
import numpy as np
import pynng
import zmq
from tqdm import tqdm

from peaknet_serve.errors import ConfigError, PeakNetServeError
from peaknet_serve.synthetic import FrameTruth, SyntheticFrames, first_event, truth_arrays
from peaknet_serve.wire.config import FieldMap
from peaknet_serve.wire.encode import HDF5_COMPRESSIONS, NPZ_COMPRESSIONS, encode_batch

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PushSummary:
    """What one ``push_frames`` call sent."""

    frames: int
    messages: int
    bytes_sent: int
    seconds: float
    first_event: int
    truth: list[FrameTruth]

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("inf")


class _Sender(Protocol):
    def send(self, payload: bytes) -> None: ...

    def close(self) -> None: ...


class _NngSender:
    """pynng Push0; a dial is retried until ``timeout_s`` while the listener is not up."""

    def __init__(self, addresses: Sequence[str], *, mode: str, timeout_s: float) -> None:
        ms = max(1, round(timeout_s * 1000))
        self._sock = pynng.Push0(send_timeout=ms, reconnect_time_min=50, reconnect_time_max=500)
        try:
            for address in addresses:
                if mode == "listen":
                    self._sock.listen(address)
                else:
                    self._dial(address, timeout_s)
        except BaseException:
            self._sock.close()
            raise

    def _dial(self, address: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self._sock.dial(address, block=True)
                return
            except pynng.ConnectionRefused as exc:
                if time.monotonic() > deadline:
                    raise PeakNetServeError(
                        f"no listener at {address} after {timeout_s:.0f} s; start the receiving "
                        "service first or raise --connect-timeout"
                    ) from exc
                time.sleep(0.05)

    def send(self, payload: bytes) -> None:
        try:
            self._sock.send(payload)
        except pynng.Timeout as exc:
            raise PeakNetServeError(
                "nobody took a message within --connect-timeout; is the receiver up and pulling?"
            ) from exc

    def close(self) -> None:
        self._sock.close()


class _ZmqSender:
    """pyzmq PUSH (SNDHWM 5, like LCLStreamer), but with a linger so the last batch arrives."""

    def __init__(
        self, addresses: Sequence[str], *, mode: str, timeout_s: float, linger_s: float
    ) -> None:
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.PUSH)
        self._sock.setsockopt(zmq.SNDHWM, 5)
        self._sock.setsockopt(zmq.SNDTIMEO, max(1, round(timeout_s * 1000)))
        self._sock.setsockopt(zmq.LINGER, round(linger_s * 1000))
        self._sock.setsockopt(zmq.RECONNECT_IVL, 50)
        self._sock.setsockopt(zmq.RECONNECT_IVL_MAX, 500)
        try:
            for address in addresses:
                if mode == "listen":
                    self._sock.bind(address)
                else:
                    self._sock.connect(address)
        except zmq.ZMQError as exc:
            self.close()
            raise PeakNetServeError(f"zmq pusher cannot {mode} {list(addresses)}: {exc}") from exc

    def send(self, payload: bytes) -> None:
        try:
            self._sock.send(payload, copy=False)
        except zmq.Again as exc:
            raise PeakNetServeError(
                "nobody took a message within --connect-timeout; is the receiver up and pulling?"
            ) from exc

    def close(self) -> None:
        self._sock.close()
        self._ctx.term()


def push_frames(
    *,
    address: str | Sequence[str] = "tcp://127.0.0.1:12321",
    transport: str = "nng",
    mode: str = "dial",
    fmt: str = "hdf5",
    compression: str = "none",
    level: int = 3,
    dtype: str = "float32",
    frames: int = 64,
    batch_size: int = 16,
    shape: Sequence[int] = (512, 512),
    rate: float = 0.0,
    peaks: int = 30,
    hit_fraction: float = 0.5,
    seed: int = 0,
    rank: int = 0,
    wavelength_nm: float = 0.13,
    fields: FieldMap | None = None,
    channel_axis: bool = True,
    truth_path: str | Path | None = None,
    connect_timeout_s: float = 30.0,
    linger_s: float = 1.0,
    progress: bool = False,
    cycle: int = 0,
) -> PushSummary:
    """Generate ``frames`` synthetic events and push them in batches of ``batch_size``.

    Events are ``first_event(rank) ...``; each carries a unique timestamp. ``channel_axis`` sends
    2-D frames as (B, 1, H, W) like LCLStreamer (else (B, H, W)). ``truth_path`` ending in .h5 or
    .hdf5 gets flat HDF5 arrays, any other name JSON Lines (one event per line). ``cycle`` > 0
    reuses the images of that many frames (``SyntheticFrames``), for pushing at full speed. Raises
    ``PeakNetServeError`` when no receiver shows up within ``connect_timeout_s``.
    """
    addresses = [address] if isinstance(address, str) else list(address)
    _check(transport, mode, fmt, compression, frames, batch_size)
    paths = fields or FieldMap()
    generator = SyntheticFrames(
        shape=tuple(shape),
        peaks=peaks,
        hit_fraction=hit_fraction,
        seed=seed,
        dtype=dtype,
        wavelength_nm=wavelength_nm,
        cycle=cycle,
    )
    sender: _Sender = (
        _NngSender(addresses, mode=mode, timeout_s=connect_timeout_s)
        if transport == "nng"
        else _ZmqSender(addresses, mode=mode, timeout_s=connect_timeout_s, linger_s=linger_s)
    )
    start_event = first_event(rank)
    truths: list[FrameTruth] = []
    sent_bytes = messages = 0
    started = time.monotonic()
    try:
        with tqdm(
            total=frames, unit="frame", disable=not progress, desc=f"push rank {rank}"
        ) as bar:
            for offset in range(0, frames, batch_size):
                n = min(batch_size, frames - offset)
                images, batch_truth = generator.batch(start_event + offset, n)
                if channel_axis and images.ndim == 3:
                    images = images[:, None]
                payload = encode_batch(
                    {
                        paths.image: images,
                        paths.wavelength: np.array([t.wavelength_nm for t in batch_truth]),
                        paths.timestamp: np.array(
                            [t.timestamp for t in batch_truth], dtype=np.uint64
                        ),
                    },
                    fmt=fmt,
                    compression=compression,
                    level=level,
                )
                _wait_for_rate(started, offset, rate)
                sender.send(payload)
                truths.extend(batch_truth)
                sent_bytes += len(payload)
                messages += 1
                bar.update(n)
        if transport == "nng":
            # nng has no linger: a message still queued when the socket closes is lost. A
            # receiver applying backpressure may take the last ones only after a while.
            logger.info("waiting %.0f s for the receiver to take the last messages", linger_s)
            time.sleep(linger_s)
    finally:
        sender.close()
    seconds = time.monotonic() - started
    if truth_path is not None:
        write_truth(truth_path, truths)
    logger.info(
        "rank %d pushed %d frames in %d messages (%.1f MB) in %.2f s",
        rank,
        len(truths),
        messages,
        sent_bytes / 1e6,
        seconds,
    )
    return PushSummary(
        frames=len(truths),
        messages=messages,
        bytes_sent=sent_bytes,
        seconds=seconds,
        first_event=start_event,
        truth=truths,
    )


def _check(
    transport: str, mode: str, fmt: str, compression: str, frames: int, batch_size: int
) -> None:
    if transport not in ("nng", "zmq"):
        raise ConfigError(f"transport {transport!r} unknown; use 'nng' or 'zmq'")
    if mode not in ("dial", "listen"):
        raise ConfigError(f"mode {mode!r} unknown; use 'dial' or 'listen'")
    allowed = {"hdf5": HDF5_COMPRESSIONS, "npz": NPZ_COMPRESSIONS}.get(fmt)
    if allowed is None:
        raise ConfigError(f"format {fmt!r} unknown; use 'hdf5' or 'npz'")
    if compression not in allowed:
        raise ConfigError(f"compression {compression!r} not valid for {fmt}; use one of {allowed}")
    if frames < 0 or batch_size < 1:
        raise ConfigError(f"need frames >= 0 and batch_size >= 1 (got {frames}, {batch_size})")


def _wait_for_rate(started: float, frames_done: int, rate: float) -> None:
    if rate > 0:
        delay = started + frames_done / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def write_truth(path: str | Path, truths: list[FrameTruth]) -> None:
    """Ground truth as HDF5 (``.h5``/``.hdf5``: flat arrays) or JSON Lines (anything else)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in (".h5", ".hdf5"):
        with h5py.File(path, "w") as fh:
            for key, value in truth_arrays(truths).items():
                fh.create_dataset(key, data=value)
    else:
        with path.open("w") as fh:
            for truth in truths:
                fh.write(json.dumps(truth.to_record()) + "\n")
