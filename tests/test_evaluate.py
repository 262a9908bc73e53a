"""``peaknet-serve evaluate``: matching, scores, the classical finder, CXI reading, the CLI."""

from __future__ import annotations

import argparse
import http.server
import json
import socket
import threading

import numpy as np
import pynng
import pytest

from peaknet_serve import cli
from peaknet_serve.accuracy import format_table, match_peaks, score
from peaknet_serve.classical_finder import baseline_peaks, threshold_mask
from peaknet_serve.cli import evaluate
from peaknet_serve.config import load_service_config
from peaknet_serve.cxi import CXIWriter
from peaknet_serve.cxi.config import CXIConfig
from peaknet_serve.evaluate import read_cxi_peaks
from peaknet_serve.peaks import Peaks
from peaknet_serve.pipeline import LocalPipeline
from peaknet_serve.service.stage import PeakStage
from peaknet_serve.synthetic import FrameTruth, SyntheticFrames, event_timestamp
from peaknet_serve.wire import decode_message


def free_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def make_peaks(yx: list[tuple[float, float]], *, n_found: int | None = None) -> Peaks:
    yx_arr = np.asarray(yx, dtype=np.float64).reshape(-1, 2)
    n = len(yx_arr)
    ones = np.ones(n)
    return Peaks(
        yx_arr[:, 1].copy(),
        yx_arr[:, 0].copy(),
        100 * ones,
        np.full(n, 5, np.int32),
        10 * ones,
        20 * ones,
        np.zeros(n, np.int32),
        n if n_found is None else n_found,
    )


def make_truth(event: int, yx: list[tuple[float, float]]) -> FrameTruth:
    yx_arr = np.asarray(yx, dtype=np.float64).reshape(-1, 2)
    n = len(yx_arr)
    return FrameTruth(
        event=event,
        timestamp=event_timestamp(event),
        wavelength_nm=0.13,
        panel=np.zeros(n, np.int32),
        y=yx_arr[:, 0].copy(),
        x=yx_arr[:, 1].copy(),
        intensity=np.full(n, 1000.0),
        sigma=np.ones(n),
    )


def test_match_counts_pairs_within_the_radius_only() -> None:
    truth = np.array([[10.0, 10.0], [50.0, 50.0], [90.0, 20.0]])
    found = np.array([[10.5, 10.0], [51.5, 50.0], [200.0, 200.0]])  # 0.5 px, 1.5 px, far
    match = match_peaks(truth, found, radius=1.5)
    assert (match.n_true, match.n_found, match.n_matched) == (3, 3, 2)
    np.testing.assert_allclose(np.sort(match.distances), [0.5, 1.5])
    assert match_peaks(truth, found, radius=1.4).n_matched == 1


def test_match_is_one_to_one() -> None:
    truth = np.array([[10.0, 10.0]])
    found = np.array([[10.2, 10.0], [9.9, 10.1]])  # a split peak: two finds, one spot
    match = match_peaks(truth, found)
    assert match.n_matched == 1
    assert match.distances[0] == pytest.approx(np.hypot(0.1, 0.1))


def test_match_is_optimal_where_greedy_is_not() -> None:
    # Greedy nearest-first pairs t1-f0 (0.6 px) and leaves t0 without a partner within 1 px;
    # the optimal assignment matches both.
    truth = np.array([[0.0, 0.0], [0.0, 1.4]])
    found = np.array([[0.0, 0.8], [0.0, 2.3]])
    match = match_peaks(truth, found, radius=1.0)
    assert match.n_matched == 2


def test_match_keeps_panels_apart_and_handles_empty() -> None:
    truth = np.array([[5.0, 5.0]])
    found = np.array([[5.0, 5.0]])
    assert match_peaks(truth, found, truth_panel=[0], found_panel=[1]).n_matched == 0
    assert match_peaks(truth, found, truth_panel=[2], found_panel=[2]).n_matched == 1
    empty = match_peaks(np.zeros((0, 2)), found)
    assert (empty.n_true, empty.n_found, empty.n_matched) == (0, 1, 0)
    assert match_peaks(truth, np.zeros((0, 2))).n_matched == 0


def test_score_recall_precision_errors_and_hits() -> None:
    spots = [(20.0 + 30 * i, 40.0) for i in range(12)]
    truths = [make_truth(0, spots), make_truth(1, [])]
    found_hit = [(y + 0.3, x) for y, x in spots[:10]] + [(300.0, 300.0)]  # 10 right, 1 wrong
    found = [make_peaks(found_hit), make_peaks([(5.0, 5.0)])]
    s = score(truths, found)
    assert (s.frames, s.n_true, s.n_found, s.n_matched) == (2, 12, 12, 10)
    assert s.recall == pytest.approx(10 / 12)
    assert s.precision == pytest.approx(10 / 12)
    assert s.mean_error == pytest.approx(0.3)
    assert s.p95_error == pytest.approx(0.3)
    assert s.hit_accuracy == 1.0  # 11 peaks >= 10: hit; 1 peak: no hit
    missed = score(truths, [make_peaks(found_hit[:5]), Peaks.empty()])
    assert missed.hit_accuracy == 0.5


def test_format_table_has_a_row_per_finder() -> None:
    s = score([make_truth(0, [(10.0, 10.0)])], [make_peaks([(10.0, 10.0)])])
    table = format_table({"peaknet": s, "threshold 5sd": s}, radius=1.5)
    rows = table.splitlines()
    assert rows[0].startswith("matches within 1.5 px")
    assert rows[-2].split()[:7] == ["peaknet", "1", "1", "1", "1", "1.0000", "1.0000"]
    assert rows[-1].startswith("threshold 5sd")


def test_classical_finder_finds_synthetic_spots() -> None:
    generator = SyntheticFrames(shape=(256, 256), peaks=12, hit_fraction=1.0, seed=5)
    images, truths = generator.batch(0, 3)
    s = score(truths, baseline_peaks(images, snr=5.0), hits=None)
    assert s.recall >= 0.95
    assert s.precision >= 0.95
    empty, _ = SyntheticFrames(shape=(256, 256), hit_fraction=0.0, seed=5).frame(0)
    assert threshold_mask(empty, snr=5.0).sum() < 5


def test_read_cxi_peaks_keys_events_by_timestamp(tmp_path) -> None:
    config = CXIConfig(output_dir=str(tmp_path), compression="bitshuffle_lz4")
    image = np.zeros((64, 64), np.float32)
    first = make_peaks([(10.0, 12.5), (30.25, 40.0)])
    second = make_peaks([(50.0, 8.0)])
    with CXIWriter(config, writer_id="t") as writer:
        writer.write(image, first, {"timestamp": np.uint64(event_timestamp(7))}, hit=True)
        writer.write(image, second, {"timestamp": np.uint64(event_timestamp(9))}, hit=True)
        assert writer.current_path is not None
    found = read_cxi_peaks(tmp_path.glob("*.cxi"))
    np.testing.assert_allclose(found[event_timestamp(7)].x, [12.5, 40.0])
    np.testing.assert_allclose(found[event_timestamp(7)].y, [10.0, 30.25])
    assert found[event_timestamp(9)].n_found == 1
    assert found[event_timestamp(9)].n_pixels.tolist() == [5]


def test_evaluate_library_prints_the_table(capsys, monkeypatch) -> None:
    monkeypatch.setitem(cli.SUBCOMMANDS, "evaluate", "peaknet_serve.cli.evaluate")
    argv = ["evaluate", "--library", "--frames", "4", "--batch-size", "2", "--hit-fraction", "1.0",
            "--fail-under", "0.9", "--no-progress"]  # fmt: skip
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "4 frames 512x512, seed 2, library (LocalPipeline)" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[-2:]}
    assert set(rows) == {"peaknet", "threshold"}
    assert rows["peaknet"][2] == "120"  # 4 frames x 30 true spots
    assert float(rows["peaknet"][5]) >= 0.9  # recall
    assert float(rows["peaknet"][6]) >= 0.9  # precision


class _FakeService:
    """The service's data path without Ray: nng PULL -> decode -> LocalPipeline masks ->
    PeakStage (the real CXI writer) -> ``/status``, all in threads of this process."""

    def __init__(self, address: str, output_dir: str) -> None:
        self.config = load_service_config(
            {
                "model": {"weights": "builtin:peaknet-demo"},
                "engine": {"device": "cpu"},
                "output": {"output_dir": output_dir, "events_per_file": 20},
            }
        )
        self.received = 0
        self._pipeline = LocalPipeline(self.config)
        self._sock = pynng.Pull0(listen=address, recv_timeout=100)
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._pump, daemon=True)
        service = self

        class Status(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the http.server API)
                body = json.dumps({"received": service.received, "in_flight": 0}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Status)
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"
        self._http_thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    def __enter__(self) -> _FakeService:
        self._worker.start()
        self._http_thread.start()
        return self

    def _pump(self) -> None:
        stage = PeakStage(
            self.config.peaks, self.config.hits, self.config.output, writer_id="fake"
        )
        while not self._stop.is_set():
            try:
                batch = decode_message(self._sock.recv())
            except pynng.Timeout:
                continue
            stage.process(self._pipeline.masks(batch.images), batch)
            stage.close()  # a reader in this process cannot open a file the writer holds
            self.received += len(batch)

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._worker.join()
        self._sock.close()
        self._http.shutdown()
        self._http.server_close()
        self._pipeline.close()


def test_evaluate_through_a_service_reads_its_cxi_files(tmp_path, capsys) -> None:
    address = free_address()
    with _FakeService(address, str(tmp_path / "out")) as service:
        parser = argparse.ArgumentParser()
        evaluate.add_arguments(parser)
        args = parser.parse_args(
            ["--frames", "24", "--batch-size", "8", "--shape", "128", "128", "--peaks", "12",
             "--address", address, "--url", service.url, "--output-dir", str(tmp_path / "out"),
             "--timeout", "180", "--no-progress", "--fail-under", "0.9"]
        )  # fmt: skip
        assert evaluate.run(args) == 0
    out = capsys.readouterr().out
    assert f"24 frames 128x128, seed 2, service at {service.url}" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[-2:]}
    truth = SyntheticFrames(seed=2, shape=(128, 128), peaks=12).batch(0, 24)[1]
    assert rows["peaknet"][2] == str(sum(t.n_peaks for t in truth))
    assert float(rows["peaknet"][9]) == 1.0  # hit accuracy: non-hits are absent from the files


def test_evaluate_without_a_service_says_what_to_do(caplog) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    assert evaluate.run(parser.parse_args(["--url", url, "--frames", "2", "--no-progress"])) == 1
    assert "use --library" in caplog.text


def test_written_files_are_the_finished_and_the_in_progress_ones(tmp_path) -> None:
    from peaknet_serve.cxi.format import written_files

    for name in ("a.cxi", "b.cxi.inprogress", "c.cxi.orphaned", "d.cxi.creating", "e.h5"):
        (tmp_path / name).touch()
    assert sorted(p.name for p in written_files(tmp_path)) == ["a.cxi", "b.cxi.inprogress"]
