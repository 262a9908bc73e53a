"""The PeakFinder/Writer deployment: peaks, the hit rule and one CXI file series per replica."""

from __future__ import annotations

import logging
import time

import numpy as np
import ray
from ray import serve

from deployments.metrics import WriterMetrics
from peaknet_serve.cxi.config import CXIConfig
from peaknet_serve.cxi.recovery import Liveness
from peaknet_serve.peaks import HitConfig, PeaksConfig
from peaknet_serve.service.outcome import BatchOutcome
from peaknet_serve.service.stage import PeakStage
from peaknet_serve.wire import FrameBatch

logger = logging.getLogger(__name__)


@serve.deployment(name="PeakFinderWriter", max_ongoing_requests=8)
class PeakFinderWriter:
    """Finds peaks in each frame's mask, judges hits and appends them to this replica's files.

    A write that fails comes back as ``BatchOutcome.write_error`` (the ingress retries it); the
    replica itself stays up and reports the problem in ``status``.

    Args:
        peaks, hits: how peaks are found in a mask and which frames are hits.
        output: where and how the CXI files are written.
    """

    def __init__(self, *, peaks: PeaksConfig, hits: HitConfig, output: CXIConfig) -> None:
        replica_id = serve.get_replica_context().replica_id
        writer_id = replica_id.unique_id
        self._stage = PeakStage(
            peaks,
            hits,
            output,
            writer_id=writer_id,
            alive=_replica_alive(replica_id.to_full_id_str()),
        )
        self._metrics = WriterMetrics()
        logger.info("writer %s writes under %s", writer_id, output.output_dir)

    def process(
        self,
        masks: np.ndarray,
        batch: FrameBatch,
        batch_id: str | None = None,
    ) -> BatchOutcome:
        started = time.perf_counter()
        outcome = self._stage.process(masks, batch, batch_id=batch_id)
        if outcome.write_error is not None:
            self._metrics.error("write")
        elif outcome.live is not None:
            self._metrics.judged(outcome.live.peaks_per_frame, hits=outcome.hits)
            self._metrics.written(time.perf_counter() - started)
        for reason, n in outcome.failed.items():
            self._metrics.error(reason, n)
        return outcome

    def status(self) -> dict[str, object]:
        return self._stage.status()

    def __del__(self) -> None:
        stage = getattr(self, "_stage", None)  # absent when __init__ failed
        if stage is not None:
            stage.close()


def _replica_alive(own_actor_name: str) -> Liveness:
    """Whether the PeakFinderWriter replica ``writer_id`` lives, from Ray's actor table (any
    node): Serve names a replica's actor after its id, in the "serve" namespace."""
    prefix = own_actor_name.rsplit("#", 1)[0]

    def alive(writer_id: str) -> bool | None:
        try:
            ray.get_actor(f"{prefix}#{writer_id}", namespace="serve")
        except ValueError:  # no such live actor: it died (Serve never restarts a replica actor)
            return False
        except Exception as exc:  # the cluster cannot be asked now: the files' pids decide
            logger.debug("cannot look writer %s up: %s", writer_id, exc)
            return None
        return True

    return alive
