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
    from peaknet_serve.wire.config import SourceConfig

    source: dict[str, object] = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key.strip():
            raise ValueError(f"--set {pair!r}: expected KEY=VALUE, e.g. recv_buffer_messages=2")
        try:
            source[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ValueError(f"--set {pair!r}: the value is not YAML ({exc})") from None
    default = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    service = default["applications"][0]["args"]
    address = {"transport": transport, "addresses": [f"tcp://127.0.0.1:{port}"]}
    try:
        SourceConfig.model_validate(service.get("source", {}) | address | source)
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
        return asyncio.run(_bare_buffered(args, lclstreamer, transport))
    if args.bare:
        return _bare(args, lclstreamer, transport, int(source.get("recv_buffer_messages", 1000)))
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
    try:
        benchlib.wait_ready(service, URL, timeout=600)
        total = 0
        for run in range(args.runs):
            batches = rng.randint(args.min_batches, args.max_batches)
            events = batches * args.batch_size
            run_dir = workdir / f"run{run}"
            run_dir.mkdir()
            config = run_dir / "lclstreamer.yaml"
            config.write_text(yaml.safe_dump(_producer_config(args, transport, events)))
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
        f"{args.producer_linger_ms or 0} ms)\n"
    )
    return 0


def _bare(args: argparse.Namespace, lclstreamer: Path, transport: str, queue: int) -> int:
    """LCLStreamer into a socket that only receives: the producer's own loss."""
    import pynng
    import zmq

    rng = random.Random(args.seed)
    address = f"tcp://127.0.0.1:{args.port}"
    if transport == "zmq":
        ctx = zmq.Context()
        sock = ctx.socket(zmq.PULL)
        sock.setsockopt(zmq.RCVHWM, queue)
        sock.bind(address)
    else:
        sock = pynng.Pull0(listen=address, recv_buffer_size=min(queue, 8192))
    clean_runs = 0
    with tempfile.TemporaryDirectory(prefix="peaknet-tail-loss-") as workdir:
        for run in range(args.runs):
            batches = rng.randint(args.min_batches, args.max_batches)
            config = Path(workdir) / f"run{run}.yaml"
            config.write_text(
                yaml.safe_dump(_producer_config(args, transport, batches * args.batch_size))
            )
            producer = subprocess.Popen(
                [str(lclstreamer), "--config", str(config)],
                cwd=workdir,
                env=args.producer_env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            received, quiet_since = 0, None
            while quiet_since is None or time.monotonic() - quiet_since < 3.0:
                if _receive(sock, transport):
                    received, quiet_since = received + 1, None
                elif producer.poll() is not None and quiet_since is None:
                    quiet_since = time.monotonic()
            lost = batches - received
            clean_runs += lost == 0
            sys.stdout.write(f"run {run + 1}: {batches} batches, exit {producer.returncode}; ")
            sys.stdout.write(f"lost {lost} batches ({lost * args.batch_size} frames)\n")
            sys.stdout.flush()
    sock.close()
    sys.stdout.write(
        f"LCLStreamer {args.version} over {transport} into a bare socket (queue {queue}): "
        f"{clean_runs} of {args.runs} runs lost 0 frames ({args.batch_size} x "
        f"{args.shape[0]}x{args.shape[1]} float32 per batch; producer linger: "
        f"{args.producer_linger_ms or 0} ms)\n"
    )
    return 0


async def _bare_buffered(args: argparse.Namespace, lclstreamer: Path, transport: str) -> int:
    """LCLStreamer into the service's receive path, without Ray: the receiver's own loss."""
    from peaknet_serve.wire.buffer import buffered_source
    from peaknet_serve.wire.config import DecodeConfig, SourceConfig
    from peaknet_serve.wire.decode import decode_message

    default = yaml.safe_load((ROOT / "serve_config.yaml").read_text())["applications"][0]["args"]
    address = {"transport": transport, "addresses": [f"tcp://127.0.0.1:{args.port}"]}
    config = SourceConfig.model_validate(default.get("source", {}) | address | args.source)
    decode = DecodeConfig.model_validate(default.get("decode", {}))
    source = buffered_source(config.model_copy(update={"recv_timeout_s": 0.2}))
    await source.open()
    rng = random.Random(args.seed)
    clean_runs = 0
    with tempfile.TemporaryDirectory(prefix="peaknet-tail-loss-") as workdir:
        for run in range(args.runs):
            batches = rng.randint(args.min_batches, args.max_batches)
            producer_config = Path(workdir) / f"run{run}.yaml"
            producer_config.write_text(
                yaml.safe_dump(_producer_config(args, transport, batches * args.batch_size))
            )
            producer = subprocess.Popen(
                [str(lclstreamer), "--config", str(producer_config)],
                cwd=workdir,
                env=args.producer_env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            received, quiet_since = 0, None
            while quiet_since is None or time.monotonic() - quiet_since < 3.0:
                message = await source.receive()
                if message is not None:
                    decode_message(message, decode)
                    received, quiet_since = received + 1, None
                elif producer.poll() is not None and quiet_since is None:
                    quiet_since = time.monotonic()
            lost = batches - received
            clean_runs += lost == 0
            sys.stdout.write(f"run {run + 1}: {batches} batches, exit {producer.returncode}; ")
            sys.stdout.write(f"lost {lost} batches ({lost * args.batch_size} frames)\n")
            sys.stdout.flush()
    source.close()
    sys.stdout.write(
        f"LCLStreamer {args.version} over {transport} into the service's receive path without "
        f"Ray: {clean_runs} of {args.runs} runs lost 0 frames ({args.batch_size} x "
        f"{args.shape[0]}x{args.shape[1]} float32 per batch; source settings changed: "
        f"{args.source or 'none'}; producer linger: {args.producer_linger_ms or 0} ms)\n"
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


def _receive(sock: object, transport: str) -> bool:
    """One message within 0.2 s, or False."""
    import pynng

    if transport == "zmq":
        if not sock.poll(200):
            return False
        sock.recv(copy=False)
        return True
    try:
        sock.recv_timeout = 200
        sock.recv()
    except pynng.Timeout:
        return False
    return True


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


def _producer_config(args: argparse.Namespace, transport: str, events: int) -> dict[str, object]:
    return {
        "source_identifier": "bench-tail-loss",
        "skip_incomplete_events": False,
        "event_source": {"type": "InternalEventSource", "number_of_events_to_generate": events},
        "data_sources": {
            "detector_data": {
                "type": "GenericRandomNumpyArray",
                "array_shape": f"{args.shape[0]},{args.shape[1]}",
                "array_dtype": "float32",
            },
            "photon_wavelength": {"type": "FloatValue", "value": 0.124},
        },
        "processing_pipeline": {"type": "BatchProcessingPipeline", "batch_size": args.batch_size},
        "data_serializer": {
            "type": "HDF5BinarySerializer",
            "fields": {"detector_data": "/data/data", "photon_wavelength": "/data/wavelength"},
        },
        "data_handlers": [
            {
                "type": "BinaryDataStreamingDataHandler",
                "urls": [f"tcp://127.0.0.1:{args.port}"],
                "role": "client",
                "library": transport,
            }
        ],
    }


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
