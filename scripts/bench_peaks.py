"""Frames per second per core of peak finding on 1920x1920 masks, for each labelling method.

Run: ``PYTHONPATH=src .venv/bin/python scripts/bench_peaks.py [--repeats N]``. Pins OpenCV to one
thread. Methods:

- ``find_peaks[opencv]``: the library (cv2.connectedComponents per panel, bincount sums, ring
  background, weighted centroid);
- ``find_peaks[scipy]``: the same pipeline with ``scipy.ndimage.label`` (3x3 structure);
- ``find_peaks[opencv+stats]``: with ``cv2.connectedComponentsWithStats`` (stats unused);
- ``scipy label+center_of_mass``: the reference (centroids only, no background, no filters);
- ``label only``: the two labellers alone.

``--writer DIR`` also times ``CXIWriter.write_batch`` (batches of 16 hits, 1920x1920 float32,
~300 peaks) per compression, writing under DIR (deleted afterwards).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage

from peaknet_serve.cxi import CXIConfig, CXIWriter
from peaknet_serve.peaks import PeakFinder, PeaksConfig
from peaknet_serve.peaks.find import label_opencv

_STRUCTURE_3D = np.zeros((3, 3, 3), dtype=bool)
_STRUCTURE_3D[1] = True


def label_scipy(mask3: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    labels, count = ndimage.label(mask3, structure=_STRUCTURE_3D)
    fg = np.flatnonzero(mask3)
    return fg, labels.reshape(-1)[fg].astype(np.intp) - 1, int(count)


def label_opencv_stats(mask3: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    size = mask3.shape[1] * mask3.shape[2]
    indices, labels, total = [], [], 0
    for p, panel in enumerate(mask3):
        count, panel_labels, _, _ = cv2.connectedComponentsWithStats(
            panel.view(np.uint8), connectivity=8, ltype=cv2.CV_32S
        )
        fg = np.flatnonzero(panel)
        indices.append(fg + p * size)
        labels.append(panel_labels.reshape(-1)[fg].astype(np.intp) + total - 1)
        total += count - 1
    return np.concatenate(indices), np.concatenate(labels), total


def center_of_mass_reference(mask: np.ndarray, image: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
    return np.asarray(ndimage.center_of_mass(image, labels, range(1, count + 1)))


def make_frame(
    shape: tuple[int, ...], n_peaks: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A Poisson background with ``n_peaks`` blobs of 3-13 pixels, and their mask."""
    rng = np.random.default_rng(seed)
    image = rng.poisson(8.0, shape).astype(np.float32)
    mask = np.zeros(shape, dtype=bool)
    flat = mask.reshape(-1, *shape[-2:])
    panels = rng.integers(0, flat.shape[0], n_peaks)
    ys = rng.integers(2, shape[-2] - 2, n_peaks)
    xs = rng.integers(2, shape[-1] - 2, n_peaks)
    flat[panels, ys, xs] = True
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (1, 1), (-1, 1), (1, -1)):
        keep = rng.random(n_peaks) < 0.6
        flat[panels[keep], ys[keep] + dy, xs[keep] + dx] = True
    image[mask] += rng.uniform(20, 400, int(mask.sum())).astype(np.float32)
    return mask, image


def timed(function: Callable[[], object], repeats: int) -> float:
    """Median seconds per call after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--writer", type=Path, default=None, help="also time the CXI writer here")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    config = PeaksConfig()
    finders = {
        "find_peaks[opencv]": PeakFinder(config, labeller=label_opencv),
        "find_peaks[scipy]": PeakFinder(config, labeller=label_scipy),
        "find_peaks[opencv+stats]": PeakFinder(config, labeller=label_opencv_stats),
        "find_peaks[opencv] unweighted, no background": PeakFinder(
            config.model_copy(
                update={"centroid": "unweighted", "background": "none", "min_snr": None}
            )
        ),
    }
    cases = [
        ("1920x1920, ~2500 peaks", (1920, 1920), 2500),
        ("1920x1920, ~200 peaks", (1920, 1920), 200),
        ("16x352x384 (ePix10k2M), ~2500 peaks", (16, 352, 384), 2500),
    ]
    print(f"one core (cv2 threads: {cv2.getNumThreads()}), median of {args.repeats} calls")
    for title, shape, n_peaks in cases:
        mask, image = make_frame(shape, n_peaks)
        found = len(finders["find_peaks[opencv]"].find(mask, image))
        print(f"\n{title}: {found} peaks kept, {int(mask.sum())} mask pixels")
        for name, seconds in bench_case(mask, image, finders, args.repeats):
            print(f"  {name:46s} {seconds * 1e3:8.2f} ms  {1 / seconds:8.1f} frames/s")
    if args.writer is not None:
        bench_writer(args.writer)


def bench_case(
    mask: np.ndarray, image: np.ndarray, finders: dict[str, PeakFinder], repeats: int
) -> list[tuple[str, float]]:
    """(method, median seconds per frame) for one mask and frame."""
    mask3 = mask if mask.ndim == 3 else mask[None]
    rows = [(name, timed(partial(finder.find, mask, image), repeats))
            for name, finder in finders.items()]
    if mask.ndim == 2:
        rows.append(("scipy label+center_of_mass (reference)",
                     timed(partial(center_of_mass_reference, mask, image), repeats)))
    rows.append(("label only: scipy.ndimage.label", timed(partial(label_scipy, mask3), repeats)))
    rows.append(("label only: cv2.connectedComponents",
                 timed(partial(label_opencv, mask3), repeats)))
    return rows


def bench_writer(directory: Path, batches: int = 4) -> None:
    """Frames/s of write_batch per compression (one core, the disk under ``directory``)."""
    mask, image = make_frame((1920, 1920), 300)
    peaks = PeakFinder().find(mask, image)
    frames = np.stack([image] * 16)
    metadata = {"photon_energy_eV": np.full(16, 9500.0),
                "timestamp": np.arange(16, dtype=np.uint64)}
    print(f"\nCXIWriter.write_batch, 16 x 1920x1920 float32 hits per call, under {directory}")
    for compression in ("none", "gzip", "bitshuffle_lz4", "bitshuffle_zstd"):
        out = Path(tempfile.mkdtemp(dir=directory))
        config = CXIConfig(output_dir=str(out), compression=compression,
                           compression_level=1 if compression == "gzip" else 3)
        start = time.perf_counter()
        with CXIWriter(config, writer_id="bench") as writer:
            for _ in range(batches):
                writer.write_batch(frames, [peaks] * 16, metadata, np.ones(16, dtype=bool))
        seconds = time.perf_counter() - start
        size = sum(path.stat().st_size for path in writer.files_written) / (16 * batches)
        print(f"  {compression:16s} {16 * batches / seconds:8.1f} frames/s  "
              f"{size / 1e6:6.2f} MB/frame")
        shutil.rmtree(out)


if __name__ == "__main__":
    main()
