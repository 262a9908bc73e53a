"""The ingress replicas' posts of one application lifetime, kept so the service's counts add up.

The status board (``deployments/board.py``) keeps one ``RunAccount`` per topic. ``run`` names
the application lifetime a post belongs to (the Ingress deployment's start time, which Serve
keeps across in-place updates such as ``peaknet-serve scale`` or a new ``user_config``, and
renews only when the application was deleted and deployed again). A post of a newer run starts
the account afresh: a new application, a new account. A replica that cannot tell its run
(``None``) posts into the current account, and the first run seen is adopted without dropping
the posts already there, so no post of a live replica of this application is ever dropped.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from peaknet_serve.service.totals import OPEN_BATCHES, Resolution, gone, service_totals

logger = logging.getLogger(__name__)

TO_RESOLVE = "to_resolve"
"""Key of ``totals``: dead replica -> its open batches, for a live ingress to look up."""


class RunAccount:
    """Latest post of each replica of one topic, with the replicas counted dead for good."""

    def __init__(self) -> None:
        self.run: float | None = None
        self.posts: dict[str, tuple[float, dict[str, Any]]] = {}
        self.dead: set[str] = set()
        self.resolved: dict[str, Resolution] = {}

    def post(self, replica: str, body: dict[str, Any], run: float | None = None) -> bool:
        """Keep ``body`` as ``replica``'s latest; False when it was not kept.

        A post of a newer ``run`` starts the account afresh (the application was deployed
        again); one of an older run belongs to a deleted application's replica that is still
        stopping, and one of a replica already counted dead came too late: both are ignored.
        """
        if run is not None and run != self.run:
            if self.run is not None and run < self.run:
                logger.warning("replica %s of an earlier deployment posted: ignored", replica)
                return False
            if self.run is not None:
                self.posts, self.dead, self.resolved = {}, set(), {}
            self.run = run
        if replica in self.dead:
            logger.warning("replica %s posted after it was counted dead", replica)
            return False
        self.posts[replica] = (time.time(), body)
        return True

    def totals(self, max_age_s: float) -> dict[str, Any]:
        """Every replica's counts added up (``service_totals``); replicas silent for
        ``max_age_s`` without a final post are counted dead, and their open batches are listed
        under ``TO_RESOLVE`` until a live ingress resolves them."""
        self.dead |= gone(self.posts, now=time.time(), max_age_s=max_age_s)
        to_resolve = {
            r: dict(self.posts[r][1].get(OPEN_BATCHES) or {})
            for r in self.dead
            if r not in self.resolved
        }
        totals = service_totals(
            {r: b for r, (_, b) in self.posts.items()}, self.dead, self.resolved
        )
        return totals | {TO_RESOLVE: to_resolve}

    def resolve(self, replica: str, resolution: Resolution) -> None:
        """What became of dead ``replica``'s open batches; the first answer stands, so the
        totals move once."""
        if replica in self.dead:
            self.resolved.setdefault(replica, dict(resolution))

    def forget(self, replica: str) -> None:
        self.posts.pop(replica, None)

    def read(self, max_age_s: float) -> dict[str, dict[str, Any]]:
        """Posts younger than ``max_age_s``, by replica id, each with its ``age_s``."""
        now = time.time()
        return {
            replica: body | {"age_s": round(now - posted, 1)}
            for replica, (posted, body) in sorted(self.posts.items())
            if now - posted <= max_age_s
        }
