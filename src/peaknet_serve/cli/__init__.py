"""The ``peaknet-serve`` command line: one entry point, one module per subcommand.

Each subcommand module exposes ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``. The library's subcommands are listed in ``SUBCOMMANDS``; subcommands that
need Ray (``run``, in ``deployments/launcher.py``) are not named here: they are the
``peaknet_serve.subcommands`` entry points of the installed distribution (pyproject.toml), so the
library never imports the deployments, and an install without them has no ``run``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
from collections.abc import Sequence
from importlib.metadata import entry_points

SUBCOMMANDS: dict[str, str] = {
    "push": "peaknet_serve.cli.push",
    "geom": "peaknet_serve.cli.geom",
    "inspect": "peaknet_serve.cli.inspect",
    "evaluate": "peaknet_serve.cli.evaluate",
    "scale": "peaknet_serve.cli.scale",
    "status": "peaknet_serve.cli.status",
}

ENTRY_POINT_GROUP = "peaknet_serve.subcommands"
"""Subcommands registered by the distribution (name = module), e.g. ``run``."""


def subcommand_modules() -> dict[str, str]:
    """Subcommand name -> module name: ``SUBCOMMANDS`` and the registered entry points."""
    registered = entry_points(group=ENTRY_POINT_GROUP)
    return SUBCOMMANDS | {ep.name: ep.value for ep in registered if ep.name not in SUBCOMMANDS}


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with every subcommand of ``subcommand_modules()`` registered."""
    parser = argparse.ArgumentParser(
        prog="peaknet-serve",
        description="Find Bragg peaks in LCLStreamer frames with PeakNet, and tools around it.",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default: INFO)")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, module_name in subcommand_modules().items():
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
