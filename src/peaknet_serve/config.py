"""The service configuration: every section of the library, validated once at the edge.

The same mapping is the ``args:`` of ``serve_config.yaml``'s application and the input of
``LocalPipeline.from_config``; errors name the section and the key, e.g. ``peaks.min_pixels``.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from peaknet_serve._section import Section
from peaknet_serve.cxi.config import CXIConfig
from peaknet_serve.cxi.geometry import read_geometry
from peaknet_serve.cxi.layout import PanelLayout
from peaknet_serve.engine.config import EngineConfig, WarmupConfig
from peaknet_serve.errors import ConfigError
from peaknet_serve.model.config import InputConfig, PeakNetConfig
from peaknet_serve.model.presets import load_preset, preset_names
from peaknet_serve.peaks.badpixels import check_bad_pixel_mask
from peaknet_serve.peaks.config import HitConfig, PeaksConfig
from peaknet_serve.profiling import ProfilingConfig
from peaknet_serve.wire.config import DecodeConfig, SourceConfig

BUILTIN_WEIGHTS_PREFIX = "builtin:"
"""``weights: builtin:NAME`` names weights shipped in ``peaknet_serve/weights/NAME.safetensors``."""


def builtin_weights_path(name: str) -> Path:
    """Path of the shipped weights ``name`` (``peaknet-demo``: synthetic data only)."""
    return Path(str(importlib.resources.files("peaknet_serve") / "weights" / f"{name}.safetensors"))


class ModelSection(Section):
    """Which PeakNet to run and with which weights.

    A weights file is required: a missing one is an error, never a silently random model. Random
    weights exist only for plumbing tests, and only when asked for with ``random_weights_seed``.
    """

    preset: str | None = Field(
        default="peaknet-demo",
        description="Named architecture from peaknet_serve/presets/*.yaml; null to use "
        "'architecture' instead.",
    )
    architecture: PeakNetConfig | None = Field(
        default=None, description="Explicit architecture keys; overrides 'preset' when given."
    )
    weights: Path | None = Field(
        default=None,
        description="State-dict file (.pt/.bin from torch.save, or .safetensors), or "
        "'builtin:peaknet-demo' for the shipped demo weights (synthetic frames only).",
    )
    random_weights_seed: int | None = Field(
        default=None,
        description="Use random weights from this seed instead of a file (plumbing tests only: "
        "the peaks found are meaningless).",
    )
    inputs: InputConfig = Field(
        default_factory=InputConfig, description="Normalisation and padding of the frames."
    )

    @field_validator("weights", mode="before")
    @classmethod
    def _builtin_weights(cls, value: object) -> object:
        if isinstance(value, str) and value.startswith(BUILTIN_WEIGHTS_PREFIX):
            name = value.removeprefix(BUILTIN_WEIGHTS_PREFIX)
            path = builtin_weights_path(name)
            if not path.is_file():
                raise ValueError(f"no built-in weights {name!r} (looked for {path})")
            return path
        return value

    @model_validator(mode="after")
    def _one_source_of_weights(self) -> ModelSection:
        if self.architecture is None and self.preset is None:
            raise ValueError("give 'preset' or 'architecture'")
        if self.preset is not None and self.preset not in preset_names():
            raise ValueError(f"unknown preset {self.preset!r}; known: {preset_names()}")
        if (self.weights is None) == (self.random_weights_seed is None):
            raise ValueError(
                "give exactly one of 'weights' (a checkpoint file) or 'random_weights_seed' "
                "(random weights, for plumbing tests only)"
            )
        return self

    def resolve_architecture(self) -> PeakNetConfig:
        if self.architecture is not None:
            return self.architecture
        assert self.preset is not None
        return load_preset(self.preset)


class IngressConfig(Section):
    """How the ingress pulls and keeps batches moving (used by the Serve application)."""

    max_in_flight_batches: int = Field(
        default=4,
        ge=1,
        description="Batches sent on and not yet written; while full the socket is not read, so "
        "the pusher blocks instead of anything being dropped.",
    )
    request_timeout_s: float = Field(
        default=300.0, gt=0, description="Longest wait for one batch through model and writer."
    )
    max_retries: int = Field(
        default=2, ge=0, description="Retries of a batch whose model or writer replica died."
    )
    drain_timeout_s: float = Field(
        default=60.0, gt=0, description="On shutdown, how long to wait for batches in flight."
    )
    write_retry_timeout_s: float = Field(
        default=120.0,
        ge=0,
        description="How long a batch whose write failed (disk full, permissions) is retried "
        "before it is quarantined and counted failed; it holds its in-flight slot meanwhile, so "
        "the pusher is slowed instead of frames piling up.",
    )
    write_retry_interval_s: float = Field(
        default=2.0, gt=0, description="Wait between two attempts to write a batch."
    )
    quarantine_max_batches: int = Field(
        default=100,
        ge=0,
        description="Failed batches saved raw (NPZ + reason) under quarantine_dir/batches; "
        "past it they are only counted.",
    )
    quarantine_max_bytes: int = Field(
        default=1024**3,
        ge=0,
        description="Most bytes of saved messages, and of saved batches, in quarantine_dir; "
        "like the count bounds it counts what is on disk, so it holds across replicas.",
    )
    control_token_env: str = Field(
        default="PEAKNET_SERVE_TOKEN",
        min_length=1,
        description="Environment variable holding the bearer token that POST /pause and "
        "/resume require; unset or empty = no token required. Never put the token in YAML.",
    )


class BatchingConfig(Section):
    """Dynamic batching of the PeakNet deployment: its ``user_config``, changeable at run time."""

    max_batch_frames: int = Field(
        default=16,
        ge=1,
        description="Most frames per model call; messages with more frames are split.",
    )
    batch_wait_timeout_s: float = Field(
        default=0.005, ge=0, description="How long a partial batch waits for more frames."
    )


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
