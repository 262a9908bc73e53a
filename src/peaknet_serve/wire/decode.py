"""Turn one LCLStreamer message (in-memory HDF5 or NPZ bytes) into a ``FrameBatch``.

One message is one batch of B events. The image field becomes ``FrameBatch.images``
((B, H, W), or (B, P, H, W) for panel stacks; a (B, 1, H, W) channel axis is squeezed) in the
dtype it was sent in; every other field is per-event metadata carried through untouched, plus
``photon_energy_ev`` derived from the wavelength. Uncompressed payloads are decoded zero-copy:
the image is then a read-only view into the message buffer. ``hdf5_message`` and ``npz_message``
read the two formats, ``images`` checks and shapes the image field.

Every failure raises ``DecodeError`` with a stable ``reason`` label; no other exception escapes
``decode_message``, so the caller can count, quarantine and move on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from peaknet_serve.errors import DecodeError
from peaknet_serve.wire.config import DecodeConfig
from peaknet_serve.wire.hdf5_message import read_hdf5
from peaknet_serve.wire.images import shape_images
from peaknet_serve.wire.metadata import WAVELENGTH_KEY, derive
from peaknet_serve.wire.npz_message import read_npz

logger = logging.getLogger(__name__)

Payload = bytes | bytearray | memoryview

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")

#: h*c in eV*m, eV*nm and eV*Angstrom: E[eV] = HC[unit] / lambda[unit].
_HC_EV = {"m": 1.23984198e-6, "nm": 1239.84198, "angstrom": 12398.4198}


@dataclass(frozen=True, slots=True)
class FrameBatch:
    """A decoded message: B frames and their per-event metadata.

    Attributes:
        images: (B, H, W) or (B, P, H, W), original dtype; may be a read-only view of the message.
        metadata: field name -> array of length B. Always holds ``photon_energy_ev`` (float64,
            NaN where unknown) and ``photon_energy_source``; ``wavelength`` when sent,
            ``timestamp`` (uint64 ``(sec << 32) | ns``, see ``wire.metadata``) when sent; every
            other field under its name (the last component of its HDF5 path, or its NPZ key).
        original_shape: the NPZ ``<image>_original_shape`` ([B, C, H_orig, W_orig]) when sent.
    """

    images: np.ndarray
    metadata: dict[str, np.ndarray]
    original_shape: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])


def decode_message(payload: Payload, config: DecodeConfig | None = None) -> FrameBatch:
    """Decode one message; raises ``DecodeError`` (and only that) when it cannot.

    The size limits of ``config`` are checked against every array's declared shape and dtype
    before it is read; ``None`` means LCLStreamer's defaults.
    """
    cfg = config or DecodeConfig()
    try:
        buf = memoryview(payload).cast("B")
    except TypeError as exc:
        raise DecodeError(
            f"message is a {type(payload).__name__}, not a bytes-like buffer", reason="not_bytes"
        ) from exc
    size = buf.nbytes
    if size > cfg.max_message_bytes:
        raise DecodeError(
            f"message of {size} bytes exceeds max_message_bytes={cfg.max_message_bytes}; "
            "raise decode.max_message_bytes if such batches are expected",
            reason="too_large",
        )
    if size == 0:
        raise DecodeError("empty message (0 bytes)", reason="empty")
    fmt = _detect_format(buf, cfg.format)
    try:
        if fmt == "hdf5":
            arrays, original_shape = read_hdf5(buf, cfg), None
        else:
            arrays, original_shape = read_npz(buf, cfg)
        return _assemble(arrays, original_shape, cfg)
    except DecodeError:
        raise
    except Exception as exc:  # the decode boundary: nothing but DecodeError may escape
        raise DecodeError(
            f"{fmt} message of {size} bytes could not be decoded: {type(exc).__name__}: {exc}",
            reason="corrupt",
        ) from exc


def _detect_format(buf: memoryview, wanted: str) -> str:
    head = bytes(buf[:8])
    found = (
        "hdf5"
        if head.startswith(HDF5_SIGNATURE)
        else "npz"
        if head.startswith(ZIP_SIGNATURES)
        else None
    )
    if wanted != "auto" and found != wanted:
        raise DecodeError(
            f"message is not {wanted.upper()} (first bytes {head!r}); "
            "check the pusher's serializer or set decode.format",
            reason=f"not_{wanted}",
        )
    if found is None:
        raise DecodeError(
            f"message is neither HDF5 nor NPZ (first bytes {head!r})", reason="unknown_format"
        )
    return found


# --- assembly --------------------------------------------------------------------------------


def _assemble(
    arrays: dict[str, np.ndarray], original_shape: tuple[int, ...] | None, cfg: DecodeConfig
) -> FrameBatch:
    images = shape_images(arrays.pop("__image__"), original_shape)
    batch = images.shape[0]
    for key, value in arrays.items():
        if value.ndim == 0 or value.shape[0] != batch:
            raise DecodeError(
                f"metadata field {key!r} has shape {value.shape}, expected {batch} events "
                f"like the image {images.shape}",
                reason="length_mismatch",
            )
    metadata = dict(arrays)
    energy = photon_energy_ev(arrays.get(WAVELENGTH_KEY), unit=cfg.wavelength_unit, batch=batch)
    derive(metadata, energy, cfg)
    return FrameBatch(images=images, metadata=metadata, original_shape=original_shape)


def photon_energy_ev(wavelength: np.ndarray | None, *, unit: str, batch: int) -> np.ndarray:
    """E[eV] = hc / lambda, float64, NaN where lambda is missing, non-finite or <= 0."""
    if wavelength is None:
        return np.full(batch, np.nan)
    try:
        lam = np.asarray(wavelength, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DecodeError(
            f"wavelength field of dtype {wavelength.dtype} is not numeric", reason="bad_metadata"
        ) from exc
    if lam.ndim != 1:
        raise DecodeError(
            f"wavelength has shape {lam.shape}, expected ({batch},)", reason="length_mismatch"
        )
    good = np.isfinite(lam) & (lam > 0)
    return np.where(good, _HC_EV[unit] / np.where(good, lam, 1.0), np.nan)
