"""``peaknet-serve status``: print the running service's frame accounting, or wait for it."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import httpx

HELP = "print the service's /status (optionally wait until N frames are accounted for)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", default="http://127.0.0.1:8000", help="ingress base URL (default: %(default)s)"
    )
    parser.add_argument(
        "--wait-frames",
        type=int,
        default=None,
        metavar="N",
        help="wait until at least N frames were received and none is in flight",
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds to wait (default: %(default)s)"
    )


def fetch_status(url: str) -> dict[str, Any]:
    response = httpx.get(f"{url.rstrip('/')}/status", timeout=10.0)
    response.raise_for_status()
    return response.json()


def settled(status: dict[str, Any], frames: int) -> bool:
    """All of ``frames`` received and every received frame written, judged or failed, counted
    over every ingress replica (``service``) when the answer has that."""
    counts = _counts(status)
    return int(counts["received"]) >= frames and int(counts["in_flight"]) == 0


def _counts(status: dict[str, Any]) -> dict[str, Any]:
    service = status.get("service")
    return service if isinstance(service, dict) else status


def run(args: argparse.Namespace) -> int:
    deadline = time.monotonic() + args.timeout
    while True:
        try:
            status = fetch_status(args.url)
        except httpx.HTTPError as exc:
            status = None
            error = f"{args.url} did not answer: {exc}"
        if status is not None and (args.wait_frames is None or settled(status, args.wait_frames)):
            sys.stdout.write(json.dumps(status, indent=2) + "\n")
            return 0
        if args.wait_frames is None or time.monotonic() > deadline:
            if status is not None:
                sys.stdout.write(json.dumps(status, indent=2) + "\n")
                received = _counts(status)["received"]
                error = f"only {received} of {args.wait_frames} frames settled"
            sys.stderr.write(f"peaknet-serve status: {error}\n")
            return 1
        time.sleep(0.5)
