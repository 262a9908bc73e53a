"""A small named actor where replicas post their state, so any ingress can show every replica.

Serve routes each request to one replica, but ``/status`` must show all of them: the GPU of every
PeakNet replica, and the frame counts of every ingress when several pull the sockets
(``multi-gpu.yaml``). Each replica posts under its own id: the ingresses when their counts change
and at least every second, the PeakNet replicas every ``GPU_POST_INTERVAL_S``. A PeakNet replica
that stops cleanly takes its post back; ``read`` leaves out the post of one that died once it is
older than ``max_age_s``.

Ingress posts are an account, not a view: ``totals`` keeps the last post of every ingress replica
of the application's lifetime (``run``: the Ingress deployment's start time, see
``application_run``), those that stopped (a final post) or died (no post for ``max_age_s``:
marked dead for good) included, so the service's counts outlive its replicas and in-place updates
(``peaknet_serve.service.run_account``). The open batches of a dead one are looked up in the
batch tables of the writers' CXI files by a live ingress (``TO_RESOLVE`` in ``totals``, then
``resolve``).
"""

from __future__ import annotations

import logging
from typing import Any

import ray
from ray.actor import ActorHandle
from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE
from ray.serve.generated.serve_pb2 import DeploymentRoute

from peaknet_serve.service.run_account import RunAccount
from peaknet_serve.service.totals import Resolution

logger = logging.getLogger(__name__)

NAMESPACE = "peaknet-serve"
GPU_POST_INTERVAL_S = 5.0
"""How often a PeakNet replica posts its GPU (apart from Serve's health check period)."""


@ray.remote(num_cpus=0)
class StatusBoard:
    """Latest post of each replica, per topic ("ingress", "peaknet")."""

    def __init__(self) -> None:
        self._accounts: dict[str, RunAccount] = {}

    def _account(self, topic: str) -> RunAccount:
        return self._accounts.setdefault(topic, RunAccount())

    def post(
        self, topic: str, replica: str, body: dict[str, Any], run: float | None = None
    ) -> None:
        """Keep ``body`` as ``replica``'s latest (``RunAccount.post``)."""
        self._account(topic).post(replica, body, run)

    def totals(
        self,
        topic: str,
        max_age_s: float,
        replica: str | None = None,
        body: dict[str, Any] | None = None,
        run: float | None = None,
    ) -> dict[str, Any]:
        """Every replica's counts added up (``RunAccount.totals``), after posting ``body`` when
        given."""
        if replica is not None and body is not None:
            self.post(topic, replica, body, run)
        return self._account(topic).totals(max_age_s)

    def resolve(self, topic: str, replica: str, resolution: Resolution) -> None:
        """What became of dead ``replica``'s open batches (``resolve_open_batches``)."""
        self._account(topic).resolve(replica, resolution)

    def forget(self, topic: str, replica: str) -> None:
        self._account(topic).forget(replica)

    def read(self, topic: str, max_age_s: float) -> dict[str, dict[str, Any]]:
        """Posts younger than ``max_age_s``, by replica id, each with its ``age_s``."""
        return self._account(topic).read(max_age_s)


def application_run(app_name: str, deployment: str = "Ingress") -> float | None:
    """The lifetime of application ``app_name``: its ``deployment``'s start time (s).

    Serve keeps a deployment's start time when the application is updated in place (replica
    counts, ``user_config``, a new import of the same app) and sets a new one only when the
    deployment is created again after a delete, unlike ``last_deployed_time_s``, which every
    update renews. None when the controller does not answer (the posts then join the current
    account).
    """
    try:
        controller = ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
        info = ray.get(controller.get_deployment_info.remote(deployment, app_name), timeout=30)
        return DeploymentRoute.FromString(info).deployment_info.start_time_ms / 1000
    except Exception as exc:
        logger.warning(
            "no start time for %s (%s): the account joins the current run", app_name, exc
        )
        return None


def status_board(app_name: str) -> ActorHandle:
    """The board of application ``app_name``, created by the first replica that asks."""
    return StatusBoard.options(
        name=f"status-board-{app_name}",
        namespace=NAMESPACE,
        get_if_exists=True,
        lifetime="detached",
    ).remote()
