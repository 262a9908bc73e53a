"""Model loading shared by the service and offline use, and ``LocalPipeline`` (no Ray)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from peaknet_serve.config import ModelSection, ServiceConfig, load_service_config
from peaknet_serve.engine import InferenceEngine
from peaknet_serve.model import build_peaknet, load_weights
from peaknet_serve.peaks import Peaks, find_peaks

logger = logging.getLogger(__name__)


def load_model(section: ModelSection) -> torch.nn.Module:
    """PeakNet from ``model.preset``/``model.architecture`` with ``model.weights`` loaded strictly.

    With ``model.random_weights_seed`` instead of weights, the parameters are random (logged as a
    warning): the service runs, but the peaks it finds mean nothing.
    """
    architecture = section.resolve_architecture()
    if section.random_weights_seed is not None:
        torch.manual_seed(section.random_weights_seed)
        model = build_peaknet(architecture)
        logger.warning(
            "PeakNet has RANDOM weights (seed %d): peaks found are meaningless",
            section.random_weights_seed,
        )
    else:
        assert section.weights is not None
        model = build_peaknet(architecture)
        load_weights(model, section.weights)
        logger.info("PeakNet weights loaded from %s", section.weights)
    return model.eval()


class LocalPipeline:
    """The service's model, engine and peak finding in this process, without Ray.

    For notebooks and offline reprocessing. ``process`` blocks; the engine's ``async`` API runs
    on a private event loop in its own thread, so it also works where a loop is already running
    (Jupyter). Use it as a context manager, or call ``close``.

    Config sections used: ``model``, ``engine``, ``peaks``, ``hits`` (the rest of a service
    config is validated and ignored).
    """

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self._engine = InferenceEngine.from_config(
            load_model(config.model), config.engine, config.model.inputs
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="local-pipeline-loop", daemon=True
        )
        self._thread.start()

    @classmethod
    def from_config(
        cls, path_or_mapping: str | Path | Mapping[str, Any] | None = None
    ) -> LocalPipeline:
        """A pipeline from the service's config format.

        Args:
            path_or_mapping: a YAML file (the service keys, or a whole ``serve_config.yaml``),
                or the same as a mapping; None for the ``peaknet-demo`` preset with the shipped
                weights and every other section at its defaults.

        Raises:
            ConfigError: the configuration is invalid.
            CheckpointError: the weights file is missing or does not fit the model.
        """
        if path_or_mapping is None:
            path_or_mapping = {
                "model": {"preset": "peaknet-demo", "weights": "builtin:peaknet-demo"}
            }
        return cls(load_service_config(path_or_mapping))

    def masks(self, images: np.ndarray) -> np.ndarray:
        """uint8 peak masks (1 = peak) of ``images``, (B, H, W) or (B, P, H, W)."""
        future = asyncio.run_coroutine_threadsafe(self._engine.infer(images), self._loop)
        return future.result()

    def process(self, images: np.ndarray) -> list[Peaks]:
        """The peaks of each frame of ``images``.

        Args:
            images: (B, H, W) frames, or (B, P, H, W) panel stacks; any integer or float dtype.

        Returns:
            One ``Peaks`` per frame; ``is_hit(peaks.n_found, pipeline.config.hits)`` is the
            service's hit rule.
        """
        images = np.asarray(images)
        if images.ndim not in (3, 4):
            raise ValueError(
                f"expected a batch of frames (B, H, W) or (B, P, H, W), got shape {images.shape}; "
                "add a leading axis for a single frame"
            )
        masks = self.masks(images)
        return [
            find_peaks(mask, image, self.config.peaks)
            for mask, image in zip(masks, images, strict=True)
        ]

    def close(self) -> None:
        """Stop the engine's threads and the private event loop."""
        self._engine.close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> LocalPipeline:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
