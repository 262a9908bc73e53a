"""Cost of the live page's per-batch summary in a writer replica: prints ms per batch.

.venv/bin/python scripts/bench_live.py [--shape 1920 1920] [--batch 16] [--peaks 30]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from peaknet_serve.live import summarize_batch
from peaknet_serve.peaks import Judged, Peaks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=2, default=[1920, 1920])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--peaks", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    images = rng.poisson(20, size=(args.batch, *args.shape)).astype(np.float32)
    n = args.peaks
    peaks = Peaks(
        x=rng.uniform(0, args.shape[1], n), y=rng.uniform(0, args.shape[0], n),
        total_intensity=np.ones(n), n_pixels=np.ones(n), max_value=rng.uniform(50, 5000, n),
        snr=np.ones(n), panel=np.zeros(n, dtype=int),
    )  # fmt: skip
    for with_hit in (False, True):
        judged = [
            Judged(index=i, peaks=peaks, hit=with_hit and i == args.batch - 1)
            for i in range(args.batch)
        ]
        summarize_batch(images, judged)
        start = time.perf_counter()
        for _ in range(args.repeat):
            summarize_batch(images, judged)
        ms = (time.perf_counter() - start) / args.repeat * 1e3
        label = "with a hit (thumbnail)" if with_hit else "no hit"
        print(f"{args.batch} x {args.shape[0]}x{args.shape[1]}, {label}: {ms:.2f} ms per batch")


if __name__ == "__main__":
    main()
