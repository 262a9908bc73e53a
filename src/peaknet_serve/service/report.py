"""The account the ingress leaves when it stops: what was processed and what was not."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def write_shutdown_report(
    directory: str | os.PathLike[str], account: Mapping[str, Any]
) -> Path | None:
    """Write ``peaknet-shutdown-<time>-<pid>.json`` into ``directory``; None when it cannot.

    ``in_flight`` frames were received but never settled: their batches did not come back
    before the drain deadline, so whether they were written is unknown (see
    docs/operations.md). Never raises: the same account is in the log.
    """
    path = Path(directory) / f"peaknet-shutdown-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.json"
    record = {**account, "unsettled_frames": account.get("in_flight", 0), "time": time.time()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(record, indent=1) + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        logger.error("could not write the shutdown account into %s: %s", directory, exc)
        return None
    return path
