"""``peaknet-serve push``: the flags of ``pusher.push_frames``, a synthetic LCLStreamer."""

from __future__ import annotations

import argparse
import logging
import sys

from peaknet_serve.errors import PeakNetServeError
from peaknet_serve.pusher import push_frames
from peaknet_serve.wire.config import FieldMap
from peaknet_serve.wire.encode import HDF5_COMPRESSIONS, NPZ_COMPRESSIONS

logger = logging.getLogger(__name__)

HELP = "push synthetic LCLStreamer batches (diffraction-like frames with known peaks) to a socket"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``push`` flags."""
    defaults = FieldMap()
    add = parser.add_argument
    add("--address", nargs="+", default=["tcp://127.0.0.1:12321"], help="socket URL(s)")
    add("--transport", choices=("nng", "zmq"), default="nng", help="socket library")
    add("--mode", choices=("dial", "listen"), default="dial", help="dial (LCLStreamer) or listen")
    add("--format", dest="fmt", choices=("hdf5", "npz"), default="hdf5", help="payload format")
    add(
        "--compression",
        default="none",
        choices=sorted(set(HDF5_COMPRESSIONS + NPZ_COMPRESSIONS)),
        help="hdf5: none, gzip[_with_shuffle], bitshuffle_with_lz4/zstd, zfp; npz: none, deflate",
    )
    add("--level", type=int, default=3, help="compression level (LCLStreamer default 3)")
    add("--dtype", choices=("float64", "float32", "uint16", "int32"), default="float32")
    add("--frames", type=int, default=64, help="events to send")
    add("--batch-size", type=int, default=16, help="events per message")
    add("--shape", type=int, nargs="+", default=[512, 512], help="H W, or P H W for panels")
    add("--rate", type=float, default=0.0, help="frames per second (0 = as fast as possible)")
    add("--peaks", type=int, default=30, help="spots per hit frame")
    add("--hit-fraction", type=float, default=0.5, help="fraction of frames with spots")
    add("--seed", type=int, default=0)
    add("--rank", type=int, default=0, help="pusher rank: each sends its own events")
    add("--wavelength-nm", type=float, default=0.13)
    add("--image-path", default=defaults.image, help="dataset path of the image")
    add("--wavelength-path", default=defaults.wavelength)
    add("--timestamp-path", default=defaults.timestamp)
    add("--no-channel-axis", action="store_true", help="send (B, H, W) instead of (B, 1, H, W)")
    add("--truth", default=None, help="write ground truth here (.jsonl, or .h5/.hdf5)")
    add("--connect-timeout", type=float, default=30.0, help="seconds to wait for the receiver")
    add(
        "--linger",
        type=float,
        default=5.0,
        help="seconds the socket stays open after the last send, so a receiver that applies "
        "backpressure still takes the last messages (nng has no linger of its own)",
    )
    add(
        "--cycle",
        type=int,
        default=0,
        help="reuse the images of this many frames under new event numbers (0 = all new): "
        "making large frames takes more CPU than a full-speed load test can spend",
    )
    add("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run ``push`` from parsed arguments; 0 on success, 1 on a reported error."""
    if len(args.shape) not in (2, 3):
        logger.error("--shape takes H W or P H W, got %s", args.shape)
        return 1
    try:
        summary = push_frames(
            address=args.address,
            transport=args.transport,
            mode=args.mode,
            fmt=args.fmt,
            compression=args.compression,
            level=args.level,
            dtype=args.dtype,
            frames=args.frames,
            batch_size=args.batch_size,
            shape=args.shape,
            rate=args.rate,
            peaks=args.peaks,
            hit_fraction=args.hit_fraction,
            seed=args.seed,
            rank=args.rank,
            wavelength_nm=args.wavelength_nm,
            fields=FieldMap(
                image=args.image_path,
                wavelength=args.wavelength_path,
                timestamp=args.timestamp_path,
            ),
            channel_axis=not args.no_channel_axis,
            truth_path=args.truth,
            connect_timeout_s=args.connect_timeout,
            linger_s=args.linger,
            progress=not args.no_progress,
            cycle=args.cycle,
        )
    except PeakNetServeError as exc:
        logger.error("%s", exc)
        return 1
    sys.stdout.write(
        f"pushed {summary.frames} frames in {summary.messages} messages "
        f"({summary.bytes_sent / 1e6:.1f} MB, {summary.frames_per_s:.1f} frames/s)\n"
    )
    return 0
