"""The Grafana dashboard asks only for metrics that exist: the ingress's ``peaknet_*`` (rendered
from a real ledger) and the ``ray_serve_*`` ones that Ray Serve 2.60 defines."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from peaknet_serve.service.accounting import FrameLedger
from peaknet_serve.service.metrics import ledger_registry, render

DASHBOARD = (
    Path(__file__).resolve().parent.parent / "deployments" / "grafana" / "peaknet-serve.json"
)
SUFFIXES = ("_total", "_bucket", "_count", "_sum")


def exprs() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b((?:peaknet|ray_serve)_[a-z_]+)\b", expr))


def base(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def test_every_peaknet_metric_of_the_dashboard_is_exported_by_the_ingress() -> None:
    ledger = FrameLedger()
    ledger.message_received(100)
    ledger.frames_received(4)
    ledger.settle(hits=1, non_hits=2, failed={"timeout": 1})
    ledger.message_rejected("not_hdf5", "bad")
    exported = render(ledger_registry(ledger, paused=lambda: False)).decode()
    names = {n for e in exprs() for n in metric_names(e) if n.startswith("peaknet_")}
    assert len(names) >= 6
    for name in names:
        assert re.search(rf"^{name}[{{ ]", exported, re.MULTILINE), f"{name} is not exported"


def test_every_ray_serve_metric_of_the_dashboard_is_defined_by_serve() -> None:
    serve = pytest.importorskip("ray.serve")
    source = "".join(
        path.read_text() for path in Path(serve.__file__).parent.joinpath("_private").glob("*.py")
    )
    names = {n for e in exprs() for n in metric_names(e) if n.startswith("ray_serve_")}
    assert len(names) >= 4
    for name in names:
        assert f'"{base(name).removeprefix("ray_")}"' in source, f"Serve defines no {name}"


def test_every_replica_metric_of_the_dashboard_is_defined_in_deployments_metrics() -> None:
    source = (DASHBOARD.parent.parent / "metrics.py").read_text()
    names = {n for e in exprs() for n in re.findall(r"\bray_(peaknet_[a-z_]+)", e)}
    assert len(names) >= 4
    for name in names:
        assert f'"{base(name)}"' in source, f"deployments/metrics.py defines no {name}"
