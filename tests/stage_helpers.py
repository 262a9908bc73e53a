"""Small batches, masks and configs for the writer-stage tests (one peak per frame)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np

from peaknet_serve.config import ServiceConfig
from peaknet_serve.peaks import Peaks, PeaksConfig, find_peaks
from peaknet_serve.service.stage import PeakStage
from peaknet_serve.wire import FrameBatch


def config(out: Path, *, events_per_file: int = 5, min_peaks: int = 0) -> ServiceConfig:
    return ServiceConfig.model_validate(
        {
            "model": {"random_weights_seed": 0},
            "hits": {"min_peaks": min_peaks},
            "output": {"output_dir": str(out), "events_per_file": events_per_file},
        }
    )


def make_stage(settings: ServiceConfig, **kwargs: Any) -> PeakStage:
    """A PeakStage of ``settings``' peaks, hits and output, as the writer deployment makes one."""
    return PeakStage(settings.peaks, settings.hits, settings.output, **kwargs)


def batch(first: int, n: int = 3, *, shape=(16, 16)) -> FrameBatch:
    rng = np.random.default_rng(first)
    images = rng.random((n, *shape), dtype=np.float32)
    stamps = np.arange(first, first + n, dtype=np.uint64)
    return FrameBatch(images=images, metadata={"timestamp": stamps})


def masks_for(frames: FrameBatch) -> np.ndarray:
    masks = np.zeros(frames.images.shape, dtype=np.uint8)
    masks[:, 4:6, 4:6] = 1  # one peak per frame: every frame is a hit with min_peaks=0
    return masks


def one_peak() -> Peaks:
    frames = batch(0, 1)
    return find_peaks(masks_for(frames)[0], frames.images[0], PeaksConfig())


def timestamps(out: Path) -> list[int]:
    """Every event's timestamp in the closed CXI files of ``out``, sorted (duplicates kept)."""
    found: list[int] = []
    for path in sorted(out.glob("*.cxi")):
        with h5py.File(path, "r") as f:
            found.extend(int(t) for t in f["/LCLS/timestamp"][()])
    return sorted(found)
