"""The inference engine: N-way buffered PeakNet inference from numpy frames to uint8 masks."""

from __future__ import annotations

from peaknet_serve.engine.affinity import AffinityChoice, pin_process_near
from peaknet_serve.engine.compile_cache import configure_compile_cache
from peaknet_serve.engine.config import EngineConfig, WarmupConfig
from peaknet_serve.engine.engine import InferenceEngine, resolve_device, resolve_dtype
from peaknet_serve.engine.health import GPUHealth, GPUHealthError, is_device_error
from peaknet_serve.engine.staging import StagingStats

__all__ = [
    "AffinityChoice",
    "EngineConfig",
    "GPUHealth",
    "GPUHealthError",
    "InferenceEngine",
    "StagingStats",
    "WarmupConfig",
    "configure_compile_cache",
    "is_device_error",
    "pin_process_near",
    "resolve_device",
    "resolve_dtype",
]
