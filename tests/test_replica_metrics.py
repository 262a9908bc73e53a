"""``deployments.metrics``: what a replica records reaches Ray's Prometheus endpoint, with the
names, tags and values the Grafana dashboard and the docs give."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest


def value(text: str, name: str, **tags: str) -> float:
    """The sum of ``name``'s samples whose labels include ``tags``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        labels, number = line.rsplit(" ", 1)
        if all(re.search(rf'\b{k}="{v}"', labels) for k, v in tags.items()):
            total += float(number)
    return total


RECORD_AND_SCRAPE = """
import os, sys, time
import httpx, ray

ray.init(num_cpus=1, include_dashboard=False)


@ray.remote(num_cpus=0)
class Replica:
    def record(self):
        from deployments.metrics import IngressMetrics, PeakNetMetrics, WriterMetrics

        ingress, model, writer = IngressMetrics(), PeakNetMetrics(), WriterMetrics()
        ingress.message_received(1000)
        ingress.frames_received(8)
        ingress.message_received(10)
        ingress.message_rejected("not_hdf5")
        ingress.settled(hits=3, non_hits=4, failed={"timeout": 1})
        ingress.batch.observe(0.2)
        ingress.in_flight.set(2)
        model.batch(frames=8, seconds=0.03)
        model.error(RuntimeError("CUDA error"))
        writer.judged([0, 12, 9, 0], hits=2)
        writer.written(0.004)
        writer.error("disk_full")


ray.get(Replica.remote().record.remote())
url = f"http://127.0.0.1:{ray._private.worker.global_worker.node.metrics_export_port}/metrics"
deadline = time.monotonic() + 90
while time.monotonic() < deadline:
    text = httpx.get(url, timeout=10).text
    if "ray_peaknet_writer_errors_total" in text:
        break
    time.sleep(0.5)
sys.stdout.write(text)
ray.shutdown()
"""


@pytest.mark.cluster
@pytest.mark.slow
def test_replica_metrics_reach_rays_prometheus_endpoint() -> None:
    """In a Ray of its own: on a node where Serve replicas already export these metrics (with
    their deployment tags), Ray keeps the first label set and drops a bare actor's samples."""
    done = subprocess.run(
        [sys.executable, "-c", RECORD_AND_SCRAPE],
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    )
    t = done.stdout
    assert value(t, "ray_peaknet_ingress_bytes_total") == 1010
    assert value(t, "ray_peaknet_ingress_frames_total", outcome="received") == 8
    assert value(t, "ray_peaknet_ingress_frames_total", outcome="hit_written") == 3
    assert value(t, "ray_peaknet_ingress_frames_total", outcome="failed_timeout") == 1
    assert value(t, "ray_peaknet_ingress_messages_total", result="rejected_not_hdf5") == 1
    assert value(t, "ray_peaknet_ingress_batches_in_flight") == 2
    assert value(t, "ray_peaknet_model_batch_frames_bucket", le="8.0") == 1
    assert value(t, "ray_peaknet_model_batch_frames_bucket", le="4.0") == 0
    assert value(t, "ray_peaknet_model_errors_total", kind="RuntimeError") == 1
    assert value(t, "ray_peaknet_writer_peaks_per_frame_count") == 4
    assert value(t, "ray_peaknet_writer_peaks_per_frame_bucket", le="0.5") == 2
    assert value(t, "ray_peaknet_writer_peaks_per_frame_bucket", le="9.5") == 3
    assert value(t, "ray_peaknet_writer_frames_total", verdict="non_hit") == 2
    assert value(t, "ray_peaknet_writer_errors_total", kind="disk_full") == 1
