"""``peaknet-serve evaluate``: score the model against synthetic frames with known peaks.

The scoring (two ways to get the peaks, the matching) is ``peaknet_serve.evaluate``; here are
the flags, the choice between ``--library`` and the service, and the table printed.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from peaknet_serve.accuracy import DEFAULT_RADIUS, format_table, score
from peaknet_serve.config import load_service_config
from peaknet_serve.errors import PeakNetServeError
from peaknet_serve.evaluate import evaluate_library, evaluate_service

logger = logging.getLogger(__name__)

HELP = "score the demo model (and a classical finder) against synthetic frames with known peaks"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``evaluate`` flags."""
    add = parser.add_argument
    add("--library", action="store_true", help="run LocalPipeline here instead of the service")
    add(
        "--config",
        default=None,
        help="service config (serve_config.yaml or its args); "
        "default: the demo model with the shipped weights",
    )
    add("--frames", type=int, default=1000, help="synthetic frames to score")
    add("--batch-size", type=int, default=16, help="frames per message / per model call")
    add("--shape", type=int, nargs=2, default=[512, 512], metavar=("H", "W"))
    add("--peaks", type=int, default=30, help="spots per hit frame")
    add("--hit-fraction", type=float, default=0.5, help="fraction of frames with spots")
    add("--seed", type=int, default=2, help="frame seed (training used others; the demo uses 1)")
    add("--rank", type=int, default=0, help="pusher rank (selects the block of event indices)")
    add("--radius", type=float, default=DEFAULT_RADIUS, help="match radius, pixels")
    add("--baseline-snr", type=float, default=5.0, help="classical finder threshold (noise sigmas)")
    add(
        "--fail-under",
        type=float,
        default=None,
        metavar="R",
        help="exit 1 if the model's recall or precision is below R",
    )
    add("--address", default="tcp://127.0.0.1:12321", help="service socket (service mode)")
    add("--transport", choices=("nng", "zmq"), default="nng", help="socket library (service mode)")
    add("--url", default="http://127.0.0.1:8000", help="service base URL (service mode)")
    add("--output-dir", default=None, help="the service's CXI directory (default: the config's)")
    add("--timeout", type=float, default=600.0, help="seconds to wait for the service to settle")
    add("--truth", default=None, help="also write the truth file here (service mode)")
    add("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run ``evaluate``; 0 when done (and above ``--fail-under``), 1 otherwise."""
    try:
        config = load_service_config(args.config) if args.config else None
        started = time.monotonic()
        evaluate = evaluate_library if args.library else evaluate_service
        truths, model_peaks, base_peaks = evaluate(args, config)
        seconds = time.monotonic() - started
    except PeakNetServeError as exc:
        logger.error("%s", exc)
        return 1
    hits = config.hits if config is not None else None
    scores = {
        "peaknet": score(truths, model_peaks, radius=args.radius, hits=hits),
        f"threshold {args.baseline_snr:g}sd": score(
            truths, base_peaks, radius=args.radius, hits=hits
        ),
    }
    path = "library (LocalPipeline)" if args.library else f"service at {args.url}"
    sys.stdout.write(
        f"{len(truths)} frames {args.shape[0]}x{args.shape[1]}, seed {args.seed}, {path}, "
        f"{seconds:.1f} s\n"
    )
    sys.stdout.write(format_table(scores, radius=args.radius) + "\n")
    model = scores["peaknet"]
    if args.fail_under is not None and min(model.recall, model.precision) < args.fail_under:
        sys.stderr.write(f"FAIL: recall or precision below {args.fail_under}\n")
        return 1
    return 0
