"""Configuration section of the inference engine: device, precision, compilation, buffering."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from peaknet_serve._section import Section

Precision = Literal["auto", "fp32", "bf16", "fp16"]
CompileMode = Literal["off", "default", "max-autotune", "reduce-overhead"]


class EngineConfig(Section):
    """How PeakNet runs: where, in which precision, compiled or not, and with how many buffers.

    The defaults run anywhere: on a GPU they give bf16 weights, channels_last and three buffers;
    on a CPU (CI, a laptop) fp32 eager.
    """

    device: str = Field(
        default="auto",
        pattern=r"^(auto|cpu|cuda(:\d+)?)$",
        description='"auto" (cuda when available, else cpu), "cpu", "cuda" or "cuda:N".',
    )
    precision: Precision = Field(
        default="auto",
        description='Compute dtype of the weights: "auto" (bf16 on a GPU, fp32 on a CPU), '
        '"fp32", "bf16" or "fp16" (GPU only).',
    )
    autocast: bool = Field(
        default=False,
        description="Keep fp32 weights and run under torch.autocast in `precision` instead of "
        "casting the weights (casting is faster on an H100: see docs/perf-notes.md).",
    )
    channels_last: bool = Field(
        default=True,
        description="Convert the model to channels_last memory format (faster cuDNN convs on "
        "GPUs); ignored on a CPU.",
    )
    compile: CompileMode = Field(
        default="off",
        description='torch.compile mode: "off", "default", "max-autotune" or "reduce-overhead" '
        '(CUDA graphs; on a CPU it falls back to default). Use "default" on a GPU: on an H100 it '
        "doubles the standard model (35 -> 68.5 frames/s at 1920x1920) while reduce-overhead gave "
        "44.8 in the engine. Every (batch bucket, frame shape) pair compiles once, in `warmup` or "
        "on first use (~35-50 s each for the standard model).",
    )
    num_buffers: int = Field(
        default=3,
        ge=1,
        le=8,
        description="Batches in flight at once (N-way buffering): while one batch computes, the "
        "next is copied in and the previous copied out. Each buffer holds pinned host and device "
        "staging memory for the largest batch bucket.",
    )
    batch_buckets: tuple[int, ...] = Field(
        default=(1, 2, 4, 8, 16),
        description="Batch sizes the model runs at: a batch is padded up to the next bucket (so "
        "torch.compile sees few shapes) and larger batches are split at the largest bucket.",
    )
    copy_threads: int = Field(
        default=4,
        ge=1,
        le=64,
        description="Threads that copy frames from numpy into the pinned staging buffers "
        "(one numpy copy runs at ~5 GB/s per core).",
    )
    poll_interval_s: float = Field(
        default=0.0005,
        gt=0,
        le=0.1,
        description="How often a waiting batch polls its CUDA completion event; the event loop "
        "stays free in between.",
    )
    cudnn_benchmark: bool = Field(
        default=True,
        description="Let cuDNN time its convolution algorithms for each new shape: the first "
        "batch of a shape is slower, later ones ~30% faster for the compiled standard model on an "
        "H100 (53.7 -> 69.3 frames/s at 1920x1920).",
    )

    @field_validator("batch_buckets")
    @classmethod
    def _sorted_positive(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(b <= 0 for b in value):
            raise ValueError(f"batch_buckets must be positive sizes, got {list(value)}")
        return tuple(sorted(set(value)))
