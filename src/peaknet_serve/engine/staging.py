"""Staging buffers for N-way buffering: allocated once per slot and frame shape, then reused.

A slot is one batch in flight. It owns, per (height, width, input dtype), the host buffer frames are
copied into (pinned on a GPU, so the host-to-device copy is asynchronous and runs at full PCIe
speed), the device buffer they land in, the device mask buffer and the pinned host mask buffer,
each sized for the largest batch bucket. Pinning memory costs milliseconds per call, so it is done
once here and never per batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch

logger = logging.getLogger(__name__)

StagingKey = tuple[int, int, torch.dtype]
"""(height, width, input dtype) of the frames a staging set holds."""


@dataclass
class Staging:
    """One slot's buffers for one frame shape and dtype, each (capacity, H, W).

    On a CPU the "device" buffers are the host buffers themselves.
    """

    host_in: torch.Tensor
    dev_in: torch.Tensor
    dev_out: torch.Tensor
    host_out: torch.Tensor
    host_in_np: np.ndarray
    host_out_np: np.ndarray

    @classmethod
    def allocate(cls, key: StagingKey, capacity: int, device: torch.device) -> Staging:
        height, width, dtype = key
        shape = (capacity, height, width)
        on_gpu = device.type == "cuda"
        host_in = torch.empty(shape, dtype=dtype, pin_memory=on_gpu)
        host_out = torch.empty(shape, dtype=torch.uint8, pin_memory=on_gpu)
        dev_in = torch.empty(shape, dtype=dtype, device=device) if on_gpu else host_in
        dev_out = torch.empty(shape, dtype=torch.uint8, device=device) if on_gpu else host_out
        return cls(host_in, dev_in, dev_out, host_out, host_in.numpy(), host_out.numpy())

    @property
    def nbytes(self) -> int:
        """Bytes held (host and device; a CPU's shared buffers are counted once)."""
        tensors = {id(t): t for t in (self.host_in, self.dev_in, self.dev_out, self.host_out)}
        return sum(t.untyped_storage().nbytes() for t in tensors.values())


@dataclass
class Slot:
    """One batch in flight: its staging sets and, on a GPU, the events that order its stages."""

    index: int
    capacity: int
    device: torch.device
    staging: dict[StagingKey, Staging] = field(default_factory=dict)
    copied_in: torch.cuda.Event | None = None
    computed: torch.cuda.Event | None = None
    copied_out: torch.cuda.Event | None = None

    def __post_init__(self) -> None:
        if self.device.type == "cuda":
            self.copied_in = torch.cuda.Event()
            self.computed = torch.cuda.Event()
            self.copied_out = torch.cuda.Event()

    def buffers(self, key: StagingKey) -> Staging:
        """The staging set for ``key``, allocated on first use and reused afterwards."""
        staging = self.staging.get(key)
        if staging is None:
            staging = Staging.allocate(key, self.capacity, self.device)
            self.staging[key] = staging
            logger.info(
                "slot %d: allocated staging for %d x %d x %d %s (%.1f MB)",
                self.index,
                self.capacity,
                key[0],
                key[1],
                key[2],
                staging.nbytes / 1e6,
            )
        return staging


@dataclass(frozen=True)
class StagingStats:
    """How much staging memory the engine holds: ``buffers`` staging sets, ``nbytes`` bytes."""

    buffers: int
    nbytes: int


class SlotPool:
    """A fixed set of slots handed out to concurrent batches; waiters are served in order.

    Waiting for a free slot suspends the caller's task (never the event loop). Futures are made
    on the running loop at each wait, so one pool can serve several event loops one after another.
    """

    def __init__(self, count: int, *, capacity: int, device: torch.device) -> None:
        self.slots = [Slot(i, capacity, device) for i in range(count)]
        self._free: deque[Slot] = deque(self.slots)
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> Slot:
        """A free slot; waits until another batch releases one."""
        while not self._free:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake_next()  # pass on a wake-up we can no longer use
                raise
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        return self._free.pop()  # the most recently used: rare frame shapes stay in few slots

    def release(self, slot: Slot) -> None:
        """Give ``slot`` back; its GPU work must be finished."""
        self._free.append(slot)
        self._wake_next()

    def _wake_next(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def stats(self) -> StagingStats:
        """Number and bytes of the staging sets held by all slots."""
        sets = [s for slot in self.slots for s in slot.staging.values()]
        return StagingStats(buffers=len(sets), nbytes=sum(s.nbytes for s in sets))
