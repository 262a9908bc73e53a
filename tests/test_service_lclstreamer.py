"""The whole service (Serve on a local Ray, demo model on the CPU) fed by the real LCLStreamer:
main over zmq and 0.3 over nng, default receive buffer. Every frame is accounted for, the CXI
files hold the values and metadata LCLStreamer wrote, and in runs that end right after their last
send into a service slower than the producer the service reads the socket all along, its reader
at niceness 0 where Ray's workers run at 15 (where privileged); what the producer itself drops at
exit (LINGER 0, nng's close) is not asserted away (docs/benchmarks.md)."""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from peaknet_serve.wire.tcp_send_buffer import tcp_wmem_max
from tests import lclstreamer
from tests.conftest import free_port
from tests.serve_app import FRAME_SHAPE, app_config, deploy, get, status, undeploy, wait_for

RUNS = [(45, 10), (100, 4), (160, 4)]
"""(events, batch_size) per LCLStreamer run: 5 batches with a partial last one, then 25 and 40."""


def settled_or_quiet(cluster: dict[str, str], total: int) -> bool:
    """All ``total`` frames settled, or nothing in flight or buffered: the rest never came."""
    s = status(cluster)
    idle = s["in_flight"] == 0 and s["receive_buffer"]["messages"] == 0
    if idle and s["received"] < total:
        time.sleep(3.0)  # one more look: a batch may be on its way through the socket
        s = status(cluster)
        idle = s["in_flight"] == 0 and s["receive_buffer"]["messages"] == 0
    return idle


def may_lower_niceness() -> bool:
    """Whether a thread of a Ray worker started from this process may go from niceness 15 to 0,
    as the reader asks: CAP_SYS_NICE in the effective set (bit 23, capabilities(7)), or an
    RLIMIT_NICE of at least 20 (setrlimit(2))."""
    effective = next(
        line.split()[1]
        for line in Path("/proc/self/status").read_text().splitlines()
        if line.startswith("CapEff:")
    )
    limit = resource.getrlimit(resource.RLIMIT_NICE)[0]
    return bool(int(effective, 16) >> 23 & 1) or limit == resource.RLIM_INFINITY or limit >= 20


def cxi_frames(out_dir: Path) -> dict[bytes, dict[str, object]]:
    """Every event in the finished CXI files, keyed by its image bytes."""
    found: dict[bytes, dict[str, object]] = {}
    for path in sorted(out_dir.glob("*.cxi")):
        with h5py.File(path, "r") as f:
            data = f["/entry_1/data_1/data"][()]
            lcls = {key: f["/LCLS"][key][()] for key in f["/LCLS"]}
            for i, image in enumerate(data):
                found[image.tobytes()] = {key: values[i] for key, values in lcls.items()}
    return found


@pytest.mark.parametrize(
    "version", [pytest.param(v, marks=lclstreamer.needs(v)) for v in lclstreamer.VERSIONS]
)
def test_lclstreamer_into_the_service_every_frame_accounted_and_written_as_sent(
    version: str, ray_cluster: dict[str, str], tmp_path: Path
) -> None:
    transport = lclstreamer.VERSIONS[version]
    port = free_port()
    app = app_config(tmp_path, port, output={"write_mode": "all"})
    app["args"]["source"]["transport"] = transport
    deploy(ray_cluster, app)
    written: list[dict[str, np.ndarray]] = []
    try:
        wait_for(lambda: get(ray_cluster, "/readyz").status_code == 200, timeout=240, what="ready")
        total = first_run = 0
        for run, (events, batch_size) in enumerate(RUNS):
            run_dir = tmp_path / f"run{run}"
            run_dir.mkdir()
            config = lclstreamer.write_config(
                run_dir,
                url=f"tcp://127.0.0.1:{port}",
                library=transport,
                events=events,
                batch_size=batch_size,
                shape=FRAME_SHAPE,
                files_dir=run_dir / "written" if run == 0 else None,
            )
            lclstreamer.run(version, config, run_dir)
            total += events
            wait_for(
                lambda total=total: settled_or_quiet(ray_cluster, total),
                timeout=300,
                what=f"{total} frames to settle",
            )
            s = status(ray_cluster)
            # The service read all along; what either version may still lose is what it was
            # still sending when its exit raced (LINGER 0, nng's close), as into a receiver that
            # only receives (docs/benchmarks.md): for main, several of these small batches.
            assert s["receive_buffer"]["times_full"] == 0
            lost = total - s["received"]
            if version == "0.3":  # nng: at most the batch its close dropped
                assert lost <= batch_size, f"run {run}: {lost}"
            else:  # main: at most its SNDHWM of 5 batches and the one it was writing
                assert lost <= 6 * batch_size, f"run {run}: {lost}"
            total = s["received"]
            assert s["received"] == s["hits_written"] + s["non_hits"] + s["failed"]
            assert s["failed"] == 0 and s["messages_rejected"] == 0
            first_run = first_run if run else s["received"]
        written = lclstreamer.written_batches(tmp_path / "run0" / "written")
        assert s["last_message_age_s"] is not None and s["wrong_protocol_connections"] == 0
        assert s["receive_buffer"]["max_bytes"] == 4 * 1024**3
        # what a pusher closing with LINGER 0 keeps depends on these (wire.tcp_send_buffer)
        assert s["receive_buffer"]["tcp_wmem_max"] == tcp_wmem_max()
        smallest_batch = min(batch_size for _, batch_size in RUNS) * 4 * np.prod(FRAME_SHAPE)
        assert s["receive_buffer"]["largest_message_bytes"] > smallest_batch  # + HDF5's bytes
        # Ray's workers add 15 to the niceness they start at; the reader asks for 0
        ray_worker = min(os.getpriority(os.PRIO_PROCESS, 0) + 15, 19)
        assert s["receive_buffer"]["reader_niceness"] == (0 if may_lower_niceness() else ray_worker)
        assert s["metadata"]["frames_without_energy"] == 0
        ready = get(ray_cluster, "/readyz").json()
        assert {"connected_peers", "last_message_age_s"} <= set(ready)
    finally:
        undeploy(ray_cluster)

    frames = cxi_frames(tmp_path / "out")
    assert len(frames) == total  # write_mode "all": every frame received
    matched = 0
    for batch in written:
        for i, image in enumerate(batch["/data/data"]):
            event = frames.get(image.astype(np.float32).tobytes())  # pixel values as sent
            if event is None:
                continue  # one of the producer's own tail losses, counted above
            matched += 1
            ns = int(batch["/data/timestamp"][i])
            assert int(event["timestamp_original"]) == ns
            assert int(event["timestamp"]) == (ns // 10**9) << 32 | ns % 10**9
            assert event["wavelength"] == batch["/data/wavelength"][i]
            assert event["photon_energy_eV"] == pytest.approx(1239.84198 / 0.124, rel=1e-12)
            assert event["photon_energy_source"] == b"wavelength"
    assert matched == first_run  # every frame of the first run that arrived, as written
