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

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DecodeError",
    "PeakNetServeError",
    "WriterError",
    "__version__",
]
