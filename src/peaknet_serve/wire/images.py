"""The image field of a message: the dtypes accepted and its shape as a batch of frames."""

from __future__ import annotations

import numpy as np

from peaknet_serve.errors import DecodeError

#: Image dtypes accepted; anything else raises DecodeError(reason="unsupported_dtype").
IMAGE_DTYPES = frozenset(
    np.dtype(t) for t in ("uint8", "uint16", "int16", "uint32", "int32", "float32", "float64")
)


def native_dtype(dtype: np.dtype) -> np.dtype:
    """``dtype`` in this byte order (a big-endian ``>f4`` image is read as ``float32``)."""
    return dtype.newbyteorder("=") if dtype.byteorder in "<>" else dtype


def shape_images(images: np.ndarray, original_shape: tuple[int, ...] | None) -> np.ndarray:
    """The image as (B, H, W) or (B, P, H, W) in native byte order; a (B, 1, H, W) channel axis
    squeezed, a (B*C, 1, H, W) NPZ image reshaped to (B, C, H, W) by its ``original_shape``.

    Raises:
        DecodeError: unsupported dtype, a shape that is not a batch of frames, or no pixels.
    """
    if images.dtype != native_dtype(images.dtype) and native_dtype(images.dtype) in IMAGE_DTYPES:
        images = images.astype(native_dtype(images.dtype))  # a big-endian NPZ image: one copy
    if images.dtype not in IMAGE_DTYPES:
        raise DecodeError(
            f"image dtype {images.dtype} is not supported (use one of "
            f"{sorted(str(d) for d in IMAGE_DTYPES)})",
            reason="unsupported_dtype",
        )
    if original_shape is not None and images.ndim == 4 and images.shape[1] == 1:
        if len(original_shape) != 4 or original_shape[0] * original_shape[1] != images.shape[0]:
            raise DecodeError(
                f"original_shape {original_shape} does not match the image {images.shape}: "
                "expected [B, C, H, W] with B*C images",
                reason="bad_shape",
            )
        images = images.reshape(original_shape[:2] + images.shape[2:])
    if images.ndim == 4 and images.shape[1] == 1:
        images = images[:, 0]
    if images.ndim not in (3, 4):
        raise DecodeError(
            f"image has shape {images.shape}; expected (B, H, W), (B, 1, H, W) or (B, P, H, W)",
            reason="bad_rank",
        )
    if images.shape[0] == 0 or 0 in images.shape[-2:]:
        raise DecodeError(f"image batch {images.shape} holds no pixels", reason="empty_batch")
    return images
