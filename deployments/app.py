"""The application builder named by ``serve_config.yaml``: the whole graph is bound here.

No ``from __future__ import annotations`` in this module: Serve reads the builder's annotation
as a class to validate ``args:`` into it, and a string annotation would skip that validation.
"""

from ray.serve import Application

from deployments.ingress import Ingress
from deployments.peaknet import PeakNet
from deployments.writer import PeakFinderWriter
from peaknet_serve.config import ServiceConfig

SHUTDOWN_MARGIN_S = 15.0
"""Time past the drain for the writers to close and rename their files."""


def build_app(args: ServiceConfig) -> Application:
    """Ingress -> PeakNet -> PeakFinderWriter, from ``serve_config.yaml``'s validated ``args:``.

    Replicas get the configuration as a plain mapping (what Serve can carry in any deploy path)
    and validate it again into a ServiceConfig.
    """
    config = args.model_dump(mode="json")
    # Serve stops a replica this long after asking it to: the ingress must finish its drain
    # first, and the model and writer replicas must outlive the batches it drains.
    grace = args.ingress.drain_timeout_s + SHUTDOWN_MARGIN_S
    return Ingress.options(graceful_shutdown_timeout_s=grace).bind(
        PeakNet.options(graceful_shutdown_timeout_s=grace).bind(config),
        PeakFinderWriter.options(graceful_shutdown_timeout_s=grace).bind(config),
        config,
    )
