"""Tail loss: frames the real LCLStreamer pushed that never reached the service.

Starts the service as an operator does (``peaknet-serve run`` on the embedded default config,
CPU demo model, default receive buffer; only the transport, port and output folder set), then
runs LCLStreamer ``--runs`` times, each pushing a random 10-40 batches and exiting right after its
last send, as it does. The model is slower than the producer, so batches queue in the service.
After each run it waits until the service has settled what it received and counts the frames
that never arrived. Prints one line per run and the number of runs that lost nothing.

``--bare`` replaces the service by a bare PULL socket in this process that does nothing but
receive (a queue of ``recv_buffer_messages``, 1000 unless ``--set``): what is lost then is lost
on the producer's side, whatever the receiver does. ``--bare --buffered`` receives instead through
the service's own receive path (``wire.buffer.buffered_source`` on the default source settings:
the socket read in its own thread into the receive buffer, with its peer watch) and decodes each
message, in this process, without Ray: what the service loses beyond that is lost in its process.

What LCLStreamer keeps of its last batch depends on its host's TCP send-buffer limit (the third
field of ``net.ipv4.tcp_wmem``) against the batch: each summary line prints both
(docs/benchmarks.md, "The producer host's TCP send buffer").

``--producer-linger-ms N`` (main only) runs LCLStreamer with the producer-side fix of
docs/operations.md: its socket closes with ``LINGER N`` instead of 0, so its exit waits up to N ms
for the queued batches to be sent (a ``sitecustomize`` on its ``PYTHONPATH`` wraps
``zmq.Socket.close``; LCLStreamer itself is unchanged).

    .venv/bin/python scripts/bench_tail_loss.py --version main --runs 10
    .venv/bin/python scripts/bench_tail_loss.py --version 0.3 --runs 10
    .venv/bin/python scripts/bench_tail_loss.py --version main --runs 10 --bare
    .venv/bin/python scripts/bench_tail_loss.py --version main --runs 10 --bare --buffered

Needs LCLStreamer (``../shared/lclstreamer/setup.sh``) and a free port 8000.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from tail_loss_runs import (  # noqa: E402
    bare_socket,
    producer_config,
    send_buffer_note,
    service_receive_path,
    source_config,
)

ROOT = Path(__file__).resolve().parent.parent
TRANSPORTS = {"main": "zmq", "0.3": "nng"}
URL = "http://127.0.0.1:8000"


def positive_int(text: str) -> int:
    """An argparse type: an integer above 0."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not above 0")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, checked before anything starts: ``--min-batches`` not above
    ``--max-batches``, and ``--set`` against the service's source section (``SourceConfig``),
    parsed into ``args.source`` (with ``--bare``, only ``recv_buffer_messages``). A problem is an
    argparse error (exit 2) naming it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", choices=sorted(TRANSPORTS), default="main")
    parser.add_argument("--runs", type=positive_int, default=10)
    parser.add_argument("--min-batches", type=positive_int, default=10)
    parser.add_argument("--max-batches", type=positive_int, default=40)
    parser.add_argument("--batch-size", type=positive_int, default=16)
    parser.add_argument(
        "--shape", type=positive_int, nargs=2, default=(256, 256), metavar=("H", "W")
    )
    parser.add_argument("--port", type=int, default=12321)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bare", action="store_true", help="a bare socket, no service")
    parser.add_argument(
        "--buffered",
        action="store_true",
        help="with --bare: the service's receive path (socket, receive buffer, peer watch, "
        "decoding) in this process, no Ray",
    )
    parser.add_argument(
        "--producer-linger-ms",
        type=int,
        default=None,
        help="main only: LCLStreamer closes its socket with this LINGER instead of 0",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a source setting to change from the default, e.g. recv_buffer_messages=2",
    )
    parser.add_argument(
        "--lclstreamer-prefix", default=os.environ.get("LCLSTREAMER_PREFIX", "/opt/lclstreamer")
    )
    args = parser.parse_args(argv)
    if args.min_batches > args.max_batches:
        parser.error(f"--min-batches {args.min_batches} is above --max-batches {args.max_batches}")
    if args.producer_linger_ms is not None and args.version != "main":
        parser.error("--producer-linger-ms applies to LCLStreamer main (zmq) only")
    try:
        args.source = source_settings(args.set, TRANSPORTS[args.version], args.port)
    except ValueError as exc:
        parser.error(str(exc))
    if args.buffered and not args.bare:
        parser.error("--buffered goes with --bare")
    unused = sorted(set(args.source) - {"recv_buffer_messages"})
    if args.bare and not args.buffered and unused:
        parser.error(f"--bare has no service: only --set recv_buffer_messages applies ({unused})")
    return args


def source_settings(pairs: list[str], transport: str, port: int) -> dict[str, object]:
    """``--set KEY=VALUE`` pairs (VALUE in YAML) as a mapping, once the service's source section
    with them (and this run's transport and address) passes ``SourceConfig``.

    Raises:
        ValueError: a pair without '=', a value that is not YAML, an unknown key or a bad value.
    """
    from pydantic import ValidationError

    from peaknet_serve.config import format_validation_error

    source: dict[str, object] = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key.strip():
            raise ValueError(f"--set {pair!r}: expected KEY=VALUE, e.g. recv_buffer_messages=2")
        try:
            source[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ValueError(f"--set {pair!r}: the value is not YAML ({exc})") from None
    try:
        source_config(transport, port, source)
    except ValidationError as exc:
        raise ValueError("--set: " + format_validation_error(exc, prefix="source.")) from None
    return source


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    lclstreamer = Path(args.lclstreamer_prefix) / args.version / "bin" / "lclstreamer"
    if not lclstreamer.exists():
        sys.stderr.write(f"{lclstreamer} is missing: run ../shared/lclstreamer/setup.sh\n")
        return 2
    transport = TRANSPORTS[args.version]
    rng = random.Random(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="peaknet-tail-loss-"))
    args.producer_env = _producer_env(args, workdir)
    service_config = workdir / "service.yaml"
    source = args.source
    if args.buffered:
        return asyncio.run(service_receive_path(args, lclstreamer, transport))
    if args.bare:
        return bare_socket(
            args, lclstreamer, transport, int(source.get("recv_buffer_messages", 1000))
        )
    service_config.write_text(
        yaml.safe_dump(_service_config(transport, args.port, workdir, source))
    )
    log = (workdir / "service.log").open("w")
    service = subprocess.Popen(
        [sys.executable, "-m", "peaknet_serve.cli", "run", str(service_config)],
        stdout=log,
        stderr=log,
        cwd=ROOT,
    )
    clean_runs = 0
    reader_niceness = None
    largest = 0
    try:
        benchlib.wait_ready(service, URL, timeout=600)
        total = 0
        for run in range(args.runs):
            batches = rng.randint(args.min_batches, args.max_batches)
            events = batches * args.batch_size
            run_dir = workdir / f"run{run}"
            run_dir.mkdir()
            config = run_dir / "lclstreamer.yaml"
            config.write_text(yaml.safe_dump(producer_config(args, transport, events)))
            started = time.perf_counter()
            with (run_dir / "lclstreamer.log").open("w") as plog:
                code = subprocess.run(
                    [str(lclstreamer), "--config", str(config)],
                    cwd=run_dir,
                    env=args.producer_env,
                    stdout=plog,
                    stderr=subprocess.STDOUT,
                    timeout=600,
                ).returncode
            pushed_s = time.perf_counter() - started
            total += events
            status = _settle(total)
            reader_niceness = status["receive_buffer"]["reader_niceness"]
            largest = status["receive_buffer"]["largest_message_bytes"]
            lost = total - status["received"]
            total = status["received"]  # the next run's count starts from what arrived
            clean_runs += lost == 0
            peak = status["receive_buffer"]["peak_bytes"] / 1e6
            sys.stdout.write(
                f"run {run + 1}: {batches} batches ({events} frames) pushed in {pushed_s:.1f} s, "
                f"exit {code}; lost {lost}; buffer peak {peak:.0f} MB\n"
            )
            sys.stdout.flush()
    finally:
        service.send_signal(signal.SIGINT)
        service.wait(timeout=300)
    sys.stdout.write(
        f"LCLStreamer {args.version} over {transport}: {clean_runs} of {args.runs} runs lost "
        f"0 frames ({args.batch_size} x {args.shape[0]}x{args.shape[1]} float32 per batch; "
        f"source settings changed: {source or 'none'}; producer linger: "
        f"{args.producer_linger_ms or 0} ms; the service's socket reader at niceness "
        f"{reader_niceness}; {send_buffer_note(largest)})\n"
    )
    return 0


LINGER_SITECUSTOMIZE = """\
import zmq

_close = zmq.Socket.close


def close(self, linger=None):
    _close(self, linger={linger})


zmq.Socket.close = close
"""


def _producer_env(args: argparse.Namespace, workdir: Path) -> dict[str, str]:
    """LCLStreamer's environment; with ``--producer-linger-ms``, a ``sitecustomize`` that closes
    its zmq socket with that linger (the producer-side fix)."""
    env = {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    if args.producer_linger_ms is None:
        return env
    site = workdir / "producer-site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        LINGER_SITECUSTOMIZE.format(linger=args.producer_linger_ms)
    )
    return env | {"PYTHONPATH": str(site)}


def _service_config(
    transport: str, port: int, workdir: Path, source: dict[str, object]
) -> dict[str, object]:
    config = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    config["http_options"]["host"] = "127.0.0.1"
    app = config["applications"][0]
    app["args"]["source"] |= {"transport": transport, "addresses": [f"tcp://127.0.0.1:{port}"]}
    app["args"]["source"] |= source
    app["args"]["output"]["output_dir"] = str(workdir / "out")
    app["args"]["quarantine_dir"] = str(workdir / "quarantine")
    return config


def _settle(expected: int, quiet_s: float = 5.0, timeout: float = 900) -> dict[str, object]:
    """/status once ``expected`` frames are in and settled, or once nothing has moved for
    ``quiet_s`` with nothing in flight or buffered (the rest never arrived)."""
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        status = httpx.get(f"{URL}/status", timeout=30).json()
        idle = status["in_flight"] == 0 and status["receive_buffer"]["messages"] == 0
        if idle and status["received"] >= expected:
            return status
        if status["received"] != last or not idle:
            last, since = status["received"], time.monotonic()
        elif time.monotonic() - since > quiet_s:
            return status
        time.sleep(0.25)
    raise RuntimeError(f"the service did not settle {expected} frames in {timeout:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
