"""The decoded-size guard: a message's declared arrays are checked before any is allocated.

``max_message_bytes`` bounds what arrives, not what it unpacks to: a 3 kB HDF5 file can declare a
(16, 1, 8192, 8192) float32 dataset (4 GiB of fill value) and a zip member can carry a .npy header
claiming any shape. The decoder asks a ``DecodedBudget`` for every array's declared shape and dtype
(HDF5: the dataset object's ``shape``/``dtype``; NPZ: the member's .npy header) before reading it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from peaknet_serve.errors import DecodeError

#: Largest rank of any array in a message: (B, P, H, W) images, small per-event metadata.
MAX_RANK = 8


class DecodedBudget:
    """Bytes a message may decode to, spent array by array as each is declared.

    Raises ``DecodeError(reason="too_large_decoded")`` when the declared arrays add up to more
    than ``limit`` bytes, ``reason="bad_shape"`` for a shape that is not a short tuple of
    non-negative integers and ``reason="unsupported_dtype"`` for a dtype numpy cannot size.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.spent = 0

    def take(self, name: str, shape: Sequence[Any] | None, dtype: Any) -> int:
        """Charge the array ``name`` of ``shape`` and ``dtype``; returns its size in bytes."""
        if shape is None:  # an HDF5 null dataspace: no data
            return 0
        try:
            dims = [int(d) for d in shape]
        except (TypeError, ValueError) as exc:
            raise DecodeError(f"array {name} declares shape {shape!r}", reason="bad_shape") from exc
        if len(dims) > MAX_RANK or any(d < 0 for d in dims):
            raise DecodeError(
                f"array {name} declares shape {tuple(dims)}: expected at most {MAX_RANK} "
                "non-negative dimensions",
                reason="bad_shape",
            )
        try:
            itemsize = np.dtype(dtype).itemsize
        except (TypeError, ValueError) as exc:
            raise DecodeError(
                f"array {name} has a dtype numpy cannot size: {dtype!r}", reason="unsupported_dtype"
            ) from exc
        nbytes = itemsize
        for d in dims:  # Python ints: no overflow however large the declared shape
            nbytes *= d
        self.spent += nbytes
        if self.spent > self.limit:
            raise DecodeError(
                f"array {name} of shape {tuple(dims)} {np.dtype(dtype)} ({nbytes} bytes) takes the "
                f"message to {self.spent} decoded bytes, over decode.max_decoded_bytes="
                f"{self.limit}; raise it if such batches are expected",
                reason="too_large_decoded",
            )
        return nbytes
