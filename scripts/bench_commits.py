"""What a writer's bookkeeping costs per batch, with no lock shared between writers: the look
through the other writers' open files for the batch id (``peaknet_serve.cxi.batches``), and
the commit in its own file (batch-table row, attributes, user block, flush).

    PYTHONPATH=src python scripts/bench_commits.py [--writers 6] [--batches 500] [--dir /tmp]

Prints milliseconds per batch. Frames are 16x16 so that the bookkeeping, not the pixels, is
what is timed. The other writers' files are open, each with ``--batches`` committed batches.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from peaknet_serve.cxi import CXIConfig, CXIWriter
from peaknet_serve.cxi.batches import BatchIndex
from peaknet_serve.peaks import Peaks

OUTCOME = {"hits": 1, "non_hits": 3, "failed": {}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=6, help="other writers' open files")
    parser.add_argument("--batches", type=int, default=500)
    parser.add_argument("--dir", type=Path, default=None, help="where (default: a temp dir)")
    args = parser.parse_args()
    frame, peaks = np.zeros((1, 16, 16), np.float32), [Peaks.empty()]
    with tempfile.TemporaryDirectory(dir=args.dir) as name:
        directory = Path(name)
        config = CXIConfig(output_dir=name, events_per_file=10 * args.batches)
        others = [CXIWriter(config, writer_id=f"other{i}") for i in range(args.writers)]
        for writer_index, other in enumerate(others):
            for batch in range(args.batches):
                batch_id = f"{writer_index}-{batch:032x}"
                other.write_batch(frame, peaks, {}, [True], batch_id=batch_id)
                other.commit(batch_id, OUTCOME, (16, 16))
        mine = CXIWriter(config, writer_id="me")
        index = BatchIndex(directory)
        looked = written = 0.0
        for batch in range(args.batches):
            batch_id = f"me-{batch:032x}"
            before = time.perf_counter()
            index.find(batch_id)
            looked += time.perf_counter() - before
            before = time.perf_counter()
            mine.begin(batch_id)
            mine.write_batch(frame, peaks, {}, [True], batch_id=batch_id)
            mine.commit(batch_id, OUTCOME, (16, 16))
            written += time.perf_counter() - before
        for writer in (*others, mine):
            writer.close()
    print(f"{platform.node()}, {args.writers} other open files of {args.batches} batches")
    print(f"{'step':<40}{'ms per batch':>14}")
    print(f"{'look through the other files':<40}{looked / args.batches * 1e3:>14.2f}")
    print(f"{'begin + write one 16x16 event + commit':<40}{written / args.batches * 1e3:>14.2f}")


if __name__ == "__main__":
    main()
