"""The live page: batch summaries from real frames through the demo model, the board's
statistics, and the page itself in headless Chromium (Playwright) against a real HTTP server
that serves the same routes and ``/live.json`` the ingress does."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from deployments.live_page import add_live_page
from peaknet_serve import LocalPipeline
from peaknet_serve.live import ASSETS, BatchSummarizer, LiveBoard, asset, summarize_batch
from peaknet_serve.peaks import Judged, is_hit
from peaknet_serve.synthetic import SyntheticFrames
from tests.conftest import free_port
from tests.serve_app import (
    Pusher,
    app_config,
    deploy,
    get,
    settled,
    undeploy,
    wait_for,
    wait_ready,
)

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHAPE = (128, 128)
PEAKS = 8


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def batches() -> list[dict[str, Any]]:
    """Summaries of 6 batches of 8 synthetic frames, through the shipped demo model."""
    generator = SyntheticFrames(shape=SHAPE, peaks=PEAKS, hit_fraction=0.5, seed=5)
    summaries = []
    with LocalPipeline.from_config(
        {
            "model": {"preset": "peaknet-demo", "weights": "builtin:peaknet-demo"},
            "engine": {"device": "cpu"},
            "hits": {"min_peaks": 5},
        }
    ) as pipeline:
        for start in range(0, 48, 8):
            images, truth = generator.batch(start, 8)
            peaks = pipeline.process(images)
            judged = [
                Judged(index=i, peaks=p, hit=is_hit(p.n_found, pipeline.config.hits))
                for i, p in enumerate(peaks)
            ]
            timestamps = np.array([t.timestamp for t in truth], dtype=np.uint64)
            summary = summarize_batch(images, judged, timestamps=timestamps)
            summaries.append({"summary": summary, "truth": truth, "peaks": peaks})
    return summaries


def test_a_summary_counts_the_batch_and_circles_the_last_hit_where_its_spots_are(
    batches: list[dict[str, Any]],
) -> None:
    for batch in batches:
        summary, truth, peaks = batch["summary"], batch["truth"], batch["peaks"]
        assert summary.frames == 8
        assert summary.peaks_per_frame == [p.n_found for p in peaks]
        assert summary.hits == sum(t.is_hit for t in truth)  # the demo model finds them all
        assert len(summary.peak_radius_px) == sum(len(p) for p in peaks)
        last = summary.last_hit
        if not any(t.is_hit for t in truth):
            assert last is None
            continue
        index = max(i for i, t in enumerate(truth) if t.is_hit)
        assert last["timestamp"] == truth[index].timestamp
        assert last["n_peaks"] == PEAKS
        assert (last["width"], last["height"], last["scale"]) == (128, 128, 1)
        circles = np.stack([last["y"], last["x"]], axis=1)
        spots = np.stack([truth[index].y, truth[index].x], axis=1)
        distance = np.linalg.norm(circles[:, None] - spots[None], axis=2).min(axis=1)
        assert distance.max() < 1.5, distance
    assert any(b["summary"].last_hit for b in batches)


def test_a_big_frame_is_shrunk_with_its_peaks_and_panels_are_stacked() -> None:
    from peaknet_serve.peaks import Peaks

    images = np.zeros((1, 2, 400, 1000), dtype=np.float32)
    images[0, 1, 300, 900] = 1000.0
    one = np.array([1.0])
    peaks = Peaks(
        x=np.array([900.0]), y=np.array([300.0]), total_intensity=one, n_pixels=one,
        max_value=np.array([1000.0]), snr=one, panel=np.array([1]),
    )  # fmt: skip
    last = summarize_batch(images, [Judged(index=0, peaks=peaks, hit=True)]).last_hit
    assert last["scale"] == 3 and (last["width"], last["height"]) == (334, 267)
    assert (last["x"][0], last["y"][0]) == pytest.approx((900 / 3, 700 / 3), abs=0.5)


def test_masked_nan_pixels_do_not_blank_the_hit_image() -> None:
    import base64

    import cv2

    from peaknet_serve.peaks import Peaks

    images = np.random.default_rng(0).poisson(10, (1, 600, 600)).astype(np.float32)
    images[0, 300:310] = np.nan  # a module gap, masked by the pixel screen
    images[0, 100, 100] = 1000.0
    peaks = Peaks.empty()
    last = summarize_batch(images, [Judged(index=0, peaks=peaks, hit=True)]).last_hit
    png = np.frombuffer(base64.b64decode(last["png"]), dtype=np.uint8)
    pixels = cv2.imdecode(png, cv2.IMREAD_GRAYSCALE)
    assert pixels.max() == 255 and np.count_nonzero(pixels) > 0.1 * pixels.size


def test_the_summarizer_sends_at_most_one_hit_image_per_interval(
    batches: list[dict[str, Any]],
) -> None:
    clock = FakeClock()
    summarize = BatchSummarizer(image_interval_s=1.0, clock=clock)
    with_hits = [b for b in batches if b["summary"].hits]
    images, _ = SyntheticFrames(shape=SHAPE, peaks=PEAKS, hit_fraction=0.5, seed=5).batch(0, 8)
    judged = [
        Judged(index=i, peaks=p, hit=p.n_found >= 5) for i, p in enumerate(with_hits[0]["peaks"])
    ]
    no_hit = [Judged(index=i, peaks=p, hit=False) for i, p in enumerate(with_hits[0]["peaks"])]
    assert summarize(images, no_hit).last_hit is None
    assert summarize(images, judged).last_hit is not None
    clock.now += 0.5
    skipped = summarize(images, judged)
    assert skipped.last_hit is None and skipped.hits == with_hits[0]["summary"].hits
    clock.now += 0.6
    assert summarize(images, judged).last_hit is not None


def test_the_board_keeps_rates_histograms_and_the_last_hit(
    batches: list[dict[str, Any]],
) -> None:
    clock = FakeClock()
    board = LiveBoard(clock=clock, sample_s=1.0)
    empty = board.snapshot()
    assert empty["totals"] == {"frames": 0, "hits": 0, "hit_rate": None}
    assert empty["last_hit"] is None
    for batch in batches:
        clock.now += 2.0
        board.add(batch["summary"])
    board.add(None)
    snap = board.snapshot(replicas={"PeakNet": 2})
    frames = sum(b["summary"].frames for b in batches)
    hits = sum(b["summary"].hits for b in batches)
    assert snap["totals"] == {"frames": frames, "hits": hits, "hit_rate": round(hits / frames, 4)}
    assert snap["series"]["frames_per_s"] == [4.0] * len(batches)  # 8 frames every 2 s
    expected = [b["summary"].hits / 8 for b in batches]
    assert snap["series"]["hit_rate"] == pytest.approx(expected, abs=1e-4)
    counts = [n for b in batches for n in b["summary"].peaks_per_frame]
    histogram = snap["peaks_per_frame"]
    assert histogram["bin_width"] == 1
    assert histogram["counts"][0] == counts.count(0)
    assert histogram["counts"][PEAKS] == counts.count(PEAKS)
    assert sum(histogram["counts"]) == frames
    assert np.sum(snap["peakogram"]["counts"]) == sum(counts)
    last = [b["summary"].last_hit for b in batches if b["summary"].last_hit][-1]
    assert snap["last_hit"] == last
    assert snap["replicas"] == {"PeakNet": 2}


def test_every_asset_is_package_data() -> None:
    for name in ASSETS:
        body, media_type = asset(name)
        assert body and media_type.split("/")[0] == "text"
    page = asset("index.html")[0].decode()
    assert "live/charts.js" in page and "http" not in page.replace("http-equiv", "")
    with pytest.raises(KeyError):
        asset("../board.py")


@pytest.fixture
def live_server(batches: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The page's routes and a ``/live.json`` like the ingress's, on a real uvicorn server,
    with a feeder that adds one batch summary every 0.4 s (the frames flowing)."""
    import uvicorn
    from fastapi import FastAPI

    app = FastAPI()
    add_live_page(app)
    board = LiveBoard(sample_s=0.3)

    @app.get("/live.json")
    def live() -> dict[str, Any]:
        return board.snapshot(replicas={"Ingress": 1, "PeakNet": 2, "PeakFinderWriter": 2})

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = threading.Thread(target=server.run, daemon=True)
    serving.start()
    stop = threading.Event()

    def feed() -> None:
        i = 0
        while not stop.wait(0.4):
            board.add(batches[i % len(batches)]["summary"])
            i += 1

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield {"url": url, "board": board}
    finally:
        stop.set()
        server.should_exit = True
        feeder.join(5)
        serving.join(10)


def test_the_routes_serve_the_page_and_refuse_other_files(live_server: dict[str, Any]) -> None:
    url = live_server["url"]
    page = httpx.get(f"{url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert httpx.get(f"{url}/live/charts.js").headers["content-type"].startswith("text/javasc")
    assert httpx.get(f"{url}/live/board.py").status_code == 404


needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists() and not os.environ.get("CI"),
    reason="chromium is not installed (scripts/test.sh installs it where it can; CI must have it)",
)


@needs_chromium
def test_the_page_loads_updates_and_circles_the_peaks_of_the_latest_hit(
    live_server: dict[str, Any], tmp_path: Path
) -> None:
    from playwright import sync_api

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1160, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(live_server["url"] + "/")
            page.wait_for_function("Number(document.body.dataset.updates || 0) >= 1")
            first = page.text_content("#totals")
            page.wait_for_function("Number(document.body.dataset.updates || 0) >= 4")
            page.wait_for_function(
                "Number(document.getElementById('hit-rate').dataset.points || 0) >= 3"
            )
            assert page.text_content("#totals") != first, "the totals did not change"
            assert int(page.get_attribute("#frames-per-s", "data-points")) >= 3
            assert int(page.get_attribute("#peaks-per-frame", "data-bars")) >= 2  # 0 and 8
            assert int(page.get_attribute("#peakogram", "data-cells")) >= 1
            page.wait_for_function(
                "Number(document.getElementById('latest-hit').dataset.circles || 0) > 0"
            )
            assert int(page.get_attribute("#latest-hit", "data-circles")) == PEAKS
            # a circle is drawn in red where the canvas shows a peak
            red = page.evaluate(
                """() => {
                    const c = document.getElementById('latest-hit');
                    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                    let n = 0;
                    for (let i = 0; i < d.length; i += 4)
                        if (d[i] > 200 && d[i + 1] < 120 && d[i + 2] < 120) n++;
                    return n;
                }"""
            )
            assert red > 50 * PEAKS
            assert "PeakNet: 2" in page.text_content("#replicas")
            assert errors == []
            page.screenshot(path=str(tmp_path / "live-page.png"), full_page=True)
        finally:
            browser.close()
    assert (tmp_path / "live-page.png").stat().st_size > 10_000
    if os.environ.get("PEAKNET_UPDATE_SCREENSHOT"):  # docs/live-page.png is this screenshot
        shutil.copyfile(tmp_path / "live-page.png", ROOT / "docs" / "live-page.png")


@needs_chromium
@pytest.mark.slow
def test_the_page_of_a_running_service_follows_the_frames(
    ray_cluster: dict[str, str], tmp_path: Path
) -> None:
    """The real ingress, model and writer on a local Ray, frames pushed while the page is open."""
    from playwright import sync_api

    port = free_port()
    deploy(ray_cluster, app_config(tmp_path, port))
    pusher = Pusher(port, frames=96, batch_size=8, seed=9, rate=12.0)
    try:
        wait_ready(ray_cluster)
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1160, "height": 1000})
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.goto(ray_cluster["http"] + "/")
                page.wait_for_function("Number(document.body.dataset.updates || 0) >= 1")
                first = page.text_content("#totals")
                pusher.start()
                page.wait_for_function(
                    "Number(document.getElementById('latest-hit').dataset.circles || 0) > 0",
                    timeout=120_000,
                )
                assert page.text_content("#totals") != first, "the totals did not change"
                assert "PeakNet: 1" in page.text_content("#replicas")
                assert errors == []
            finally:
                browser.close()
        summary = pusher.result()
        wait_for(lambda: settled(ray_cluster, 96), timeout=180, what="96 frames to settle")
        live = get(ray_cluster, "/live.json").json()
        assert live["totals"]["frames"] == 96
        assert live["totals"]["hits"] == sum(t.is_hit for t in summary.truth)
    finally:
        undeploy(ray_cluster)
