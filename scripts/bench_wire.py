"""Decode throughput of LCLStreamer payloads per format and compression.

Prints GB/s (of decoded image bytes) and frames/s for one batch of synthetic 1920x1920 frames,
encoded once and decoded ``--repeat`` times with ``peaknet_serve.wire.decode_message``.

    PYTHONPATH=src python scripts/bench_wire.py [--batch 16] [--dtype float64] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from peaknet_serve.synthetic import SyntheticFrames
from peaknet_serve.wire import HDF5_COMPRESSIONS, NPZ_COMPRESSIONS, decode_message, encode_batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=1920)
    parser.add_argument(
        "--dtype", default="float64", help="LCLStreamer's SLAC example sends float64"
    )
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    generator = SyntheticFrames(
        shape=(args.size, args.size), peaks=30, hit_fraction=1.0, dtype=args.dtype
    )
    images, truth = generator.batch(0, args.batch)
    fields = {
        "/data/data": images[:, None],
        "/data/wavelength": np.array([t.wavelength_nm for t in truth]),
        "/data/timestamp": np.array([t.timestamp for t in truth], dtype=np.uint64),
    }
    print(
        f"{args.batch} x {args.size}x{args.size} {args.dtype} per message "
        f"({images.nbytes / 1e6:.0f} MB); {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs"
    )
    print(
        f"{'format':6} {'compression':22} {'MB sent':>8} {'ratio':>6} {'GB/s':>7} {'frames/s':>9}"
    )
    cases = [("hdf5", c) for c in HDF5_COMPRESSIONS] + [("npz", c) for c in NPZ_COMPRESSIONS]
    for fmt, compression in cases:
        payload = encode_batch(fields, fmt=fmt, compression=compression)
        best = float("inf")
        for _ in range(args.repeat):
            started = time.perf_counter()
            batch = decode_message(payload)
            np.asarray(batch.images).sum(dtype=np.float64)  # touch every pixel
            best = min(best, time.perf_counter() - started)
        print(
            f"{fmt:6} {compression:22} {len(payload) / 1e6:8.0f} "
            f"{images.nbytes / len(payload):6.2f} {images.nbytes / best / 1e9:7.2f} "
            f"{args.batch / best:9.1f}"
        )


if __name__ == "__main__":
    main()
