"""Which torch device and dtypes the engine uses: config strings and frame dtypes resolved once."""

from __future__ import annotations

import numpy as np
import torch

from peaknet_serve.errors import ConfigError, DecodeError

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
DTYPE_NAMES = {v: k for k, v in _DTYPES.items()}
"""Config name of each compute dtype, for ``InferenceEngine.describe``."""


def resolve_device(name: str) -> torch.device:
    """The torch device for an ``EngineConfig.device`` string; "auto" prefers CUDA.

    Raises:
        ConfigError: CUDA was asked for but is not available, or the index does not exist.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        raise ConfigError(
            f"engine.device={name!r} but torch sees no CUDA device; use 'cpu' or 'auto'"
        )
    count = torch.cuda.device_count()
    index = torch.cuda.current_device() if device.index is None else device.index
    if index >= count:
        raise ConfigError(f"engine.device={name!r} but only {count} CUDA device(s) are visible")
    return torch.device("cuda", index)


def resolve_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The compute dtype for ``EngineConfig.precision`` on ``device``.

    Raises:
        ConfigError: fp16 on a CPU.
    """
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("engine.precision='fp16' needs a GPU; use 'fp32' or 'bf16' on a CPU")
    return _DTYPES[precision]


def frame_torch_dtype(dtype: np.dtype) -> torch.dtype:
    """The torch dtype that holds frames of numpy ``dtype`` as they are (native byte order).

    Raises:
        DecodeError: ``dtype`` is not an integer or float type torch can hold (reason bad_dtype).
    """
    if dtype.kind not in "uif":
        raise DecodeError(
            f"frames must be integers or floats, got dtype {dtype}", reason="bad_dtype"
        )
    try:
        return torch.from_numpy(np.empty(0, dtype=dtype.newbyteorder("="))).dtype
    except TypeError as exc:
        raise DecodeError(
            f"frames of dtype {dtype} are not supported; send uint16, int32, float32 or float64",
            reason="bad_dtype",
        ) from exc
