"""The ``ingress:`` section of the service configuration: how batches keep moving."""

from __future__ import annotations

from pydantic import Field

from peaknet_serve._section import Section


class IngressConfig(Section):
    """How the ingress pulls and keeps batches moving (the Ingress deployment and its router)."""

    max_in_flight_batches: int = Field(
        default=4,
        ge=1,
        description="Batches sent on and not yet written; while full the socket is not read, so "
        "the pusher blocks instead of anything being dropped.",
    )
    request_timeout_s: float = Field(
        default=300.0, gt=0, description="Longest wait for one batch through model and writer."
    )
    max_retries: int = Field(
        default=2, ge=0, description="Retries of a batch whose model or writer replica died."
    )
    drain_timeout_s: float = Field(
        default=60.0, gt=0, description="On shutdown, how long to wait for batches in flight."
    )
    write_retry_timeout_s: float = Field(
        default=120.0,
        ge=0,
        description="How long a batch whose write failed (disk full, permissions) is retried "
        "before it is quarantined and counted failed; it holds its in-flight slot meanwhile, so "
        "the pusher is slowed instead of frames piling up.",
    )
    write_retry_interval_s: float = Field(
        default=2.0, gt=0, description="Wait between two attempts to write a batch."
    )
    quarantine_max_batches: int = Field(
        default=100,
        ge=0,
        description="Failed batches saved raw (NPZ + reason) under quarantine_dir/batches; "
        "past it they are only counted.",
    )
    quarantine_max_bytes: int = Field(
        default=1024**3,
        ge=0,
        description="Most bytes of saved messages, and of saved batches, in quarantine_dir; "
        "like the count bounds it counts what is on disk, so it holds across replicas.",
    )
    control_token_env: str = Field(
        default="PEAKNET_SERVE_TOKEN",
        min_length=1,
        description="Environment variable holding the bearer token that POST /pause and "
        "/resume require; unset or empty = no token required. Never put the token in YAML.",
    )
