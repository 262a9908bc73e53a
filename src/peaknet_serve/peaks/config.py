"""Configuration of peak finding (``peaks``) and of the hit rule (``hits``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from peaknet_serve._section import Section


class PeaksConfig(Section):
    """How a segmentation mask and its frame become a list of peaks.

    Components are 8-connected per panel. The local background of each peak is the median of
    pixels sampled on rings around it (pixels of other peaks and bad pixels excluded); its noise
    is 1.4826 times their median absolute deviation.
    """

    centroid: Literal["weighted", "unweighted"] = Field(
        default="weighted",
        description="'weighted': intensity-weighted centre after local background subtraction "
        "(as peakfinder8); 'unweighted': mean pixel position of the mask component.",
    )
    min_pixels: int = Field(
        default=2, ge=1, description="Drop components with fewer pixels (single hot pixels)."
    )
    max_pixels: int | None = Field(
        default=500, ge=1, description="Drop components with more pixels; null for no limit."
    )
    max_peaks: int = Field(
        default=2048, ge=1, description="Keep at most this many peaks per frame, the strongest."
    )
    bad_pixel_mask: str | None = Field(
        default=None,
        description="Bad-pixel mask file: HDF5 (.h5/.hdf5/.cxi) or NumPy (.npy/.npz), shaped like "
        "the frame, (H, W) or (P, H, W), or the (P*H, W) slab of a panel stack.",
    )
    bad_pixel_mask_key: str | None = Field(
        default=None,
        description="HDF5 dataset path (default '/data/data', the Cheetah/OM convention) or .npz "
        "array name (default: the file's only array).",
    )
    bad_pixel_mask_convention: Literal["nonzero_good", "nonzero_bad"] = Field(
        default="nonzero_good",
        description="'nonzero_good': 1 marks good pixels, 0 bad (Cheetah, OM, psana); "
        "'nonzero_bad': nonzero marks bad pixels.",
    )
    bad_pixel_margin: int = Field(
        default=1,
        ge=0,
        description="Grow bad pixels by this many pixels before the check: 1 drops peaks that "
        "touch a bad pixel, 0 only peaks that contain one.",
    )
    background: Literal["ring", "none"] = Field(
        default="ring",
        description="'ring': local background and noise from rings around each peak; 'none': no "
        "subtraction (totals are raw sums, SNR is NaN).",
    )
    background_offset: float = Field(
        default=2.0,
        ge=0.5,
        description="Gap in pixels between a peak's equivalent radius sqrt(n_pixels/pi) and its "
        "innermost background ring.",
    )
    background_rings: int = Field(
        default=2, ge=1, le=8, description="Number of background rings, one pixel apart."
    )
    background_samples: int = Field(
        default=16, ge=4, le=64, description="Pixels sampled per background ring."
    )

    @model_validator(mode="after")
    def _pixel_range(self) -> PeaksConfig:
        if self.max_pixels is not None and self.max_pixels < self.min_pixels:
            raise ValueError("max_pixels must be >= min_pixels (or null)")
        return self


class HitConfig(Section):
    """The hit rule: a frame is a hit when ``min_peaks <= n_peaks <= max_peaks``.

    OM uses strict inequalities with 8 and 5000; the SLAC writer used 10. ``n_peaks`` is the count
    before the ``peaks.max_peaks`` cap, so a frame full of junk does not pass as a hit.
    """

    min_peaks: int = Field(default=10, ge=0, description="Fewest peaks for a hit (inclusive).")
    max_peaks: int = Field(default=5000, ge=0, description="Most peaks for a hit (inclusive).")

    @model_validator(mode="after")
    def _range(self) -> HitConfig:
        if self.max_peaks < self.min_peaks:
            raise ValueError("max_peaks must be >= min_peaks")
        return self
