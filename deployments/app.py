"""The application builder named by ``serve_config.yaml``: the whole graph is bound here.

No ``from __future__ import annotations`` in this module: Serve reads the builder's annotation
as a class to validate ``args:`` into it, and a string annotation would skip that validation.
"""

from ray.serve import Application

from deployments.ingress import Ingress
from deployments.peaknet import PeakNet
from deployments.writer import PeakFinderWriter
from peaknet_serve.config import ServiceConfig


def build_app(args: ServiceConfig) -> Application:
    """Ingress -> PeakNet -> PeakFinderWriter, from ``serve_config.yaml``'s validated ``args:``.

    Replicas get the configuration as a plain mapping (what Serve can carry in any deploy path)
    and validate it again into a ServiceConfig.
    """
    config = args.model_dump(mode="json")
    return Ingress.bind(PeakNet.bind(config), PeakFinderWriter.bind(config), config)
