"""Invalid pixels, peaks from PeakNet's segmentation mask, and the hit rule."""

from __future__ import annotations

from peaknet_serve.peaks.badpixels import fit_bad_pixels, load_bad_pixel_mask
from peaknet_serve.peaks.config import HitConfig, PeaksConfig
from peaknet_serve.peaks.find import PeakFinder, Peaks, find_peaks
from peaknet_serve.peaks.hits import Judged, is_hit
from peaknet_serve.peaks.invalid import (
    BAD_PIXEL_MASK,
    INVALID_PIXELS,
    BadPixels,
    ExtraBadPixels,
    PixelScreen,
    Screened,
    invalid_values,
)

__all__ = [
    "BAD_PIXEL_MASK",
    "INVALID_PIXELS",
    "BadPixels",
    "ExtraBadPixels",
    "HitConfig",
    "Judged",
    "PeakFinder",
    "Peaks",
    "PeaksConfig",
    "PixelScreen",
    "Screened",
    "find_peaks",
    "fit_bad_pixels",
    "invalid_values",
    "is_hit",
    "load_bad_pixel_mask",
]
