"""Shared fixtures: free ports, and one real local Ray cluster for the tests that need Serve.

Markers (pyproject.toml): a test that uses ``ray_cluster`` is marked ``cluster`` here; tests that
start Ray another way carry the mark themselves. ``gpu`` tests are skipped without CUDA.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

# Ray >= 2.59 enables token auth by default; the throwaway test cluster needs none.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    cuda: bool | None = None
    for item in items:
        if "ray_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.cluster)
        if item.get_closest_marker("gpu") is not None:
            if cuda is None:
                import torch

                cuda = torch.cuda.is_available()
            if not cuda:
                item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU: pytest -m gpu on one"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[dict[str, str]]:
    """A local Ray with its dashboard, which serves the REST API that ``serve deploy`` uses.

    Yields the dashboard URL and the port Serve's HTTP proxy is to use (applications are deployed
    through the REST API, as operators do, so the proxy starts with the first deploy).
    """
    import ray
    from ray import serve

    dashboard_port = free_port()
    http_port = free_port()
    ray.init(
        num_cpus=8,
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        dashboard_port=dashboard_port,
        log_to_driver=False,
    )
    try:
        yield {
            "dashboard": f"http://127.0.0.1:{dashboard_port}",
            "http_port": str(http_port),
            "http": f"http://127.0.0.1:{http_port}",
        }
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture(scope="session")
def crystfel():
    """The real CrystFEL (``../shared/crystfel/build.sh``): skipped where absent; fails under CI."""
    from peaknet_serve.crystfel import find_crystfel

    found = find_crystfel()
    if found is None:
        message = "CrystFEL is not installed (scripts/test.sh builds it where it can; CI needs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found
