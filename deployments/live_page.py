"""The live page's routes on the ingress's FastAPI app, and the replica counts it shows.

``add_live_page(app)`` adds ``GET /`` (the page) and ``GET /live/{name}`` (its script and style,
package data of ``peaknet_serve.live``). The page polls ``GET /live.json``, which the Ingress
answers with ``LiveBoard.snapshot(replicas=await replica_counts())``: that one needs the
replica's state, so it is a method of the Ingress class.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI, HTTPException, Response

from peaknet_serve.live import ASSETS, asset

logger = logging.getLogger(__name__)


def add_live_page(app: FastAPI) -> None:
    """Serve the live page from ``app``: ``GET /`` and ``GET /live/{name}``."""

    @app.get("/", include_in_schema=False)
    def live_page() -> Response:
        body, media_type = asset("index.html")
        return Response(body, media_type=media_type, headers={"Cache-Control": "no-cache"})

    @app.get("/live/{name}", include_in_schema=False)
    def live_asset(name: str) -> Response:
        if name not in ASSETS:
            raise HTTPException(404, f"no such file of the live page: {name}")
        body, media_type = asset(name)
        return Response(body, media_type=media_type, headers={"Cache-Control": "no-cache"})


async def replica_counts(timeout_s: float = 5.0) -> dict[str, int]:
    """RUNNING replicas per deployment of this replica's application ({} if Serve is slow)."""
    from ray import serve

    def ask() -> dict[str, int]:
        app_name = serve.get_replica_context().app_name
        deployments = serve.status().applications[app_name].deployments
        return {
            name: int(details.replica_states.get("RUNNING", 0))
            for name, details in deployments.items()
        }

    try:
        return await asyncio.wait_for(asyncio.to_thread(ask), timeout_s)
    except Exception as exc:  # the page still shows everything else
        logger.warning("live page: no replica counts: %s", exc)
        return {}
