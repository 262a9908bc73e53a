"""Once through ``serve run``: pattern_sim's lysozyme frames pushed to the running service as
LCLStreamer messages, its CXI file, ``peaknet-serve geom``, and the real indexamajig."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import httpx
import numpy as np
import pynng
import pytest
import yaml

from peaknet_serve.crystfel import LYSOZYME, CrystFEL, index, simulate_patterns
from peaknet_serve.wire.encode import encode_batch
from tests.conftest import free_port
from tests.serve_app import app_config, settled, wait_for
from tests.test_crystfel_cxi import BRIGHT, SIM_GEOMETRY, _assert_same_peaks, _geom

ROOT = Path(__file__).resolve().parents[1]
FRAMES = 4
WAVELENGTH_NM = 12.3984198 / 9.5 / 10  # 9.5 keV


@pytest.mark.cluster
@pytest.mark.slow
def test_lysozyme_pushed_to_serve_run_is_indexed_from_its_cxi_file(
    crystfel: CrystFEL, tmp_path: Path
) -> None:
    sim_geom = tmp_path / "det.geom"
    sim_geom.write_text(SIM_GEOMETRY)
    cell = LYSOZYME.write(tmp_path / "lyso.cell")
    frames = simulate_patterns(
        crystfel, cell, sim_geom, tmp_path / "frames", FRAMES, photons_per_pulse=BRIGHT
    )
    images = np.stack([h5py.File(f)["/data/data"][()] for f in frames]).astype(np.float32)

    port, http_port = free_port(), free_port()
    # every frame written: indexamajig is to read each event, hit or not
    app = app_config(tmp_path, port, output={"geometry_file": str(sim_geom), "write_mode": "all"})
    app["args"]["hits"] = {"min_peaks": 5}
    config = tmp_path / "serve_config.yaml"
    config.write_text(yaml.safe_dump({
        "http_options": {"host": "127.0.0.1", "port": http_port}, "applications": [app]}))
    url = f"http://127.0.0.1:{http_port}"
    log = (tmp_path / "serve.log").open("w")
    serve = subprocess.Popen(
        [str(Path(sys.executable).with_name("serve")), "run", str(config)],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        env={key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"},
    )
    try:
        def ready() -> bool:
            assert serve.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            return httpx.get(f"{url}/readyz", timeout=10).status_code == 200

        wait_for(ready, timeout=300, what="serve run")
        message = encode_batch({
            "/data/data": images[:, None],
            "/data/wavelength": np.full(FRAMES, WAVELENGTH_NM),
            "/data/timestamp": np.arange(1, FRAMES + 1, dtype=np.uint64),
        }, fmt="hdf5")
        with pynng.Push0(dial=f"tcp://127.0.0.1:{port}", send_timeout=30000) as push:
            push.send(message)  # the socket stays open until the service has the frames
            wait_for(lambda: settled({"http": url}, FRAMES), timeout=300,
                     what="the frames written")
        serve.send_signal(signal.SIGINT)  # Ctrl-C: drain and close the files
        serve.wait(timeout=180)
    finally:
        if serve.poll() is None:
            serve.kill()
        log.close()
    (cxi,) = sorted((tmp_path / "out").glob("*.cxi"))
    geom = _geom(cxi, tmp_path / "out.geom")
    chunks = index(crystfel, [cxi], geom, cell, tmp_path / "cxi.stream",
                   extra_args=["--no-revalidate"])
    assert len(chunks) == FRAMES
    _assert_same_peaks(chunks, cxi)
    assert [round(chunk.photon_energy_ev) for chunk in chunks] == [9500] * FRAMES
    assert sum(chunk.indexed for chunk in chunks) >= 3, [
        (len(c.peaks), c.indexed_by) for c in chunks]
