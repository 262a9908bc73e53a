"""The PeakNet model in plain PyTorch, its presets, weights files and input handling."""

from __future__ import annotations

from peaknet_serve.model.checkpoint import (
    check_state_dict,
    checkpoint_filter_fn,
    load_state_dict_file,
    load_weights,
    save_weights,
)
from peaknet_serve.model.config import InputConfig, PeakNetConfig
from peaknet_serve.model.peaknet import STRIDE, PeakNet, build_peaknet
from peaknet_serve.model.preprocess import (
    Crop,
    crop,
    mask_from_logits,
    padded_size,
    predict_mask,
    prepare_batch,
)
from peaknet_serve.model.presets import load_preset, preset_names

__all__ = [
    "STRIDE",
    "Crop",
    "InputConfig",
    "PeakNet",
    "PeakNetConfig",
    "build_peaknet",
    "check_state_dict",
    "checkpoint_filter_fn",
    "crop",
    "load_preset",
    "load_state_dict_file",
    "load_weights",
    "mask_from_logits",
    "padded_size",
    "predict_mask",
    "prepare_batch",
    "preset_names",
    "save_weights",
]
