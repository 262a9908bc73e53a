"""Configuration of the CXI writer (``output``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from peaknet_serve._section import Section
from peaknet_serve.cxi.geometry import is_number, read_geometry
from peaknet_serve.errors import ConfigError

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class CXIConfig(Section):
    """Where and how hits are written as CXI files that CrystFEL and OM read.

    Files are named ``{file_prefix}-{writer_id}-{seq:05d}.cxi``; each is written as
    ``NAME.cxi.inprogress`` and renamed when it closes.
    """

    output_dir: str = Field(default="./output", description="Directory of the CXI files.")
    file_prefix: str = Field(
        default="peaknet",
        pattern=NAME_PATTERN,
        description="Start of every file name (letters, digits, '_', '.', '-').",
    )
    events_per_file: int = Field(
        default=1000, ge=1, description="Close the file and start the next after this many events."
    )
    compression: Literal["none", "gzip", "bitshuffle_lz4", "bitshuffle_zstd"] = Field(
        default="bitshuffle_lz4",
        description="Filter of the image and peak datasets. bitshuffle_* need hdf5plugin (or "
        "HDF5_PLUGIN_PATH) in the reader; 'gzip' is readable everywhere but costs ~10x the CPU.",
    )
    compression_level: int = Field(
        default=3,
        ge=0,
        le=22,
        description="gzip level (0-9) or zstd level (1-22); ignored by 'none' and lz4.",
    )
    write_mode: Literal["hits", "peaks", "all"] = Field(
        default="hits",
        description="'hits': image and peaks of hits; 'peaks': peaks of hits, no image dataset; "
        "'all': image and peaks of every event.",
    )
    max_peaks: int = Field(
        default=2048, ge=1, description="Peak slots per event (second dimension of peak arrays)."
    )
    geometry_file: str | None = Field(
        default=None,
        description="The detector's CrystFEL .geom (for 2-D, slab-layout data): its panels "
        "p{N}a{M} (or CSPAD's q{Q}a{A}) place panel N of a panel stack in the written 2-D array, "
        "and 'peaknet-serve geom' builds on it. Checked at start; null for Cheetah's slab "
        "(panel p at rows p*H).",
    )
    clen_field: str | None = Field(
        default=None,
        description="Per-event stream field holding the detector distance (as the decoder names "
        "it: the last part of its path, e.g. 'EncoderValue'); written to "
        "/LCLS/detector_1/EncoderValue, where 'peaknet-serve geom' points CrystFEL's clen.",
    )
    clen_unit: Literal["m", "mm"] = Field(
        default="mm", description="Unit of clen_field (the LCLS encoder reads mm)."
    )
    copy_large_fields: list[str] = Field(
        default_factory=list,
        description="Per-event images (2-D or more per event, at least one panel's pixels: an "
        "assembled image, a mask) copied to /LCLS all the same; other such fields are not.",
    )

    @field_validator("geometry_file")
    @classmethod
    def _geometry_readable(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                read_geometry(value)
            except ConfigError as exc:
                raise ValueError(str(exc)) from exc
        return value

    @model_validator(mode="after")
    def _level_in_range(self) -> CXIConfig:
        if self.compression == "gzip" and self.compression_level > 9:
            raise ValueError("compression_level for gzip must be 0-9")
        if self.compression == "bitshuffle_zstd" and self.compression_level < 1:
            raise ValueError("compression_level for zstd must be 1-22")
        if self.geometry_file is not None:
            clen = read_geometry(self.geometry_file).globals.get("clen")
            if clen is not None and not is_number(clen.text) and self.clen_field is None:
                raise ValueError(
                    f"{self.geometry_file} line {clen.line}: 'clen = {clen.text}': the detector "
                    "distance is read from the data files: set output.clen_field to the stream "
                    "field that holds it (e.g. 'EncoderValue'), or give clen in metres"
                )
        return self
