"""Accuracy a crystallographer reads: the service's peaks beside CrystFEL's peakfinder8.

Frames: ``pattern_sim`` lysozyme patterns (tetragonal, 79.1 79.1 37.9 A) on a single-panel
detector (``--size`` pixels square, 89 um pixels, 0.15 m, 9.5 keV, 10 photons/px of Poisson
background: the setting of issue 15), and blank frames without a crystal (Poisson background at
1, 10 and 50 photons/px, with and without a water ring).

- peaknet: ``LocalPipeline.judge`` (the service's pixel screen, model, peak finder and hit rule,
  from ``--config`` or the demo defaults); the crystal frames go into a CXI file through the
  service's ``CXIWriter`` and ``indexamajig --peaks=cxi`` indexes them.
- peakfinder8: ``indexamajig --peaks=peakfinder8`` with ``--pf8`` thresholds on the same files.

Both are indexed with ``--indexing=asdf,taketwo`` and the cell. Printed per finder: hits on the
blank frames, hit recall on the crystal frames (hit rule ``hits`` of the config for both),
peaks per crystal frame, the fraction of peaks within 2 px of a reflection predicted by the
frame's own indexing solution, and the indexing rate. Then a sweep of ``peaks.min_snr``: the
model's peaks per frame and their fraction on the reflections predicted by peakfinder8's
solutions, and hits on blank frames, for each cut.

    python scripts/bench_accuracy.py --work /tmp/accuracy --frames 40 --size 1920
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
import time
from pathlib import Path

import h5py
import numpy as np

from peaknet_serve.config import load_service_config
from peaknet_serve.crystfel import (
    LYSOZYME,
    Chunk,
    find_crystfel,
    index,
    peaks_on_reflections,
    simulate_patterns,
)
from peaknet_serve.cxi import CXIWriter
from peaknet_serve.cxi.config import CXIConfig
from peaknet_serve.peaks import Peaks, is_hit
from peaknet_serve.pipeline import FrameResult, LocalPipeline
from peaknet_serve.synthetic import blank_frame

logger = logging.getLogger("bench_accuracy")

PF8 = (
    "--threshold=20 --min-snr=5 --min-pix-count=1 --max-pix-count=200 --local-bg-radius=3",
    "--threshold=20 --min-snr=6 --min-pix-count=2 --max-pix-count=200 --local-bg-radius=3",
)
SWEEP = (None, 2.0, 3.0, 4.0, 5.0, 6.0)


def panel_lines(size: int) -> str:
    half = size // 2
    return (
        f"p0/min_fs = 0\np0/max_fs = {size - 1}\np0/min_ss = 0\np0/max_ss = {size - 1}\n"
        f"p0/corner_x = -{half}\np0/corner_y = -{half}\np0/fs = x\np0/ss = y\n"
    )


HEADER = "photon_energy = 9500\nclen = 0.15\nres = 11235.955\nadu_per_photon = 1\n"


def simulation_geometry(size: int) -> str:
    """pattern_sim's detector: 89 um pixels (res 11235.955 px/m), 0.15 m, 9.5 keV."""
    return HEADER + "data = /data/data\n\n" + panel_lines(size)


def cxi_geometry(size: int) -> str:
    """The same detector, read from the service's CXI file with its own peak list."""
    return (
        HEADER
        + "data = /entry_1/data_1/data\ndim0 = %\ndim1 = ss\ndim2 = fs\n"
        + "peak_list = /entry_1/result_1\npeak_list_type = cxi\n\n"
        + panel_lines(size)
    )


def read_frame(path: Path) -> np.ndarray:
    with h5py.File(path, "r") as handle:
        return handle["/data/data"][()]


def make_blanks(directory: Path, size: int, per_setting: int) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(15)
    paths = []
    for photons in (1.0, 10.0, 50.0):
        for ring in (False, True):
            for i in range(per_setting):
                path = directory / f"blank-{photons:g}-{'ring' if ring else 'flat'}-{i}.h5"
                if not path.exists():
                    image = blank_frame(rng, (size, size), photons=photons, water_ring=ring)
                    with h5py.File(path, "w") as handle:
                        handle.create_dataset("/data/data", data=image)
                paths.append(path)
    return paths


def judge_files(pipeline: LocalPipeline, paths: list[Path]) -> list[FrameResult]:
    results: list[FrameResult] = []
    for path in paths:
        results.extend(pipeline.judge(read_frame(path)[None]))
    return results


def write_cxi(directory: Path, paths: list[Path], results: list[FrameResult]) -> Path:
    config = CXIConfig(
        output_dir=str(directory), events_per_file=len(paths) + 1, compression="none",
        write_mode="all",
    )
    with CXIWriter(config, writer_id="bench") as writer:
        for path, result in zip(paths, results, strict=True):
            writer.write(read_frame(path), result.peaks, {}, hit=result.hit)
    (written,) = writer.files_written
    return written


def on_predicted(peaks: Peaks, chunk: Chunk, radius: float = 2.0) -> tuple[int, int]:
    """Our peaks (CrystFEL positions: + 0.5 px) within ``radius`` of ``chunk``'s predictions."""
    if not chunk.crystals or not len(peaks):
        return 0, len(peaks)
    xy = np.stack([peaks.x + 0.5, peaks.y + 0.5], axis=1)
    on = np.zeros(len(peaks), dtype=bool)
    for crystal in chunk.crystals:
        diff = xy[:, None, :] - crystal.reflections[None, :, :]
        on |= (np.hypot(diff[..., 0], diff[..., 1]) <= radius).any(axis=1)
    return int(on.sum()), len(peaks)


def snr_cut(peaks: Peaks, cut: float | None) -> Peaks:
    """``peaks`` as ``peaks.min_snr = cut`` leaves them (NaN SNR passes)."""
    return peaks if cut is None else peaks.select(~(peaks.snr < cut))


def row(name: str, blank_hits: int, blanks: int, hits: int, counts, chunks, seconds: float) -> str:
    on = [peaks_on_reflections(c) for c in chunks if c.indexed]
    on_fraction = sum(o for o, _ in on) / max(sum(t for _, t in on), 1)
    indexed = sum(c.indexed for c in chunks)
    frames = len(counts)
    return (
        f"| {name} | {blank_hits} / {blanks} ({blank_hits / blanks:.1%}) | {hits} / {frames} "
        f"({hits / frames:.1%}) | {np.mean(counts):.1f} | {on_fraction:.1%} | "
        f"{indexed} / {frames} ({indexed / frames:.1%}) | {seconds:.0f} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--work", type=Path, required=True, help="frames, CXI file and streams go here")
    add("--frames", type=int, default=40, help="pattern_sim frames (at least 2)")
    add("--size", type=int, default=1920, help="detector pixels, square")
    add("--blanks", type=int, default=3, help="blank frames per background setting (6 settings)")
    add("--config", default=None, help="service config; default: the demo model")
    add(
        "--pf8",
        action="append",
        default=None,
        help="indexamajig peakfinder8 options, one row each (repeatable; default: two settings)",
    )
    add("--threads", type=int, default=2, help="indexamajig -j")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    crystfel = find_crystfel()
    if crystfel is None:
        sys.stderr.write("CrystFEL not found: run ../shared/crystfel/build.sh\n")
        return 1
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    geometry = work / "det.geom"
    geometry.write_text(simulation_geometry(args.size))
    cell = LYSOZYME.write(work / "lyso.cell")
    frames = [work / "frames" / f"sim.h5-{i}.h5" for i in range(1, args.frames + 1)]
    if not all(p.exists() for p in frames):
        logger.info("pattern_sim: %d frames of %d x %d", args.frames, args.size, args.size)
        frames = simulate_patterns(crystfel, cell, geometry, work / "frames", args.frames)
    blanks = make_blanks(work / "blank", args.size, args.blanks)

    mapping = {"model": {"preset": "peaknet-demo", "weights": "builtin:peaknet-demo"}}
    config = load_service_config(args.config) if args.config else load_service_config(mapping)
    started = time.monotonic()
    with LocalPipeline(config) as pipeline:
        crystal = judge_files(pipeline, frames)
        blank = judge_files(pipeline, blanks)
    cxi = write_cxi(work / "peaknet", frames, crystal)
    (work / "cxi.geom").write_text(cxi_geometry(args.size))
    ours = index(crystfel, [cxi], work / "cxi.geom", cell, work / "peaknet.stream", peaks="cxi",
                 threads=args.threads)
    ours_s = time.monotonic() - started
    hits = config.hits
    out = sys.stdout.write
    out(
        f"{args.frames} pattern_sim lysozyme frames and {len(blanks)} blank frames, "
        f"{args.size} x {args.size}; hit rule {hits.min_peaks} <= peaks <= {hits.max_peaks}; "
        f"peaks.min_snr {config.peaks.min_snr}; {platform.machine()}, {platform.node()}, "
        f"indexamajig -j {args.threads}\n\n"
        "| finder | blank frames called hits | hit recall | peaks / frame | peaks on predicted "
        "reflections | indexed | seconds |\n|---|---|---|---|---|---|---|\n"
    )
    out(row(
        "peaknet (service)", sum(r.hit for r in blank), len(blank),
        sum(r.hit for r in crystal), [len(r.peaks) for r in crystal], ours, ours_s,
    ) + "\n")
    reference: list[Chunk] = []
    for number, options in enumerate(args.pf8 or PF8):
        started = time.monotonic()
        pf8_args = options.split()
        theirs = index(crystfel, frames, geometry, cell, work / f"pf8-{number}.stream",
                       peaks="peakfinder8", extra_args=pf8_args, threads=args.threads)
        pf8_s = time.monotonic() - started
        pf8_blank = index(crystfel, blanks, geometry, None, work / f"pf8-{number}-blank.stream",
                          peaks="peakfinder8", indexing="none", extra_args=pf8_args,
                          threads=args.threads)
        out(row(
            f"peakfinder8 `{options}`", sum(is_hit(len(c.peaks), hits) for c in pf8_blank),
            len(blanks), sum(is_hit(len(c.peaks), hits) for c in theirs),
            [len(c.peaks) for c in theirs], theirs, pf8_s,
        ) + "\n")
        if sum(c.indexed for c in theirs) > sum(c.indexed for c in reference):
            reference = theirs

    out(
        "\nmin_snr sweep (the model's peaks against the predictions of the peakfinder8 run that "
        f"indexed most, {sum(c.indexed for c in reference)} frames)\n\n"
        "| peaks.min_snr | peaks / frame | on predicted reflections | blank frames called hits "
        "|\n|---|---|---|---|\n"
    )
    uncut = config.model_copy(
        update={"peaks": config.peaks.model_copy(update={"min_snr": None})}
    )
    with LocalPipeline(uncut) as pipeline:  # the cut acts after measuring: apply it here
        all_crystal = [r.peaks for r in judge_files(pipeline, frames)]
        all_blank = [r.peaks for r in judge_files(pipeline, blanks)]
    for cut in SWEEP:
        crystal_cut = [snr_cut(p, cut) for p in all_crystal]
        blank_hits = sum(is_hit(len(snr_cut(p, cut)), hits) for p in all_blank)
        counts = [
            on_predicted(p, c) for p, c in zip(crystal_cut, reference, strict=True) if c.indexed
        ]
        fraction = sum(o for o, _ in counts) / max(sum(t for _, t in counts), 1)
        per_frame = np.mean([len(p) for p in crystal_cut])
        name = "none" if cut is None else f"{cut:g}"
        out(f"| {name} | {per_frame:.1f} | {fraction:.1%} | {blank_hits} / {len(blanks)} |\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
