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
    non-negative integers and ``reason="unsupported_dtype"`` for a dtype numpy cannot size or of
    zero bytes per element (``|V0``, ``|S0``: no data, yet ``2**40`` of them take as long to index).
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
        if itemsize == 0:  # sized 0 whatever its shape, yet indexing it walks every element
            raise DecodeError(
                f"array {name} has a dtype of zero bytes per element ({np.dtype(dtype)}): it "
                "holds no data",
                reason="unsupported_dtype",
            )
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

    def take_chunk(
        self, name: str, shape: Sequence[int] | None, chunks: Sequence[int] | None, dtype: Any
    ) -> None:
        """Charge what one chunk of the chunked array ``name`` needs beyond the array itself.

        HDF5 reads a chunked dataset a whole chunk at a time, inflating it into a buffer of the
        chunk's size whatever the dataset's shape: a (2, 1, 64, 64) dataset stored in 1 GiB
        chunks allocates 1 GiB. A chunk no bigger than its dataset is covered by ``take``; the
        excess of a bigger one is charged. Call after ``take`` of every array. Raises
        ``DecodeError(reason="too_large_chunk")``.
        """
        if not chunks or shape is None:
            return
        itemsize = np.dtype(dtype).itemsize
        chunk_bytes, array_bytes = itemsize, itemsize
        for c, d in zip(chunks, shape, strict=False):
            chunk_bytes *= int(c)
            array_bytes *= int(d)
        self.spent += max(0, chunk_bytes - array_bytes)
        if self.spent > self.limit:
            raise DecodeError(
                f"array {name} of shape {tuple(shape)} is stored in chunks of {tuple(chunks)} "
                f"({chunk_bytes} bytes, inflated whole to read any of it), which takes the "
                f"message to {self.spent} decoded bytes, over decode.max_decoded_bytes="
                f"{self.limit}",
                reason="too_large_chunk",
            )


def check_count(kind: str, count: int, limit: int) -> None:
    """Refuse a message with more than ``limit`` datasets or members (``decode.max_fields``),
    before any is read: each costs a lookup and becomes a metadata field and a CXI dataset.
    Raises ``DecodeError(reason="too_many_fields")``."""
    if count > limit:
        raise DecodeError(
            f"message has more than {limit} {kind}; LCLStreamer sends a handful of fields per "
            "batch (raise decode.max_fields if a pusher really sends more)",
            reason="too_many_fields",
        )


def check_local_storage(name: str, external: Any, is_virtual: bool) -> None:
    """Refuse an HDF5 dataset whose data lives outside the message: external raw storage
    (``dset.external``) or a virtual dataset (``dset.is_virtual``) would make the decoder read
    files of the ingress's host named by the sender. Raises
    ``DecodeError(reason="external_storage")``."""
    if external or is_virtual:
        kind = "virtual dataset" if is_virtual else f"external storage {external!r}"
        raise DecodeError(
            f"dataset {name} reads outside the message ({kind}); refused",
            reason="external_storage",
        )


def check_chunk_count(
    name: str, shape: Sequence[int] | None, chunks: Sequence[int] | None, limit: int
) -> None:
    """Refuse a chunked array that declares more than ``limit`` chunks (``decode.max_chunks``).

    HDF5 keeps a few kB of bookkeeping per chunk of the selection while it reads a dataset, stored
    or not: a 2 kB message declaring a (16, 1, 256, 256) image in one-pixel chunks (1M chunks)
    takes 4 GB. The count is the declared one, prod(ceil(shape / chunks)). LCLStreamer chunks per
    event, so its datasets have B chunks. Raises ``DecodeError(reason="too_many_chunks")``.
    """
    if not chunks or shape is None:
        return
    count = 1
    for c, d in zip(chunks, shape, strict=False):
        count *= -(-int(d) // max(int(c), 1))
    if count > limit:
        raise DecodeError(
            f"array {name} of shape {tuple(shape)} is stored in chunks of {tuple(chunks)}: "
            f"{count} chunks, over decode.max_chunks={limit} (HDF5 spends kilobytes per chunk "
            "to read them); raise it if a pusher really chunks this finely",
            reason="too_many_chunks",
        )
