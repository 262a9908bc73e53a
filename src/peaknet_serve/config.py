"""The service configuration: the library's sections, composed and validated once at the edge.

Each section is defined by the package that uses it; this module only puts them together, checks
what spans sections (a bad-pixel mask or a geometry against the warm-up shapes) and reads files.
The same mapping is the ``args:`` of ``serve_config.yaml``'s application and the input of
``LocalPipeline.from_config``; errors name the section and the key, e.g. ``peaks.min_pixels``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, model_validator

from peaknet_serve._section import Section
from peaknet_serve.cxi.config import CXIConfig
from peaknet_serve.cxi.geometry import read_geometry
from peaknet_serve.cxi.layout import PanelLayout
from peaknet_serve.engine.config import EngineConfig, WarmupConfig
from peaknet_serve.errors import ConfigError
from peaknet_serve.model.section import ModelSection
from peaknet_serve.peaks.badpixels import check_bad_pixel_mask
from peaknet_serve.peaks.config import HitConfig, PeaksConfig
from peaknet_serve.profiling import ProfilingConfig
from peaknet_serve.service.config import IngressConfig
from peaknet_serve.wire.config import DecodeConfig, SourceConfig


class ServiceConfig(Section):
    """Everything the data path needs, from the socket to the CXI file."""

    source: SourceConfig = Field(default_factory=SourceConfig, description="Sockets to pull.")
    decode: DecodeConfig = Field(default_factory=DecodeConfig, description="Message decoding.")
    model: ModelSection = Field(description="PeakNet architecture, weights and input handling.")
    engine: EngineConfig = Field(default_factory=EngineConfig, description="Inference engine.")
    peaks: PeaksConfig = Field(default_factory=PeaksConfig, description="Peak finding.")
    hits: HitConfig = Field(default_factory=HitConfig, description="The hit rule.")
    output: CXIConfig = Field(default_factory=CXIConfig, description="CXI files.")
    quarantine_dir: Path | None = Field(
        default=None, description="Where undecodable messages are saved with their reason."
    )
    ingress: IngressConfig = Field(default_factory=IngressConfig, description="Ingress flow.")
    warmup: WarmupConfig = Field(default_factory=WarmupConfig, description="Model warm-up.")
    profiling: ProfilingConfig = Field(
        default_factory=ProfilingConfig, description="torch.profiler traces of a few batches."
    )

    @model_validator(mode="after")
    def _bad_pixel_mask_fits(self) -> ServiceConfig:
        """A missing or unreadable ``peaks.bad_pixel_mask``, one that does not fit
        ``warmup.frame_shapes``, or resolution limits with panel-stack warm-up shapes are
        refused here rather than failing every frame later."""
        peaks = self.peaks
        if peaks.bad_pixel_mask is not None:
            try:
                check_bad_pixel_mask(
                    peaks.bad_pixel_mask,
                    self.warmup.frame_shapes,
                    key=peaks.bad_pixel_mask_key,
                    convention=peaks.bad_pixel_mask_convention,
                )
            except ConfigError as exc:
                raise ValueError(str(exc)) from exc
        stacks = [shape for shape in self.warmup.frame_shapes if len(shape) == 3]
        if (peaks.min_res is not None or peaks.max_res is not None) and stacks:
            raise ValueError(
                f"peaks.min_res/max_res need 2-D frames; warmup.frame_shapes has panel stacks "
                f"{stacks}"
            )
        return self

    @model_validator(mode="after")
    def _geometry_fits_the_warmup_shapes(self) -> ServiceConfig:
        """A geometry that cannot fit ``warmup.frame_shapes`` is refused at start, not at the
        first batch."""
        if self.output.geometry_file is not None and self.warmup.frame_shapes:
            geometry = read_geometry(self.output.geometry_file)
            for shape in self.warmup.frame_shapes:
                try:
                    PanelLayout.for_frames(geometry, tuple(shape))
                except ConfigError as exc:
                    raise ValueError(f"output.geometry_file does not fit warmup.frame_shapes "
                                     f"{list(shape)}: {exc}") from exc
        return self


def format_validation_error(error: ValidationError, *, prefix: str = "") -> str:
    """One line per problem, each naming the dotted key, so a YAML typo is found at once."""
    lines = []
    for problem in error.errors():
        key = ".".join(str(part) for part in problem["loc"])
        lines.append(f"  {prefix}{key}: {problem['msg']}")
    return "invalid configuration:\n" + "\n".join(lines)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML file, or a ConfigError that names the file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"configuration file {path} does not exist") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"configuration file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"configuration file {path} must hold a mapping at the top level")
    return data


def service_mapping(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """The service keys of a mapping: itself, or the first application's ``args`` of a Serve
    config (so ``serve_config.yaml`` itself can be given to the library)."""
    if "applications" in data:
        applications = data["applications"]
        if not applications or "args" not in applications[0]:
            raise ConfigError("the Serve config's first application has no 'args'")
        return applications[0]["args"]
    return data


def load_service_config(source: str | Path | Mapping[str, Any]) -> ServiceConfig:
    """A validated ServiceConfig from a YAML file (service keys or a Serve config) or a mapping."""
    data = read_yaml(source) if isinstance(source, str | Path) else source
    try:
        return ServiceConfig.model_validate(service_mapping(data))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from exc
