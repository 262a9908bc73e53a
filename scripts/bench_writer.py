"""One PeakFinderWriter's work per frame, without Ray: judging (peaks, hit rule) and the CXI write.

Runs ``PeakStage.process`` (what the deployment calls) on batches of synthetic frames whose masks
are the true spots, every frame a hit, once per ``output.compression``, into a temp folder under
``--dir`` (/dev/shm leaves the disk out). Prints wall-clock milliseconds per frame of one thread
(about one core's time): judging alone once, then the whole of ``process`` (judging included)
per compression.

    PYTHONPATH=src python scripts/bench_writer.py [--size 1920] [--batch 16] [--dir /dev/shm]
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import tempfile
import time
from collections.abc import Callable

import numpy as np

from peaknet_serve.cxi.config import CXIConfig
from peaknet_serve.peaks import HitConfig, PeaksConfig
from peaknet_serve.service.judge import BatchJudge
from peaknet_serve.service.stage import PeakStage
from peaknet_serve.synthetic import SyntheticFrames, spot_mask
from peaknet_serve.wire import FrameBatch

COMPRESSIONS = ("none", "bitshuffle_lz4", "bitshuffle_zstd", "gzip")
EVERY_FRAME = HitConfig(min_peaks=0, max_peaks=10**9)
"""The hit rule off: every frame is written (the writer's worst case, as in bench_service)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1920)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument(
        "--batches", type=int, default=3, help="timed batches per compression"
    )
    parser.add_argument("--dir", default="/dev/shm" if os.path.isdir("/dev/shm") else None)
    parser.add_argument("--compressions", default=",".join(COMPRESSIONS[:2]))
    args = parser.parse_args()
    if args.batches < 1:
        parser.error(f"--batches {args.batches}: at least 1")
    frames = SyntheticFrames(shape=(args.size, args.size), peaks=30, hit_fraction=1.0, cycle=8)
    images, truth = frames.batch(0, args.batch)
    masks = np.stack([spot_mask(t, images.shape[1:]) for t in truth])
    batch = FrameBatch(
        images=images.astype(np.float32),
        metadata={"timestamp": np.array([t.timestamp for t in truth], dtype=np.uint64)},
    )
    print(
        f"{args.batch} x {args.size}x{args.size} float32 per batch, every frame written; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    )
    judge = BatchJudge(PeaksConfig(), EVERY_FRAME)
    judge(masks, batch)  # untimed: first-call costs (imports, allocations)
    judge_ms = _ms_per_frame(lambda _: judge(masks, batch), args.batches, args.batch)
    print(f"judging alone: {judge_ms:.2f} ms per frame")
    print(f"{'compression':16} {'process ms per frame (judging + write)':>38}")
    for compression in args.compressions.split(","):
        with tempfile.TemporaryDirectory(dir=args.dir) as out:
            output = CXIConfig(output_dir=out, compression=compression)
            stage = PeakStage(PeaksConfig(), EVERY_FRAME, output, writer_id="bench")
            try:
                stage.process(masks, batch, batch_id="untimed")  # opens the file
                ms = _ms_per_frame(
                    functools.partial(_write, stage, masks, batch), args.batches, args.batch
                )
            finally:
                stage.close()
        print(f"{compression:16} {ms:38.2f}")


def _write(stage: PeakStage, masks: np.ndarray, batch: FrameBatch, index: int) -> None:
    stage.process(masks, batch, batch_id=f"b{index}")


def _ms_per_frame(step: Callable[[int], object], batches: int, frames: int) -> float:
    started = time.perf_counter()
    for index in range(batches):
        step(index)
    return (time.perf_counter() - started) / (batches * frames) * 1e3


if __name__ == "__main__":
    main()
