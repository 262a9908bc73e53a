"""Found peaks against the injected truth of synthetic frames (``peaknet-serve evaluate``).

Found peaks match true spots one to one within ``--radius`` pixels on the same panel; recall,
precision, position error and hit accuracy follow (``accuracy`` says how).

Two ways to get the peaks:

- ``--library``: ``LocalPipeline`` in this process (pixel screen, model, engine, peak finder;
  no Ray); a frame the pixel screen fails counts as a frame with no peaks.
- default: push the frames to a running service, wait for its ``/status`` to settle, and read
  the CXI files under ``--output-dir``; events are matched to the truth by the ``/LCLS/timestamp``
  the writer stores. Frames the service judged non-hits are not in the files: they count as
  frames with no peaks.

Beside the model it scores a classical local-threshold finder (``classical_finder``) on the same
frames, its threshold ``--baseline-snr`` noise levels above the local background. The
command line (its flags, the table it prints) is ``peaknet_serve.cli.evaluate``.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from peaknet_serve.classical_finder import baseline_peaks
from peaknet_serve.config import ServiceConfig
from peaknet_serve.errors import PeakNetServeError
from peaknet_serve.peaks import Peaks
from peaknet_serve.synthetic import FrameTruth, SyntheticFrames, first_event

logger = logging.getLogger(__name__)

# -- the two ways to get the model's peaks -------------------------------------------------------


def _generator(args: argparse.Namespace) -> SyntheticFrames:
    return SyntheticFrames(
        shape=tuple(args.shape), peaks=args.peaks, hit_fraction=args.hit_fraction, seed=args.seed
    )


def _batches(args: argparse.Namespace) -> Iterable[tuple[np.ndarray, list[FrameTruth]]]:
    generator = _generator(args)
    start = first_event(args.rank)
    for offset in range(0, args.frames, args.batch_size):
        yield generator.batch(start + offset, min(args.batch_size, args.frames - offset))


def evaluate_library(
    args: argparse.Namespace, config: ServiceConfig | None
) -> tuple[list[FrameTruth], list[Peaks], list[Peaks]]:
    """Truth, model peaks and baseline peaks, with ``LocalPipeline`` in this process."""
    from peaknet_serve.pipeline import LocalPipeline  # torch and the engine only when used

    truths: list[FrameTruth] = []
    model_peaks: list[Peaks] = []
    base_peaks: list[Peaks] = []
    pipeline = LocalPipeline(config) if config is not None else LocalPipeline.from_config()
    peaks_config = pipeline.config.peaks
    with pipeline, tqdm(total=args.frames, unit="frame", disable=args.no_progress) as bar:
        for images, batch_truths in _batches(args):
            model_peaks.extend(result.peaks for result in pipeline.judge(images))
            base_peaks.extend(baseline_peaks(images, snr=args.baseline_snr, peaks=peaks_config))
            truths.extend(batch_truths)
            bar.update(len(images))
    return truths, model_peaks, base_peaks


def read_cxi_peaks(paths: Iterable[Path]) -> dict[int, Peaks]:
    """The peaks of every event in the CXI files ``paths``, keyed by ``/LCLS/timestamp``.

    ``.cxi.inprogress`` files are read too (without HDF5 file locking, as the writer still has
    them open; it flushes after every batch). A timestamp seen twice keeps its last event.
    """
    from peaknet_serve.cxi.format import (
        METADATA_GROUP,
        TIMESTAMP_KEY,
        open_cxi,
        read_event_peaks,
    )

    found: dict[int, Peaks] = {}
    stamps = f"{METADATA_GROUP}/{TIMESTAMP_KEY}"
    for path in sorted(paths, key=lambda p: p.stat().st_mtime):
        with open_cxi(path) as handle:
            if stamps not in handle:
                raise PeakNetServeError(
                    f"{path} has no {stamps}; evaluate needs the pusher's timestamps "
                    "passed through to the CXI files"
                )
            events = read_event_peaks(handle)
            for timestamp, peaks in zip(handle[stamps][()], events, strict=True):
                found[int(timestamp)] = peaks
    return found


def evaluate_service(
    args: argparse.Namespace, config: ServiceConfig | None
) -> tuple[list[FrameTruth], list[Peaks], list[Peaks]]:
    """Truth, model peaks and baseline peaks, through the running service and its CXI files."""
    import httpx

    from peaknet_serve.cli.status import fetch_status, settled
    from peaknet_serve.pusher import push_frames  # sockets only when used

    def status() -> dict[str, object]:
        try:
            return fetch_status(args.url)
        except httpx.HTTPError as exc:
            raise PeakNetServeError(
                f"no service answers at {args.url}/status ({exc}); start it (serve run "
                "serve_config.yaml) or use --library"
            ) from exc

    output_dir = Path(args.output_dir or (config.output.output_dir if config else "./output"))
    before = int(status()["received"])
    started = time.time()
    summary = push_frames(
        address=args.address,
        transport=args.transport,
        frames=args.frames,
        batch_size=args.batch_size,
        shape=args.shape,
        peaks=args.peaks,
        hit_fraction=args.hit_fraction,
        seed=args.seed,
        rank=args.rank,
        truth_path=args.truth,
        progress=not args.no_progress,
    )
    deadline = time.monotonic() + args.timeout
    while not settled(now := status(), before + summary.frames):
        if time.monotonic() > deadline:
            raise PeakNetServeError(
                f"the service settled {int(now['received']) - before} of {summary.frames} "
                f"frames within {args.timeout:.0f} s; raise --timeout or check its log"
            )
        time.sleep(0.5)
    from peaknet_serve.cxi.format import written_files

    paths = [p for p in written_files(output_dir) if p.stat().st_mtime >= started - 1.0]
    if not paths:
        logger.warning("no CXI file written under %s since the push began", output_dir)
    by_timestamp = read_cxi_peaks(paths)
    truths = summary.truth
    model_peaks = [by_timestamp.get(t.timestamp, Peaks.empty()) for t in truths]
    peaks_config = config.peaks if config is not None else None
    base_peaks: list[Peaks] = []
    for images, _ in _batches(args):
        base_peaks.extend(baseline_peaks(images, snr=args.baseline_snr, peaks=peaks_config))
    return truths, model_peaks, base_peaks
