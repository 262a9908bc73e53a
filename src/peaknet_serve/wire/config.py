"""Configuration sections of the wire layer: how to decode a message and where to pull it from."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from peaknet_serve._section import Section


class FieldMap(Section):
    """Where the decoder finds the fields it interprets in a message.

    HDF5 paths as the pusher's ``fields`` map writes them. When a path is missing, its last
    component is tried at the root (``/data/data`` -> ``/data``), so the SLAC layout and the
    psana2 root-level layout both decode with the defaults. NPZ keys are matched the same way,
    without the leading slash (``/data/wavelength`` -> ``data/wavelength``, then ``wavelength``).
    """

    image: str = Field(default="/data/data", description="Path of the image dataset.")
    wavelength: str = Field(
        default="/data/wavelength", description="Path of the per-event wavelength dataset."
    )
    timestamp: str = Field(
        default="/data/timestamp", description="Path of the per-event timestamp dataset."
    )


class DecodeConfig(Section):
    """How one received message is turned into a frame batch."""

    format: Literal["auto", "hdf5", "npz"] = Field(
        default="auto",
        description="Payload format; 'auto' detects HDF5 or NPZ from the first bytes.",
    )
    fields: FieldMap = Field(
        default_factory=FieldMap, description="Dataset paths of the image, wavelength, timestamp."
    )
    wavelength_unit: Literal["nm", "angstrom", "m"] = Field(
        default="nm", description="Unit of the wavelength field (LCLS sends nanometres)."
    )
    photon_energy_ev: float | None = Field(
        default=None,
        gt=0,
        description=(
            "Fixed photon energy (eV) used where a message has no wavelength (or a NaN one); "
            "unset, such frames get NaN, counted in /status (frames_without_energy)."
        ),
    )
    timestamp_format: Literal["auto", "packed", "ns", "seconds", "psana1"] = Field(
        default="auto",
        description=(
            "Form of the timestamp field: packed (sec << 32) | ns, int ns, float seconds, psana1 "
            "'<sec>.<ns>' string; 'auto' tells them apart. Stored as packed uint64, with the "
            "sent values kept as timestamp_original."
        ),
    )
    max_message_bytes: int = Field(
        default=2 * 1024**3,
        ge=1,
        description=(
            "Largest message accepted; bigger ones raise DecodeError(reason='too_large'). "
            "Enforced by the decoder so that the rejection is counted."
        ),
    )
    max_decoded_bytes: int = Field(
        default=1024**3,
        ge=1,
        description=(
            "Most bytes the arrays of one message may declare, checked before any is read "
            "(a small compressed message can declare gigabytes); more raises "
            "DecodeError(reason='too_large_decoded'). The default is twice the largest batch "
            "of SLAC's LCLStreamer examples (16 x 1920 x 1920 float64, 472 MB)."
        ),
    )
    max_fields: int = Field(
        default=256,
        ge=1,
        description=(
            "Most datasets and groups (HDF5) or members (NPZ) one message may hold, counted "
            "before any is read; more raises DecodeError(reason='too_many_fields'). LCLStreamer "
            "sends a handful (image, timestamp, wavelength, a few per-event values)."
        ),
    )
    max_chunks: int = Field(
        default=65536,
        ge=1,
        description=(
            "Most chunks one HDF5 dataset may declare (prod(ceil(shape / chunks))), checked "
            "before it is read; more raises DecodeError(reason='too_many_chunks'). HDF5 spends "
            "kilobytes per chunk to read one; LCLStreamer chunks per event (B chunks)."
        ),
    )


class SourceConfig(Section):
    """Where and how frame messages are pulled from the pusher(s)."""

    transport: Literal["nng", "zmq"] = Field(
        default="nng",
        description="Socket library: 'nng' (pynng Pull0, LCLStreamer <= 0.3) or 'zmq' (PULL).",
    )
    mode: Literal["listen", "dial"] = Field(
        default="listen",
        description=(
            "'listen' binds the addresses and LCLStreamer dials in (its shipped configs); "
            "'dial' connects to a pusher that listens (lets several replicas share one pusher)."
        ),
    )
    addresses: list[str] = Field(
        default_factory=lambda: ["tcp://0.0.0.0:12321"],
        min_length=1,
        description="Socket URLs to listen on or dial, e.g. tcp://0.0.0.0:12321.",
    )
    allowed_peers: list[str] = Field(
        default_factory=list,
        description=(
            "IP addresses or networks (CIDR) that may connect, e.g. ['172.21.0.0/16']; "
            "connections from elsewhere are closed and counted (/status peers_rejected). "
            "Empty: anyone who reaches the port. Bind the addresses to the beamline interface "
            "too (tcp://BEAMLINE_IP:12321 instead of 0.0.0.0)."
        ),
    )
    recv_timeout_s: float = Field(
        default=1.0,
        gt=0,
        description="How long receive() waits before returning None ('no data yet').",
    )
    transport_max_bytes: int = Field(
        default=0,
        ge=0,
        description=(
            "Hard cap the socket library enforces (0 = none). A message above it is dropped by "
            "the library with its connection and is NOT counted; keep it above the decoder's "
            "max_message_bytes, as a last guard on memory."
        ),
    )
    recv_buffer_messages: int = Field(
        default=2,
        ge=1,
        description=(
            "Messages queued in the receiving socket (zmq RCVHWM, nng recv_buffer_size), in "
            "front of the receive buffer; they add to its memory."
        ),
    )
    buffer_bytes: int = Field(
        default=4 * 1024**3,
        ge=1,
        description=(
            "Receive buffer the socket is drained into, in bytes: about 2 s of the largest SLAC "
            "batches (16 x 1920 x 1920 float64, 472 MB) at one GPU's rate. The socket is read "
            "whenever it has room, so a pusher that exits right after its last send loses "
            "nothing; reading stops (backpressure) only while it is full."
        ),
    )
    buffer_messages: int = Field(
        default=64, ge=1, description="Receive buffer limit in messages (batches)."
    )
    reader_niceness: int | None = Field(
        default=0,
        ge=-20,
        le=19,
        description=(
            "Linux niceness of the thread that reads the socket, and of the socket library's "
            "I/O threads it starts. Ray starts its workers at niceness 15 (RAY_worker_niceness), "
            "so on a node whose cores are busy (a CPU model, writers, a pusher on the same "
            "node) the reader waits its turn and the pusher's queue fills. Going below the "
            "worker's niceness needs CAP_SYS_NICE or RLIMIT_NICE; without it the reader stays "
            "where it is and the ingress logs that once. null leaves it alone."
        ),
    )
    no_peer_warning_s: float = Field(
        default=30.0,
        gt=0,
        description=(
            "Listen mode: log a warning (with the settings to check) when no pusher has "
            "connected for this long."
        ),
    )
    reconnect_time_min_s: float = Field(
        default=0.1, gt=0, description="Dial mode: first wait before re-dialling a lost pusher."
    )
    reconnect_time_max_s: float = Field(
        default=2.0, gt=0, description="Dial mode: longest wait between re-dial attempts."
    )
