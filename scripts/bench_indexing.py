"""Indexing of the service's peaks beside CrystFEL's own peakfinder8, on pattern_sim frames.

pattern_sim (CrystFEL 0.10.2) simulates randomly oriented tetragonal lysozyme crystals on a
single 1920 x 1920 panel (a binned Rayonix MX340 at 130 mm, 9.5 keV). The frames go through the
service path without Ray (``LocalPipeline`` for the masks, the writer stage for peaks, hit rule
and CXI file), ``peaknet-serve geom`` writes the geometry, and ``indexamajig --peaks=cxi`` indexes
the file's peaks; ``indexamajig --peaks=peakfinder8`` indexes the same frames from its own peak
search. Prints a Markdown table: frames, hits, peaks per frame, indexed, indexing rate, time.

    .venv/bin/python scripts/bench_indexing.py --frames 40 --out /tmp/bench-indexing
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import h5py
import numpy as np

from peaknet_serve.config import load_service_config
from peaknet_serve.crystfel import LYSOZYME, find_crystfel, index, simulate_patterns
from peaknet_serve.cxi.geom_text import geometry_text
from peaknet_serve.pipeline import LocalPipeline
from peaknet_serve.service.stage import PeakStage
from peaknet_serve.wire import FrameBatch

GEOMETRY = """; a Rayonix MX340-HS, 2x2 binned, at 130 mm
photon_energy = 9500
clen = 0.13
res = 11294.3
adu_per_photon = 1
data = /data/data
p0/min_fs = 0
p0/max_fs = {last}
p0/min_ss = 0
p0/max_ss = {last}
p0/corner_x = {corner}
p0/corner_y = {corner}
p0/fs = x
p0/ss = y
"""
PEAKFINDER8 = ["--threshold=20", "--min-snr=5", "--min-pix-count=1", "--max-pix-count=200"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--size", type=int, default=1920, help="panel side, pixels")
    parser.add_argument("--photons", type=float, default=3e14, help="photons per pulse")
    parser.add_argument("--device", default="cpu", help="PeakNet's device (cpu, cuda)")
    parser.add_argument("--min-peaks", type=int, default=10, help="the hit rule")
    parser.add_argument("--threads", type=int, default=2, help="indexamajig -j")
    parser.add_argument("--out", type=Path, default=Path("bench-indexing"))
    args = parser.parse_args()
    crystfel = find_crystfel()
    if crystfel is None:
        sys.stderr.write("CrystFEL is not installed: run ../shared/crystfel/build.sh\n")
        return 1
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    geometry = out / "sim.geom"
    geometry.write_text(GEOMETRY.format(last=args.size - 1, corner=-args.size / 2))
    cell = LYSOZYME.write(out / "lysozyme.cell")

    start = time.perf_counter()
    frames = simulate_patterns(crystfel, cell, geometry, out / "frames", args.frames,
                               photons_per_pulse=args.photons)
    simulated = time.perf_counter() - start

    config = load_service_config({
        "model": {"preset": "peaknet-demo", "weights": "builtin:peaknet-demo"},
        "engine": {"device": args.device},
        "hits": {"min_peaks": args.min_peaks},
        "output": {"output_dir": str(out / "cxi"), "geometry_file": str(geometry),
                   "events_per_file": args.frames},
    })
    for old in (out / "cxi").glob("*.cxi"):
        old.unlink()
    start = time.perf_counter()
    stage = PeakStage(config.peaks, config.hits, config.output, writer_id="bench")
    hits = 0
    with LocalPipeline(config) as pipeline:
        for first in range(0, len(frames), 4):
            paths = frames[first : first + 4]
            images = np.stack([_read(path) for path in paths])
            batch = FrameBatch(images=images, original_shape=None, metadata={
                "photon_energy_ev": np.full(len(paths), 9500.0),
                "timestamp": np.arange(first, first + len(paths), dtype=np.uint64)})
            hits += stage.process(pipeline.masks(images), batch).hits
    stage.close()
    service_s = time.perf_counter() - start
    cxi_files = sorted((out / "cxi").glob("*.cxi"))
    cxi_chunks = []
    start = time.perf_counter()
    if cxi_files:  # no file when no frame was a hit
        cxi_geometry = out / "cxi.geom"
        cxi_geometry.write_text(geometry_text(cxi_files[0]))
        cxi_chunks = index(crystfel, cxi_files, cxi_geometry, cell, out / "cxi.stream",
                           threads=args.threads)
    cxi_s = time.perf_counter() - start
    start = time.perf_counter()
    pf8_chunks = index(crystfel, frames, geometry, cell, out / "pf8.stream",
                       peaks="peakfinder8", extra_args=PEAKFINDER8, threads=args.threads)
    pf8_s = time.perf_counter() - start

    rows = [
        ("peaknet-serve (demo model) -> indexamajig --peaks=cxi", len(frames), hits,
         cxi_chunks, f"{service_s:.0f} s service + {cxi_s:.0f} s indexamajig"),
        ("indexamajig --peaks=peakfinder8", len(frames), None, pf8_chunks, f"{pf8_s:.0f} s"),
    ]
    sys.stdout.write(
        f"pattern_sim: {len(frames)} frames of {args.size}x{args.size}, lysozyme "
        f"(a=b=79.1 c=37.9 A), {args.photons:g} photons/pulse, {simulated:.0f} s\n"
        f"machine: {platform.node()}, {platform.processor() or platform.machine()}, "
        f"PeakNet on {args.device}, indexamajig -j {args.threads}\n\n"
        "| peaks from | frames | hits | peaks/frame | indexed | indexing rate | time |\n"
        "|---|---|---|---|---|---|---|\n"
    )
    for label, n_frames, n_hits, chunks, seconds in rows:
        peaks = np.mean([len(chunk.peaks) for chunk in chunks]) if chunks else 0.0
        indexed = sum(chunk.indexed for chunk in chunks)
        hits_text = n_hits if n_hits is not None else sum(chunk.hit for chunk in chunks)
        sys.stdout.write(
            f"| {label} | {n_frames} | {hits_text} | {peaks:.1f} | {indexed} | "
            f"{indexed / n_frames:.0%} | {seconds} |\n"
        )
    return 0


def _read(path: Path) -> np.ndarray:
    with h5py.File(path) as handle:
        return np.asarray(handle["/data/data"][()], dtype=np.float32)


if __name__ == "__main__":
    sys.exit(main())
