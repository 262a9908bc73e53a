"""This host's memory copy bandwidth with 1..N processes copying at once.

Every frame is copied several times between the socket and the CXI file; this says how fast one
core copies alone and how much all of them copy together, to hold a service row's frames/s
against (bytes read plus bytes written, numpy ``copyto`` of arrays far larger than the caches).

    python scripts/bench_memory.py [--procs 1,2,4,8,16] [--mb 256] [--seconds 3]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import time
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cores = os.cpu_count() or 1
    default = ",".join(str(n) for n in (1, 2, 4, 8, 16, 32, 64) if n <= cores)
    parser.add_argument("--procs", default=default, help="process counts to run")
    parser.add_argument("--mb", type=int, default=256, help="array size per process, MiB")
    parser.add_argument("--seconds", type=float, default=3.0, help="copying time per count")
    args = parser.parse_args()
    try:
        counts = [int(n) for n in args.procs.split(",")]
    except ValueError:
        parser.error(f"--procs {args.procs!r}: process counts separated by commas")
    if min(counts) < 1 or args.mb < 1:
        parser.error("--procs and --mb must be at least 1")
    print(f"{platform.processor() or platform.machine()}, {cores} CPUs; {args.mb} MiB arrays")
    print(f"{'procs':>5} {'GB/s':>7} {'GB/s per proc':>14}")
    context = multiprocessing.get_context("spawn")
    for count in counts:
        results: Queue = context.Queue()
        start = context.Barrier(count)
        workers = [
            context.Process(target=_copy, args=(args.mb, args.seconds, start, results))
            for _ in range(count)
        ]
        for worker in workers:
            worker.start()
        # a worker that died (out of memory) breaks the others' barrier: no wait is for ever
        total = sum(results.get(timeout=args.seconds + 120) for _ in workers)
        for worker in workers:
            worker.join()
        print(f"{count:5d} {total / 1e9:7.1f} {total / count / 1e9:14.1f}")


def _copy(mb: int, seconds: float, start: Barrier, results: Queue) -> None:
    """Copy one array into another for ``seconds``, all processes at once; put bytes moved
    per second."""
    source = np.ones(mb * 2**20 // 8)
    target = np.empty_like(source)
    np.copyto(target, source)  # both touched before the clock starts
    start.wait(timeout=120)
    copies = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        np.copyto(target, source)
        copies += 1
    results.put(copies * 2 * source.nbytes / (time.perf_counter() - started))


if __name__ == "__main__":
    main()
