"""A small named actor where replicas post their state, so any ingress can show every replica.

Serve routes each request to one replica, but ``/status`` must show all of them: the GPU of every
PeakNet replica, and the frame counts of every ingress when several pull the sockets
(``multi-gpu.yaml``). Each replica posts under its own id: the ingresses when their counts change
and at least every second, the PeakNet replicas every ``GPU_POST_INTERVAL_S``. A PeakNet replica
that stops cleanly takes its post back; ``read`` leaves out the post of one that died once it is
older than ``max_age_s``.

Ingress posts are an account, not a view: ``totals`` keeps the last post of every ingress replica
of the deployment (``run``: when Serve deployed the application), those that stopped (a final
post) or died (no post for ``max_age_s``: marked dead for good) included, so the service's counts
outlive its replicas (``peaknet_serve.service.totals``). The open batches of a dead one are looked
up in the batch tables of the writers' CXI files by a live ingress (``TO_RESOLVE`` in ``totals``,
then ``resolve``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import ray
from ray.actor import ActorHandle

from peaknet_serve.service.totals import OPEN_BATCHES, Resolution, gone, service_totals

logger = logging.getLogger(__name__)

NAMESPACE = "peaknet-serve"
TO_RESOLVE = "to_resolve"
"""Key of ``totals``: dead replica -> its open batches, for a live ingress to look up."""
GPU_POST_INTERVAL_S = 5.0
"""How often a PeakNet replica posts its GPU (apart from Serve's health check period)."""


@ray.remote(num_cpus=0)
class StatusBoard:
    """Latest post of each replica, per topic ("ingress", "peaknet")."""

    def __init__(self) -> None:
        self._posts: dict[str, dict[str, tuple[float, dict[str, Any]]]] = {}
        self._runs: dict[str, float] = {}
        self._dead: dict[str, set[str]] = {}
        self._resolved: dict[str, dict[str, Resolution]] = {}

    def post(
        self, topic: str, replica: str, body: dict[str, Any], run: float | None = None
    ) -> None:
        """Keep ``body`` as ``replica``'s latest; a newer ``run`` starts the topic afresh, a post
        of an older run or of a replica already counted dead is ignored."""
        current = self._runs.get(topic)
        if run is not None and run != current:
            if current is not None and run < current:
                return
            self._posts.pop(topic, None)
            self._dead.pop(topic, None)
            self._resolved.pop(topic, None)
            self._runs[topic] = run
        if replica in self._dead.get(topic, ()):
            logger.warning("%s replica %s posted after it was counted dead", topic, replica)
            return
        self._posts.setdefault(topic, {})[replica] = (time.time(), body)

    def totals(
        self,
        topic: str,
        max_age_s: float,
        replica: str | None = None,
        body: dict[str, Any] | None = None,
        run: float | None = None,
    ) -> dict[str, Any]:
        """Every replica's counts added up (``service_totals``), after posting ``body`` when
        given; replicas silent for ``max_age_s`` without a final post are counted dead."""
        if replica is not None and body is not None:
            self.post(topic, replica, body, run)
        posts = self._posts.get(topic, {})
        dead = self._dead.setdefault(topic, set())
        dead |= gone(posts, now=time.time(), max_age_s=max_age_s)
        resolved = self._resolved.setdefault(topic, {})
        to_resolve = {
            r: dict(posts[r][1].get(OPEN_BATCHES) or {}) for r in dead if r not in resolved
        }
        totals = service_totals({r: b for r, (_, b) in posts.items()}, dead, resolved)
        return totals | {TO_RESOLVE: to_resolve}

    def resolve(self, topic: str, replica: str, resolution: Resolution) -> None:
        """What became of dead ``replica``'s open batches (``resolve_open_batches``); the first
        answer stands, so the totals move once."""
        if replica in self._dead.get(topic, ()):
            self._resolved.setdefault(topic, {}).setdefault(replica, dict(resolution))

    def forget(self, topic: str, replica: str) -> None:
        self._posts.get(topic, {}).pop(replica, None)

    def read(self, topic: str, max_age_s: float) -> dict[str, dict[str, Any]]:
        """Posts younger than ``max_age_s``, by replica id, each with its ``age_s``."""
        now = time.time()
        return {
            replica: body | {"age_s": round(now - posted, 1)}
            for replica, (posted, body) in sorted(self._posts.get(topic, {}).items())
            if now - posted <= max_age_s
        }


def status_board(app_name: str) -> ActorHandle:
    """The board of application ``app_name``, created by the first replica that asks."""
    return StatusBoard.options(
        name=f"status-board-{app_name}",
        namespace=NAMESPACE,
        get_if_exists=True,
        lifetime="detached",
    ).remote()
