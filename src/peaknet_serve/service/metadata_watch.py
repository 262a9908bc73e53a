"""Counts batches whose metadata leave frames without a photon energy, and says how to fix it.

A message without a wavelength decodes fine, but every frame then gets photon energy NaN (or the
fixed ``decode.photon_energy_ev``), which CrystFEL cannot index with. Such batches are counted for
``/status`` and ``/metrics`` and logged once per run with the setting that fixes it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from peaknet_serve.wire import DecodeConfig, FrameBatch
from peaknet_serve.wire.metadata import ENERGY_SOURCE_KEY, FIXED, MISSING, WAVELENGTH_KEY

logger = logging.getLogger(__name__)


@dataclass
class MetadataWatch:
    """Batches without a wavelength, and frames whose energy is fixed or missing."""

    config: DecodeConfig
    batches_without_wavelength: int = 0
    frames_with_fixed_energy: int = 0
    frames_without_energy: int = 0
    _logged: bool = False

    def observe(self, batch: FrameBatch) -> None:
        source = batch.metadata.get(ENERGY_SOURCE_KEY)
        fixed = int(np.count_nonzero(source == FIXED)) if source is not None else 0
        missing = int(np.count_nonzero(source == MISSING)) if source is not None else len(batch)
        self.frames_with_fixed_energy += fixed
        self.frames_without_energy += missing
        absent = WAVELENGTH_KEY not in batch.metadata
        self.batches_without_wavelength += absent
        if (fixed or missing) and not self._logged:
            self._logged = True
            what = (
                f"no wavelength field at decode.fields.wavelength={self.config.fields.wavelength!r}"
                f" (fields: {sorted(batch.metadata)})"
                if absent
                else "NaN or non-positive wavelengths"
            )
            outcome = (
                f"the fixed decode.photon_energy_ev={self.config.photon_energy_ev} eV is used"
                if self.config.photon_energy_ev is not None
                else "their photon energy is NaN, which CrystFEL cannot index with"
            )
            logger.warning(
                "a batch of %d frames has %s: %s. Set decode.fields.wavelength to the pusher's "
                "wavelength path (and decode.wavelength_unit), or decode.photon_energy_ev to the "
                "beam energy; the CXI files record /LCLS/photon_energy_source. Logged once.",
                len(batch),
                what,
                outcome,
            )

    def snapshot(self) -> dict[str, Any]:
        return {
            "batches_without_wavelength": self.batches_without_wavelength,
            "frames_with_fixed_energy": self.frames_with_fixed_energy,
            "frames_without_energy": self.frames_without_energy,
        }


class MetadataCollector(Collector):
    """``peaknet_batches_without_wavelength`` and ``peaknet_frames_energy{source}``."""

    def __init__(self, watch: MetadataWatch) -> None:
        self._watch = watch

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "peaknet_batches_without_wavelength",
            "Batches whose message had no wavelength field.",
            value=self._watch.batches_without_wavelength,
        )
        energy = CounterMetricFamily(
            "peaknet_frames_energy_not_measured",
            "Frames whose photon energy is not from their wavelength, by what they got.",
            labels=["energy"],
        )
        energy.add_metric([FIXED], self._watch.frames_with_fixed_energy)
        energy.add_metric([MISSING], self._watch.frames_without_energy)
        yield energy
