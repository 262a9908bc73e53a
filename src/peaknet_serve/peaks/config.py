"""Configuration of peak finding (``peaks``) and of the hit rule (``hits``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, FiniteFloat, model_validator

from peaknet_serve._section import Section, check_order


class PeaksConfig(Section):
    """Which pixels count, and how a segmentation mask and its frame become a list of peaks.

    Invalid pixels (NaN or inf, above ``flag_morethan``, below ``flag_lessthan``, or in the
    bad-pixel mask) are left out of the model's per-frame normalisation, shown to the model as
    the frame's mean, never part of a peak and never background samples. Components are
    8-connected per panel. The local background of each peak is the median of pixels sampled on
    rings around it (pixels of other peaks and invalid pixels excluded); its noise is 1.4826
    times their median absolute deviation, at least ``noise_floor``.
    """

    centroid: Literal["weighted", "unweighted"] = Field(
        default="weighted",
        description="'weighted': intensity-weighted centre after local background subtraction "
        "(as peakfinder8); 'unweighted': mean pixel position of the mask component.",
    )
    min_pixels: int = Field(
        default=2,
        ge=1,
        description="Drop components with fewer pixels. It does not drop hot pixels: the model "
        "marks a hot pixel as a component of 10-13 pixels; list them in bad_pixel_mask.",
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
    flag_morethan: float | None = Field(
        default=None,
        description="Pixels whose raw value (ADU) is greater than this are invalid, as "
        "CrystFEL's flag_morethan: for a detector's gap or dead-pixel sentinel (uint32 "
        "0xFFFFFFFF gaps: 4294967294), not for saturation, which would drop the strongest "
        "reflections (CrystFEL marks saturation with max_adu). null: no upper limit.",
    )
    flag_lessthan: float | None = Field(
        default=None,
        description="Pixels whose raw value (ADU) is less than this are invalid, as CrystFEL's "
        "flag_lessthan (e.g. -999, a fill value for missing integer data). null: no floor.",
    )
    max_invalid_fraction: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="A frame with more invalid pixels than this fraction (or with no valid pixel "
        "at all) fails as 'invalid_pixels' and is quarantined.",
    )
    min_snr: float | None = Field(
        default=3.0,
        ge=0,
        allow_inf_nan=False,
        description="Drop peaks whose SNR, total_intensity / (noise x sqrt(n_pixels)) against "
        "the background ring, is below this; a NaN SNR never passes; null: no cut (needed with "
        "background 'none', which has no SNR). On pattern_sim lysozyme frames the "
        "peaks below 3 are noise and those above are reflections (docs/accuracy.md). "
        "peakfinder8's SNR is total / noise, sqrt(n_pixels) times larger.",
    )
    noise_floor: float = Field(
        default=1.0,
        gt=0,
        allow_inf_nan=False,
        description="Least noise (ADU) of a peak's SNR: the ring's noise estimate is raised to "
        "this. Set it to one photon in ADU (the geometry's adu_per_photon): on dark frames the "
        "ring's noise is 0 and a peak of single-photon pixels would otherwise pass any min_snr.",
    )
    min_res: float | None = Field(
        default=None,
        ge=0,
        allow_inf_nan=False,
        description="Drop peaks closer than this to the beam centre, in pixels (peakfinder8's "
        "min_res). Needs 2-D (H, W) frames: every (P, H, W) panel-stack frame fails as "
        "peak_finding (a geometry is needed for a beam centre). null: no limit.",
    )
    max_res: float | None = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        description="Drop peaks farther than this from the beam centre, in pixels (peakfinder8's "
        "max_res). Needs 2-D (H, W) frames: every (P, H, W) panel-stack frame fails as "
        "peak_finding. null: no limit.",
    )
    beam_center: tuple[FiniteFloat, FiniteFloat] | None = Field(
        default=None,
        description="Beam centre (fs, ss) in pixels of the 2-D frame, for min_res/max_res; null: "
        "the frame's centre ((W - 1) / 2, (H - 1) / 2).",
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
        check_order(self, "min_pixels", "max_pixels")
        if self.background == "none" and self.min_snr is not None:
            raise ValueError("min_snr needs background 'ring' (without it there is no SNR); "
                             "set min_snr: null")
        check_order(self, "min_res", "max_res", strict=True)
        check_order(self, "flag_lessthan", "flag_morethan", why="no pixel would be valid")
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
        check_order(self, "min_peaks", "max_peaks")
        return self
