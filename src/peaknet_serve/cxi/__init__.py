"""CXI files of hits, laid out as CrystFEL and OM expect them."""

from __future__ import annotations

from peaknet_serve.cxi.config import CXIConfig
from peaknet_serve.cxi.geometry import Geometry, read_geometry
from peaknet_serve.cxi.geometry_bad_pixels import bad_pixel_mask, geometry_bad_pixels
from peaknet_serve.cxi.layout import PanelLayout, panel_extents
from peaknet_serve.cxi.writer import CXIWriter

__all__ = [
    "CXIConfig",
    "CXIWriter",
    "Geometry",
    "PanelLayout",
    "bad_pixel_mask",
    "geometry_bad_pixels",
    "panel_extents",
    "read_geometry",
]
