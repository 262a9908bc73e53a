"""Receiving LCLStreamer batches: sockets (nng, zmq), decoders (HDF5, NPZ), encoders, quarantine.

No Ray here: the ingress deployment wraps these pieces.
"""

from __future__ import annotations

from peaknet_serve.wire.config import DecodeConfig, FieldMap, SourceConfig
from peaknet_serve.wire.decode import FrameBatch, decode_message, photon_energy_ev
from peaknet_serve.wire.encode import (
    HDF5_COMPRESSIONS,
    LOSSLESS,
    NPZ_COMPRESSIONS,
    encode_batch,
    encode_hdf5,
    encode_npz,
)
from peaknet_serve.wire.quarantine import Quarantine
from peaknet_serve.wire.source import (
    SOURCES,
    FrameSource,
    Message,
    NngSource,
    ZmqSource,
    make_source,
)

__all__ = [
    "HDF5_COMPRESSIONS",
    "LOSSLESS",
    "NPZ_COMPRESSIONS",
    "SOURCES",
    "DecodeConfig",
    "FieldMap",
    "FrameBatch",
    "FrameSource",
    "Message",
    "NngSource",
    "Quarantine",
    "SourceConfig",
    "ZmqSource",
    "decode_message",
    "encode_batch",
    "encode_hdf5",
    "encode_npz",
    "make_source",
    "photon_energy_ev",
]
