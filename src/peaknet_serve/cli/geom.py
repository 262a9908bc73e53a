"""``peaknet-serve geom --cxi FILE``: print a CrystFEL 0.11 geometry file for a CXI file we wrote.

The file and its notes are built by ``peaknet_serve.cxi.geom_text`` (what is written and why
is said there).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from peaknet_serve.cxi.format import INPROGRESS_SUFFIX
from peaknet_serve.cxi.geom_text import CameraLengthError, build
from peaknet_serve.errors import ConfigError

HELP = "print a CrystFEL geometry file for a CXI file written by peaknet-serve"


def _positive_metres(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text}: the detector distance must be above 0 m")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cxi", required=True, type=Path,
        help="a CXI file, closed (.cxi) or still being written (.cxi.inprogress)",
    )
    parser.add_argument(
        "--clen", type=_positive_metres, default=None,
        help="CrystFEL's clen in metres (default: the source geometry's, else the file's "
        "encoder field, else a FIXME placeholder). CrystFEL's camera length is clen + each "
        "panel's coffset: with a geometry whose coffset is not 0, clen is not the detector "
        "distance (the camera lengths are printed on stderr; <= 0 is refused)",
    )
    parser.add_argument(
        "--res", type=float, default=None,
        help="pixels per metre where the file has no geometry (default 10000: 100 um, ePix10k); "
        "ignored (with a note) when the file holds a geometry",
    )
    parser.add_argument("-o", "--output", type=Path, default=None, help="write here, not stdout")


def run(args: argparse.Namespace) -> int:
    try:
        built = build(args.cxi, clen=args.clen, res=args.res)
    except CameraLengthError as exc:
        sys.stderr.write(f"peaknet-serve geom: {args.cxi}: {exc}\n")
        return 2
    except (OSError, KeyError, ValueError, ConfigError) as exc:
        sys.stderr.write(f"peaknet-serve geom: cannot read {args.cxi}: {exc}\n")
        return 1
    if args.cxi.name.endswith(INPROGRESS_SUFFIX):
        sys.stderr.write(
            f"peaknet-serve geom: {args.cxi} is still being written; the geometry holds for "
            "its events so far and for the .cxi it becomes; run indexamajig on it with "
            "HDF5_USE_FILE_LOCKING=FALSE\n"
        )
    for note in built.notes:
        sys.stderr.write(f"peaknet-serve geom: {note}\n")
    if args.output is None:
        sys.stdout.write(built.text)
    else:
        args.output.write_text(built.text)
    return 0
