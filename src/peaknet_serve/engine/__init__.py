"""The inference engine: N-way buffered PeakNet inference from numpy frames to uint8 masks."""

from __future__ import annotations

from peaknet_serve.engine.config import EngineConfig
from peaknet_serve.engine.engine import InferenceEngine, resolve_device, resolve_dtype
from peaknet_serve.engine.staging import StagingStats

__all__ = [
    "EngineConfig",
    "InferenceEngine",
    "StagingStats",
    "resolve_device",
    "resolve_dtype",
]
