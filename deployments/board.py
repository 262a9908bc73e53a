"""A small named actor where replicas post their state, so any ingress can show every replica.

Serve routes each request to one replica, but ``/status`` must show all of them: the GPU of every
PeakNet replica, and the frame counts of every ingress when several pull the sockets
(``multi-gpu.yaml``). Each replica posts under its own id: the ingresses every second, the PeakNet
replicas every ``GPU_POST_INTERVAL_S``. A replica that stops cleanly takes its post back;
the post of one that died is left out once it is older than the reader's ``max_age_s``.
"""

from __future__ import annotations

import time
from typing import Any

import ray
from ray.actor import ActorHandle

NAMESPACE = "peaknet-serve"
GPU_POST_INTERVAL_S = 5.0
"""How often a PeakNet replica posts its GPU (apart from Serve's health check period)."""


@ray.remote(num_cpus=0)
class StatusBoard:
    """Latest post of each replica, per topic ("ingress", "peaknet")."""

    def __init__(self) -> None:
        self._posts: dict[str, dict[str, tuple[float, dict[str, Any]]]] = {}

    def post(self, topic: str, replica: str, body: dict[str, Any]) -> None:
        self._posts.setdefault(topic, {})[replica] = (time.time(), body)

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


def add_up(posts: dict[str, dict[str, Any]], keys: tuple[str, ...]) -> dict[str, int]:
    """The sum of integer ``keys`` over the posts of several replicas."""
    return {key: sum(int(body.get(key, 0)) for body in posts.values()) for key in keys}
