"""Named model configurations, read from the YAML files shipped in ``peaknet_serve/presets/``."""

from __future__ import annotations

import importlib.resources
import logging
from importlib.resources.abc import Traversable

import yaml
from pydantic import ValidationError

from peaknet_serve.errors import ConfigError
from peaknet_serve.model.config import PeakNetConfig

logger = logging.getLogger(__name__)

_SUFFIX = ".yaml"


def _preset_dir() -> Traversable:
    return importlib.resources.files("peaknet_serve") / "presets"


def preset_names() -> list[str]:
    """Names of the shipped presets (the YAML file stems), sorted."""
    return sorted(
        entry.name.removesuffix(_SUFFIX)
        for entry in _preset_dir().iterdir()
        if entry.is_file() and entry.name.endswith(_SUFFIX)
    )


def load_preset(name: str) -> PeakNetConfig:
    """The model configuration of the preset ``name`` (e.g. ``"peaknet-standard"``).

    Raises:
        ConfigError: no such preset, or its file is not a valid PeakNet config.
    """
    resource = _preset_dir() / f"{name}{_SUFFIX}"
    if not resource.is_file():
        raise ConfigError(f"unknown model preset {name!r}; choose one of {preset_names()}")
    try:
        data = yaml.safe_load(resource.read_text(encoding="utf-8"))
        config = PeakNetConfig.model_validate(data)
    except (yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(f"model preset {name!r} ({resource}) is invalid: {exc}") from exc
    logger.debug("loaded model preset %s: %s", name, config)
    return config
