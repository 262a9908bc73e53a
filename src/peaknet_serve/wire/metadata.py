"""Per-event metadata the decoder derives: photon energy (and where it came from), timestamps.

- ``photon_energy_ev`` (B,) float64: hc / wavelength; where the wavelength is missing, NaN or
  <= 0, the configured ``decode.photon_energy_ev`` when set, else NaN.
- ``photon_energy_source`` (B,) str: ``"wavelength"``, ``"fixed"`` (the configured energy) or
  ``"missing"``, so a CXI file with a NaN energy says why (``/LCLS/photon_energy_source``).
- ``timestamp`` (B,) uint64 ``(sec << 32) | ns`` (``peaknet_serve.wire.timestamps``);
  ``timestamp_original`` holds what was sent when it was in another form.
"""

from __future__ import annotations

import numpy as np

from peaknet_serve.wire.config import DecodeConfig
from peaknet_serve.wire.timestamps import to_packed

PHOTON_ENERGY_KEY = "photon_energy_ev"
ENERGY_SOURCE_KEY = "photon_energy_source"
WAVELENGTH_KEY = "wavelength"
TIMESTAMP_KEY = "timestamp"
TIMESTAMP_ORIGINAL_KEY = "timestamp_original"
FROM_WAVELENGTH, FIXED, MISSING = "wavelength", "fixed", "missing"


def derive(metadata: dict[str, np.ndarray], energy_ev: np.ndarray, cfg: DecodeConfig) -> None:
    """Add the energy (with its source) and the packed timestamp to ``metadata`` in place.

    Args:
        metadata: the message's per-event fields, ``timestamp`` as sent.
        energy_ev: (B,) hc / wavelength, NaN where unknown.
        cfg: ``photon_energy_ev`` (the fallback) and ``timestamp_format`` are used.
    """
    known = np.isfinite(energy_ev)
    source = np.where(known, FROM_WAVELENGTH, MISSING)
    if cfg.photon_energy_ev is not None:
        energy_ev = np.where(known, energy_ev, cfg.photon_energy_ev)
        source = np.where(known, FROM_WAVELENGTH, FIXED)
    metadata[PHOTON_ENERGY_KEY] = energy_ev
    metadata[ENERGY_SOURCE_KEY] = source
    if TIMESTAMP_KEY in metadata:
        packed, form = to_packed(metadata[TIMESTAMP_KEY], cfg.timestamp_format)
        if form != "packed":
            metadata[TIMESTAMP_ORIGINAL_KEY] = metadata[TIMESTAMP_KEY]
        metadata[TIMESTAMP_KEY] = packed
