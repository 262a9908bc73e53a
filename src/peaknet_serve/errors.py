"""The exceptions peaknet-serve raises.

One base class so callers can catch everything of ours in one place; each subclass names a kind of
failure that the service counts separately.
"""

from __future__ import annotations


class PeakNetServeError(Exception):
    """Base class of every error raised by peaknet-serve."""


class ConfigError(PeakNetServeError):
    """A configuration file or mapping is invalid; the message names the section and the key."""


class CheckpointError(PeakNetServeError):
    """A weights file is missing, unreadable, or does not match the model's state_dict keys."""


class DecodeError(PeakNetServeError):
    """A received message could not be turned into a frame batch.

    Attributes:
        reason: a short, stable label (``"not_hdf5"``, ``"too_large"``...) used as a metric label.
    """

    def __init__(self, message: str, *, reason: str = "undecodable") -> None:
        super().__init__(message)
        self.reason = reason


class WriterError(PeakNetServeError):
    """Events could not be written to disk (permission, disk full, closed file)."""


class InvalidFrameError(PeakNetServeError):
    """A frame holds no valid pixel, or more invalid ones than ``peaks.max_invalid_fraction``."""
