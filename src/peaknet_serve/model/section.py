"""The ``model:`` section of the service configuration: which PeakNet, with which weights."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from peaknet_serve._section import Section
from peaknet_serve.model.config import InputConfig, PeakNetConfig
from peaknet_serve.model.presets import load_preset, preset_names

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
