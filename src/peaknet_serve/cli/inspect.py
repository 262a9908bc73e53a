"""``peaknet-serve inspect FILE.cxi [...]``: what a CXI file holds, in one line per file."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin
import numpy as np

from peaknet_serve.cxi.format import (
    DATA_PATH,
    EVENTS_OFFERED,
    HIT_PATH,
    INPROGRESS_SUFFIX,
    METADATA_GROUP,
    N_PEAKS_PATH,
    PHOTON_ENERGY_KEY,
    WRITE_MODE,
    batch_records,
    open_cxi,
)

HELP = "summarise CXI files: events, peaks per event, hit fraction, photon energy range"

_BITSHUFFLE_CODECS = {(2,): "+lz4", (3,): "+zstd"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "files", nargs="+", type=Path,
        help="CXI files; a .cxi.inprogress file still being written is read as far as flushed",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line")


def run(args: argparse.Namespace) -> int:
    status = 0
    summaries = []
    held: dict[str, list[str]] = {}
    for path in args.files:
        try:
            summary = summarize(path)
        except (OSError, KeyError, ValueError) as exc:
            sys.stderr.write(f"peaknet-serve inspect: cannot read {path}: {exc}\n")
            status = 1
            continue
        for batch_id in summary.pop("batch_ids"):
            held.setdefault(batch_id, []).append(str(path))
        summaries.append(summary)
    if len(summaries) > 1:
        summaries.append(_total(summaries))
        summaries[-1]["duplicate_batches"] = {b: f for b, f in held.items() if len(f) > 1}
    for summary in summaries:
        sys.stdout.write((json.dumps(summary) if args.json else _line(summary)) + "\n")
    return status


def summarize(path: Path) -> dict[str, Any]:
    """Events, peaks per event, hits, photon energy range and image of one CXI file.

    A ``.cxi.inprogress`` file is opened without HDF5 file locking (its writer holds it open) and
    read as far as the writer has flushed it; ``in_progress`` says so. ``energy_nonfinite``
    counts the events whose photon energy is NaN or infinite (CrystFEL cannot index them).
    ``batches`` counts the batches with events in the file, ``duplicates_dropped`` those whose
    events were dropped as another file holds them (a batch sent to two writers); ``batch_ids``
    lists the ids of the first kind (the total over several files names ids held twice).

    Raises:
        OSError, KeyError, ValueError: not a readable CXI file written by peaknet-serve.
    """
    with open_cxi(path) as handle:
        n_peaks = np.asarray(handle[N_PEAKS_PATH][()])
        hit = np.asarray(handle[HIT_PATH][()], dtype=bool) if HIT_PATH in handle else None
        energy_path = f"{METADATA_GROUP}/{PHOTON_ENERGY_KEY}"
        energy = np.asarray(handle[energy_path][()], float) if energy_path in handle else None
        records = batch_records(handle)
        offered = handle.attrs.get(EVENTS_OFFERED)
        mode = handle.attrs.get(WRITE_MODE)
        image = None
        if DATA_PATH in handle:
            data = handle[DATA_PATH]
            image = {"shape": list(data.shape[1:]), "dtype": str(data.dtype),
                     "compression": _compression(data)}
    events = len(n_peaks)
    hits = int(hit.sum()) if hit is not None else (events if mode in ("hits", "peaks") else None)
    offered = int(offered) if offered is not None else None
    finite = energy[np.isfinite(energy)] if energy is not None else np.zeros(0)
    return {
        "file": str(path),
        "in_progress": path.name.endswith(INPROGRESS_SUFFIX),
        "events": events,
        "peaks_total": int(n_peaks.sum()),
        "peaks_mean": float(n_peaks.mean()) if events else None,
        "peaks_median": float(np.median(n_peaks)) if events else None,
        "peaks_min": int(n_peaks.min()) if events else None,
        "peaks_max": int(n_peaks.max()) if events else None,
        "hits": hits,
        "events_offered": offered,
        "hit_fraction": hits / offered if hits is not None and offered else None,
        "energy_min_eV": float(finite.min()) if finite.size else None,
        "energy_max_eV": float(finite.max()) if finite.size else None,
        "energy_nonfinite": int(energy.size - finite.size) if energy is not None else 0,
        "image": image,
        "batches": len({r["batch"] for r in records if r["events"]}),
        "duplicates_dropped": sum(1 for r in records if r.get("duplicate_of")),
        "batch_ids": sorted({r["batch"] for r in records if r["events"]}),
    }


def _compression(dataset: h5py.Dataset) -> str:
    if dataset.compression in ("gzip", "lzf", "szip"):
        return str(dataset.compression)
    plist = dataset.id.get_create_plist()
    names = []
    for index in range(plist.get_nfilters()):
        filter_id, _, values, _ = plist.get_filter(index)
        if filter_id == hdf5plugin.Bitshuffle.filter_id:
            names.append("bitshuffle" + _BITSHUFFLE_CODECS.get(values[4:5], ""))
        else:
            names.append(f"filter {filter_id}")
    return "+".join(names) or "none"


def _total(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    events = sum(s["events"] for s in summaries)
    peaks = sum(s["peaks_total"] for s in summaries)
    hits = [s["hits"] for s in summaries]
    offered = [s["events_offered"] for s in summaries]
    known = None not in hits and None not in offered and sum(offered) > 0
    lows = [s["energy_min_eV"] for s in summaries if s["energy_min_eV"] is not None]
    highs = [s["energy_max_eV"] for s in summaries if s["energy_max_eV"] is not None]
    return {
        "file": f"total ({len(summaries)} files)",
        "events": events,
        "peaks_total": peaks,
        "peaks_mean": peaks / events if events else None,
        "peaks_min": min((s["peaks_min"] for s in summaries if s["events"]), default=None),
        "peaks_max": max((s["peaks_max"] for s in summaries if s["events"]), default=None),
        "hits": sum(hits) if None not in hits else None,
        "events_offered": sum(offered) if None not in offered else None,
        "hit_fraction": sum(hits) / sum(offered) if known else None,
        "energy_min_eV": min(lows, default=None),
        "energy_max_eV": max(highs, default=None),
        "energy_nonfinite": sum(s["energy_nonfinite"] for s in summaries),
        "batches": sum(s["batches"] for s in summaries),
        "duplicates_dropped": sum(s["duplicates_dropped"] for s in summaries),
    }


def _line(summary: dict[str, Any]) -> str:
    parts = [summary["file"]]
    if summary.get("in_progress"):
        parts.append("(still being written)")
    parts.append(f"events {summary['events']}")
    if summary["events"]:
        median = summary.get("peaks_median")
        parts.append(
            f"peaks/event mean {summary['peaks_mean']:.1f}"
            + (f" median {median:g}" if median is not None else "")
            + f" min {summary['peaks_min']} max {summary['peaks_max']}"
        )
    if summary["hit_fraction"] is not None:
        parts.append(
            f"hit fraction {summary['hit_fraction']:.3f} "
            f"({summary['hits']} of {summary['events_offered']})"
        )
    else:
        parts.append("hit fraction unknown")
    if summary["energy_min_eV"] is not None:
        parts.append(f"energy {summary['energy_min_eV']:.1f}-{summary['energy_max_eV']:.1f} eV")
    else:
        parts.append("energy unknown")
    if summary.get("energy_nonfinite"):
        parts.append(f"energy not finite in {summary['energy_nonfinite']} events")
    if summary.get("duplicates_dropped"):
        parts.append(f"{summary['duplicates_dropped']} batches dropped as written twice")
    if summary.get("duplicate_batches"):
        parts.append(
            f"DUPLICATES: {len(summary['duplicate_batches'])} batches in more than one file"
        )
    image = summary.get("image")
    if image:
        shape = "x".join(str(v) for v in image["shape"])
        parts.append(f"image {shape} {image['dtype']} {image['compression']}")
    elif "image" in summary:
        parts.append("no image")
    return "  ".join(parts)
