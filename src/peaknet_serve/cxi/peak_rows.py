"""The peak rows of a batch of events: CrystFEL's peakXPosRaw/peakYPosRaw/... and nPeaks."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import h5py
import numpy as np

from peaknet_serve.cxi.format import PEAK_FIELDS, RESULT_PATH
from peaknet_serve.cxi.layout import PanelLayout
from peaknet_serve.peaks.find import Peaks

logger = logging.getLogger(__name__)


def write_peak_rows(
    datasets: dict[str, h5py.Dataset],
    layout: PanelLayout,
    max_peaks: int,
    peaks_list: Sequence[Peaks],
    part: np.ndarray,
    start: int,
    stop: int,
) -> None:
    """Write the peaks of events ``part`` of ``peaks_list`` into rows ``start:stop``, positions
    in the stored (assembled) frame; an event with more than ``max_peaks`` keeps its strongest."""
    slots = max_peaks
    rows = {name: np.zeros((part.size, slots), dtype=np.float32) for name in PEAK_FIELDS}
    counts = np.zeros(part.size, dtype=np.int32)
    for row, event in enumerate(part):
        peaks = peaks_list[event]
        if len(peaks) > slots:
            strongest = np.argpartition(-peaks.total_intensity, slots - 1)[:slots]
            peaks = peaks.select(np.sort(strongest))
            logger.debug("event with %d peaks: kept the %d strongest", len(peaks), slots)
        count = len(peaks)
        counts[row] = count
        x, y = layout.to_stored(peaks.panel, peaks.x, peaks.y)
        for name, attribute in PEAK_FIELDS.items():
            value = (
                x if attribute == "x" else y if attribute == "y" else getattr(peaks, attribute)
            )
            rows[name][row, :count] = value
    for name, block in rows.items():
        datasets[f"{RESULT_PATH}/{name}"].write_direct(block, dest_sel=np.s_[start:stop])
    datasets[f"{RESULT_PATH}/nPeaks"][start:stop] = counts
