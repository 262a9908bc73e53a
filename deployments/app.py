"""The application builder named by ``serve_config.yaml``: the whole graph is bound here.

No ``from __future__ import annotations`` in this module: Serve reads the builder's annotation
as a class to validate ``args:`` into it, and a string annotation would skip that validation.
"""

from typing import Any

from ray.serve import Application

from deployments.ingress import Ingress
from deployments.peaknet import PeakNet
from deployments.writer import PeakFinderWriter
from peaknet_serve.config import ServiceConfig

SHUTDOWN_MARGIN_S = 15.0
"""Time past the drain for the writers to close and rename their files."""


def deployment_sections(config: ServiceConfig) -> dict[str, dict[str, Any]]:
    """Each deployment's constructor arguments: the validated sections it uses, and no others.

    Keyed by deployment name; the keys of each mapping are its ``__init__`` parameters.
    """
    return {
        "Ingress": {
            "source": config.source,
            "decode": config.decode,
            "peaks": config.peaks,
            "output": config.output,
            "ingress": config.ingress,
            "quarantine_dir": config.quarantine_dir,
        },
        "PeakNet": {
            "model": config.model,
            "engine": config.engine,
            "warmup": config.warmup,
            "profiling": config.profiling,
        },
        "PeakFinderWriter": {"peaks": config.peaks, "hits": config.hits, "output": config.output},
    }


def build_app(args: ServiceConfig) -> Application:
    """Ingress -> PeakNet -> PeakFinderWriter, from ``serve_config.yaml``'s validated ``args:``.

    The whole configuration is validated once, here (cross-section checks included); each
    deployment is handed only its own sections (``deployment_sections``), as pydantic objects.
    """
    sections = deployment_sections(args)
    # Serve stops a replica this long after asking it to: the ingress must finish its drain
    # first, and the model and writer replicas must outlive the batches it drains.
    grace = args.ingress.drain_timeout_s + SHUTDOWN_MARGIN_S
    return Ingress.options(graceful_shutdown_timeout_s=grace).bind(
        PeakNet.options(graceful_shutdown_timeout_s=grace).bind(**sections["PeakNet"]),
        PeakFinderWriter.options(graceful_shutdown_timeout_s=grace).bind(
            **sections["PeakFinderWriter"]
        ),
        **sections["Ingress"],
    )
