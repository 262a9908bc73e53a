"""What a writer's bookkeeping costs per batch: the claim, the look through every commit log,
and the commit (``peaknet_serve.service.commits``), with other writers' logs full.

    PYTHONPATH=src python scripts/bench_commits.py [--writers 6] [--batches 500] [--dir /tmp]

Prints milliseconds per batch. The look and the claim happen under the directory's commits
lock, so their time bounds how many batches per second all writers of one directory can take.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

from peaknet_serve.service.commits import (
    COMMITS_LOCK,
    KEEP_BATCHES,
    CommitLog,
    directory_lock,
    find_batch,
)
from peaknet_serve.service.outcome import BatchOutcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=6, help="other writers' logs present")
    parser.add_argument("--batches", type=int, default=500)
    parser.add_argument("--dir", type=Path, default=None, help="where (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as name:
        directory = Path(name)
        outcome = BatchOutcome(hits=3, non_hits=1)
        for writer in range(args.writers):
            log = CommitLog(directory, f"other{writer}")
            for batch in range(KEEP_BATCHES):
                log.record(f"{writer}-{batch:032x}", outcome, current=directory / "f", events=batch)
        mine = CommitLog(directory, "me")
        looked = locked = 0.0
        started = time.perf_counter()
        for batch in range(args.batches):
            batch_id = f"me-{batch:032x}"
            with directory_lock(directory / COMMITS_LOCK, wait=True):
                before = time.perf_counter()
                find_batch(directory, batch_id)
                looked += time.perf_counter() - before
                mine.claim(batch_id)
                locked += time.perf_counter() - before
            mine.record(batch_id, outcome, current=directory / "g", events=batch)
        total = time.perf_counter() - started
    print(f"{platform.node()}, {args.writers} other logs of {KEEP_BATCHES} batches, {directory}")
    print(f"{'step':<34}{'ms per batch':>14}")
    print(f"{'look through the logs':<34}{looked / args.batches * 1e3:>14.2f}")
    print(f"{'held the lock (look + claim)':<34}{locked / args.batches * 1e3:>14.2f}")
    print(f"{'lock + look + claim + commit':<34}{total / args.batches * 1e3:>14.2f}")


if __name__ == "__main__":
    main()
