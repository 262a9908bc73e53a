"""Model loading shared by the service and offline use, and ``LocalPipeline`` (no Ray)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from peaknet_serve.config import ServiceConfig, load_service_config
from peaknet_serve.cxi import geometry_bad_pixels
from peaknet_serve.engine import InferenceEngine
from peaknet_serve.errors import InvalidFrameError
from peaknet_serve.model import build_peaknet, load_weights
from peaknet_serve.model.section import ModelSection
from peaknet_serve.peaks import ExtraBadPixels, PeakFinder, Peaks, PixelScreen, is_hit

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


@dataclass(frozen=True, eq=False)
class FrameResult:
    """What the pipeline made of one frame.

    Attributes:
        peaks: its peaks (none for a failed frame).
        hit: whether the hit rule (``hits``) accepts ``peaks.n_found``.
        masked_pixels: invalid pixels (NaN/inf, flag_morethan/flag_lessthan, bad-pixel mask).
        failure: None, or why the frame failed (reason ``invalid_pixels``).
    """

    peaks: Peaks
    hit: bool
    masked_pixels: int
    failure: str | None = None


class LocalPipeline:
    """The service's pixel screen, model, engine and peak finding in this process, without Ray.

    For notebooks and offline reprocessing. ``process`` blocks; the engine's ``async`` API runs
    on a private event loop in its own thread, so it also works where a loop is already running
    (Jupyter). Use it as a context manager, or call ``close``.

    Config sections used: ``model``, ``engine``, ``peaks``, ``hits`` (the rest of a service
    config is validated and ignored).

    Args:
        config: the service configuration.
        bad_pixels: extra bad pixels (True = bad), an array shaped like a frame or a function of
            the frame shape; by default those of ``output.geometry_file`` (its ``bad_`` regions
            and masks). Combined with ``peaks.bad_pixel_mask``.
    """

    def __init__(self, config: ServiceConfig, *, bad_pixels: ExtraBadPixels | None = None) -> None:
        self.config = config
        if bad_pixels is None:
            bad_pixels = geometry_bad_pixels(config.output.geometry_file)
        self.screen = PixelScreen(config.peaks, bad_pixels=bad_pixels)
        self.finder = PeakFinder(config.peaks, bad_pixels=bad_pixels)
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
        """uint8 peak masks (1 = peak) of ``images``, (B, H, W) or (B, P, H, W), as the model
        sees them: run the frames through ``screen.screen`` first to mask invalid pixels."""
        future = asyncio.run_coroutine_threadsafe(self._engine.infer(images), self._loop)
        return future.result()

    def judge(self, images: np.ndarray) -> list[FrameResult]:
        """Screen, peaks and hit rule for each frame of ``images``, as the service does.

        Args:
            images: (B, H, W) frames, or (B, P, H, W) panel stacks; raw values (ADU), any
                integer or float dtype.

        Returns:
            One ``FrameResult`` per frame; a frame the pixel screen fails has its reason in
            ``failure`` and no peaks.

        Raises:
            ValueError: ``images`` is not a batch of frames.
        """
        images = np.asarray(images)
        if images.ndim not in (3, 4):
            raise ValueError(
                f"expected a batch of frames (B, H, W) or (B, P, H, W), got shape {images.shape}; "
                "add a leading axis for a single frame"
            )
        screened = self.screen.screen(images)
        good = np.flatnonzero(~screened.failed)
        results = [
            FrameResult(Peaks.empty(), False, int(count), failure)
            for count, failure in zip(screened.masked_pixels, screened.failures, strict=True)
        ]
        if good.size:
            frames = screened.images[good] if good.size < len(images) else screened.images
            for index, mask, frame in zip(good, self.masks(frames), frames, strict=True):
                peaks = self.finder.find(mask, frame)
                results[index] = FrameResult(
                    peaks, is_hit(peaks.n_found, self.config.hits), results[index].masked_pixels
                )
        return results

    def process(self, images: np.ndarray) -> list[Peaks]:
        """The peaks of each frame of ``images``.

        Args:
            images: (B, H, W) frames, or (B, P, H, W) panel stacks; raw values (ADU), any
                integer or float dtype. Invalid pixels (``peaks.invalid``) are masked.

        Returns:
            One ``Peaks`` per frame; ``is_hit(peaks.n_found, pipeline.config.hits)`` is the
            service's hit rule.

        Raises:
            InvalidFrameError: a frame has no valid pixel or too many invalid ones (``judge``
                reports such frames without raising).
        """
        results = self.judge(images)
        failed = [(i, r.failure) for i, r in enumerate(results) if r.failure is not None]
        if failed:
            index, reason = failed[0]
            raise InvalidFrameError(
                f"{len(failed)} of {len(results)} frames failed; frame {index}: {reason}"
            )
        return [result.peaks for result in results]

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
