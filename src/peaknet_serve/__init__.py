"""peaknet-serve: find Bragg peaks in streamed X-ray detector frames with PeakNet.

The library never imports Ray; the Serve deployments live in the separate ``deployments`` package.
"""

from __future__ import annotations

from peaknet_serve.errors import (
    CheckpointError,
    ConfigError,
    DecodeError,
    PeakNetServeError,
    WriterError,
)

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """``LocalPipeline`` is imported on first use: it pulls in torch and the engine."""
    if name == "LocalPipeline":
        from peaknet_serve.pipeline import LocalPipeline

        return LocalPipeline
    raise AttributeError(f"module 'peaknet_serve' has no attribute {name!r}")


__all__ = [
    "CheckpointError",
    "ConfigError",
    "DecodeError",
    "LocalPipeline",
    "PeakNetServeError",
    "WriterError",
    "__version__",
]
