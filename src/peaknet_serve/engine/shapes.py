"""Which (batch bucket, frame shape) pairs are compiled, and what a batch of any other pair does.

torch.compile builds one graph per (bucket, height, width), tens of seconds each for the standard
model. Compiled on the launcher thread, a new frame shape would stop every batch behind it, and in
torch 2.11 it cannot be compiled on another thread while compiled graphs run (dynamo's FX-tracing
flag is process-wide: the running graphs fail). So a batch whose pair is not warm runs at a larger
bucket that is warm for its shape (padding is cheaper than waiting) or, failing that, runs the
model eagerly: slower for that shape (docs/perf-notes.md),
while batches of warm pairs are never held up. With ``fixed`` shapes an unknown frame shape is
rejected instead. Add a shape that stays to ``warmup.frame_shapes``. With ahead-of-time packages
the engine builds the pair's package in a child process meanwhile (``on_new_eager_pair``) and
marks the pair warm when it is loaded.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from peaknet_serve.errors import DecodeError

logger = logging.getLogger(__name__)

Pair = tuple[int, int, int]
"""(bucket, height, width)."""


def pair_of(frames: Any) -> Pair:
    """The (batch, height, width) pair of a (B, H, W) array or tensor."""
    return (frames.shape[0], frames.shape[1], frames.shape[2])


class ShapeGate:
    """Chooses the bucket a batch runs at, and whether it runs compiled or eager.

    Args:
        buckets: the engine's batch buckets.
        compiled: whether the engine compiles (otherwise every batch runs eager at its own
            bucket, and only ``fixed`` matters).
        fixed: reject frame shapes that were not warmed up at start.
        on_new_eager_pair: called (outside the gate's lock) the first time a pair runs eagerly,
            to compile it in the background.
    """

    def __init__(
        self,
        *,
        buckets: Sequence[int],
        compiled: bool,
        fixed: bool = False,
        on_new_eager_pair: Callable[[Pair], None] | None = None,
    ) -> None:
        self._buckets = tuple(sorted(buckets))
        self._compiled = compiled
        self.fixed = fixed
        self._on_new_eager_pair = on_new_eager_pair
        self._lock = threading.Lock()
        self._warm_pairs: set[Pair] = set()
        self._eager_pairs: set[Pair] = set()

    def natural_bucket(self, count: int) -> int:
        """The smallest bucket that holds ``count`` frames (the largest for more)."""
        return next((b for b in self._buckets if b >= count), self._buckets[-1])

    def mark_warm(self, bucket: int, height: int, width: int) -> None:
        """Record a pair compiled and run (by the warm-up, or once its package is loaded)."""
        with self._lock:
            self._warm_pairs.add((bucket, height, width))

    def known_shapes(self) -> list[tuple[int, int]]:
        """Frame shapes with at least one warm bucket."""
        with self._lock:
            return sorted({(h, w) for _, h, w in self._warm_pairs})

    def warm_pairs(self) -> list[Pair]:
        with self._lock:
            return sorted(self._warm_pairs)

    def eager_pairs(self) -> list[Pair]:
        """Pairs seen at run time that ran eagerly and are not warm (yet)."""
        with self._lock:
            return sorted(self._eager_pairs - self._warm_pairs)

    def choose(self, count: int, height: int, width: int) -> tuple[int, bool]:
        """(bucket, run compiled) for ``count`` frames of ``height`` x ``width``.

        Raises:
            DecodeError: shapes are fixed and this frame shape was not warmed up at start.
        """
        natural = self.natural_bucket(count)
        with self._lock:
            if self.fixed and not any((h, w) == (height, width) for _, h, w in self._warm_pairs):
                known = sorted({(h, w) for _, h, w in self._warm_pairs})
                raise DecodeError(
                    f"frame shape {height} x {width} is not one of the configured shapes "
                    f"{[list(s) for s in known]} (warmup.fixed_shapes is true); add it to "
                    "warmup.frame_shapes, or set warmup.fixed_shapes to false to serve new "
                    "shapes (uncompiled) at run time",
                    reason="unexpected_shape",
                )
            if not self._compiled:
                return natural, False
            for bucket in self._buckets:
                if bucket >= natural and (bucket, height, width) in self._warm_pairs:
                    return bucket, True
            pair = (natural, height, width)
            first_time = pair not in self._eager_pairs
            self._eager_pairs.add(pair)
        if first_time:
            logger.warning(
                "batch x shape %s was not warmed up: running it uncompiled (slower) so "
                "compiled batches are not held up; %s",
                pair,
                "it is compiled in the background"
                if self._on_new_eager_pair is not None
                else "add the shape to warmup.frame_shapes",
            )
            if self._on_new_eager_pair is not None:
                self._on_new_eager_pair(pair)
        return natural, False
