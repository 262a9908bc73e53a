"""The application builder hands each deployment its own config sections, and only those
(no cluster: the bound graph is read, nothing is deployed)."""

from __future__ import annotations

import inspect
import sys
import typing
from pathlib import Path
from typing import Any

import pytest
from ray.serve import Application

from deployments.app import build_app, deployment_sections
from peaknet_serve.config import ServiceConfig

EXPECTED = {
    "Ingress": {"source", "decode", "peaks", "output", "ingress", "quarantine_dir"},
    "PeakNet": {"model", "engine", "warmup", "profiling"},
    "PeakFinderWriter": {"peaks", "hits", "output"},
}


@pytest.fixture
def config(tmp_path: Path) -> ServiceConfig:
    return ServiceConfig.model_validate(
        {
            "model": {"random_weights_seed": 0},
            "hits": {"min_peaks": 3},
            "output": {"output_dir": str(tmp_path / "out")},
            "quarantine_dir": str(tmp_path / "quarantine"),
            "ingress": {"drain_timeout_s": 7},
        }
    )


def bound(app: Application) -> dict[str, tuple[tuple[Any, ...], dict[str, Any]]]:
    """Every deployment of the graph: name -> (positional, keyword) constructor arguments."""
    deployment = app._bound_deployment
    found = {deployment.name: (deployment.init_args, deployment.init_kwargs)}
    for arg in (*deployment.init_args, *deployment.init_kwargs.values()):
        if isinstance(arg, Application):
            found |= bound(arg)
    return found


def user_class(app: Application) -> type:
    """The class as written in ``deployments/`` (``serve.ingress`` wraps it in a subclass)."""
    cls = app._bound_deployment.func_or_class
    return [c for c in cls.__mro__ if c.__module__.startswith("deployments.")][-1]


def test_each_deployment_is_bound_with_only_its_own_sections(config: ServiceConfig) -> None:
    app = build_app(config)
    graph = bound(app)
    assert set(graph) == set(EXPECTED)
    for name, (args, kwargs) in graph.items():
        assert set(kwargs) == EXPECTED[name], name
        for key, value in kwargs.items():
            assert value == getattr(config, key), (name, key)
        if name == "Ingress":  # the two handles, then sections by name
            assert [a._bound_deployment.name for a in args] == ["PeakNet", "PeakFinderWriter"]
        else:
            assert args == ()
    assert graph["PeakFinderWriter"][1]["hits"].min_peaks == 3
    assert graph["Ingress"][1]["quarantine_dir"] == config.quarantine_dir
    assert app._bound_deployment._deployment_config.graceful_shutdown_timeout_s == 7 + 15


def test_every_section_of_the_service_config_reaches_a_deployment(config: ServiceConfig) -> None:
    used = set().union(*deployment_sections(config).values())
    assert used == set(ServiceConfig.model_fields)


def test_constructor_signatures_name_exactly_the_sections_they_are_given(
    config: ServiceConfig,
) -> None:
    """The sections handed over are the deployments' typed keyword parameters, so a signature
    says what a deployment uses."""
    graph = {}

    def collect(app: Application) -> None:
        graph[app._bound_deployment.name] = user_class(app)
        for arg in app._bound_deployment.init_args:
            collect(arg)

    collect(build_app(config))
    sections = deployment_sections(config)
    for name, cls in graph.items():
        parameters = inspect.signature(cls.__init__).parameters
        keyword = {
            p.name
            for p in parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is inspect.Parameter.empty
        }
        assert keyword == set(sections[name]), name
        namespace = vars(sys.modules[cls.__module__])
        for key, value in sections[name].items():
            hint = eval(parameters[key].annotation, namespace)  # the module's own names
            assert isinstance(value, typing.get_args(hint) or hint), (name, key, hint)
