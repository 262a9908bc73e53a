"""The ``peaknet-serve`` command line: one entry point, one module per subcommand.

Each subcommand module exposes ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``; this table is the only place that lists them.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

SUBCOMMANDS: dict[str, str] = {
    "push": "peaknet_serve.pusher",
    "geom": "peaknet_serve.cxi.geom_cli",
    "inspect": "peaknet_serve.cxi.inspect_cli",
    "evaluate": "peaknet_serve.evaluate",
    "run": "deployments.launcher",
    "scale": "peaknet_serve.scale_cli",
    "status": "peaknet_serve.status_cli",
}


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with every subcommand registered from ``SUBCOMMANDS``."""
    parser = argparse.ArgumentParser(
        prog="peaknet-serve",
        description="Find Bragg peaks in LCLStreamer frames with PeakNet, and tools around it.",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default: INFO)")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, module_name in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen subcommand; returns the process exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
