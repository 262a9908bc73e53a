"""Configuration sections of the inference engine: device, precision, compilation, buffering,
warm-up, and the dynamic batching in front of it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from peaknet_serve._section import Section

Precision = Literal["auto", "fp32", "bf16", "fp16"]
CompileMode = Literal["off", "default", "max-autotune", "reduce-overhead", "aot"]


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
        description='torch.compile mode: "off", "default", "max-autotune", "reduce-overhead" '
        '(CUDA graphs; on a CPU it falls back to default) or "aot" (torch.export + AOTInductor '
        "packages built in a child process and kept in compile_cache_dir/aot: a restart loads "
        "them instead of compiling, and a frame shape that was not warmed up is built in the "
        'background while its batches run uncompiled). "default" ran the standard model '
        "fastest on a GPU; reduce-overhead was slower in the engine (docs/perf-notes.md). Every "
        "(batch bucket, frame shape) pair compiles once, at warm-up (tens of seconds each for "
        "the standard model).",
    )
    cuda_graphs: bool = Field(
        default=False,
        description='With compile "default" or "max-autotune" on a GPU: capture each warm (batch '
        "bucket, frame shape) as a CUDA graph at warm-up and replay it on the engine's compute "
        "stream, so the launcher issues one launch per batch instead of every kernel "
        "(engine/graphs.py). Costs the graph's own memory pool per pair; ignored otherwise.",
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
        "(each copy keeps one core busy).",
    )
    poll_interval_s: float = Field(
        default=0.0005,
        gt=0,
        le=0.1,
        description="How often a waiting batch polls its CUDA completion event; the event loop "
        "stays free in between.",
    )
    fused_dwconv_stages: tuple[int, ...] = Field(
        default=(1,),
        description="Backbone stages (0-3) whose ConvNeXt blocks run the depthwise 7x7 conv + "
        "LayerNorm as one Triton kernel (model/kernels.py) instead of cuDNN + LayerNorm; same "
        "weights, same function. Stage 1 by default, where cuDNN's channels_last depthwise "
        "kernel is slowest: the engine ran fastest so (H200, docs/perf-notes.md, issue 16 "
        "run 14). Only on a GPU, with channels_last and a compile mode other than "
        '"aot"; a CPU always runs the plain PyTorch path.',
    )
    cudnn_benchmark: bool = Field(
        default=True,
        description="Let cuDNN time its convolution algorithms for each new shape: the first "
        "batch of a shape is slower, later ones faster (docs/perf-notes.md).",
    )

    compile_cache_dir: Path | None = Field(
        default=None,
        description="Directory of torch.compile's on-disk caches (compiled graphs, Triton "
        'kernels, autotuning) and of the compile="aot" packages, kept across restarts: a '
        "restarted replica skips Inductor (default mode) or the whole build (aot); "
        "null keeps $TORCHINDUCTOR_CACHE_DIR or torch's default /tmp/torchinductor_<user>. "
        "Share it between the replicas of a node.",
    )
    aot_build_processes: int = Field(
        default=1,
        ge=1,
        le=8,
        description='With compile="aot": packages built at once, each in a child process '
        "(CPU-heavy, and a CUDA context each on a GPU).",
    )
    cpu_affinity: bool = Field(
        default=True,
        description="Pin the replica's threads to the CPU cores of its GPU's NUMA node (from "
        "sysfs, else `nvidia-smi topo -m`) before allocating pinned staging memory; no effect on "
        "a CPU device or when no topology is found.",
    )
    health_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="Longest wait for the GPU health checks' kernels (at start, and in each "
        "Serve health check) before the GPU is declared broken.",
    )

    @field_validator("fused_dwconv_stages")
    @classmethod
    def _stage_indices(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(not 0 <= s <= 3 for s in value):
            raise ValueError(f"fused_dwconv_stages are backbone stages 0-3, got {list(value)}")
        return tuple(sorted(set(value)))

    @field_validator("batch_buckets")
    @classmethod
    def _sorted_positive(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(b <= 0 for b in value):
            raise ValueError(f"batch_buckets must be positive sizes, got {list(value)}")
        return tuple(sorted(set(value)))


class WarmupConfig(Section):
    """Frame shapes compiled and run before a replica reports ready; what happens to others."""

    frame_shapes: list[tuple[int, ...]] = Field(
        default_factory=list,
        description="(H, W) or (P, H, W) shapes to warm up at start. Batches of other shapes run "
        'uncompiled; with engine.compile="aot" their package is built in the background and '
        "used once loaded.",
    )
    batch_sizes: list[int] = Field(
        default_factory=lambda: [16],
        description="Batch sizes to run for each warm-up shape (each warms the batch bucket that "
        "holds it, tens of seconds each for the standard model). A smaller batch runs padded in "
        "a larger warm bucket; a batch with no warm bucket runs uncompiled.",
    )
    fixed_shapes: bool = Field(
        default=False,
        description="Reject frames of shapes not in frame_shapes (a DecodeError naming the "
        "shape) instead of running them uncompiled.",
    )

    @field_validator("batch_sizes")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if any(b <= 0 for b in value):
            raise ValueError(f"batch_sizes must be positive, got {value}")
        return value

    @field_validator("frame_shapes")
    @classmethod
    def _two_or_three_dims(cls, value: list[tuple[int, ...]]) -> list[tuple[int, ...]]:
        for shape in value:
            if len(shape) not in (2, 3) or any(n <= 0 for n in shape):
                raise ValueError(f"frame shapes are (H, W) or (P, H, W), got {list(shape)}")
        return value

    @model_validator(mode="after")
    def _fixed_needs_shapes(self) -> WarmupConfig:
        if self.fixed_shapes and not self.frame_shapes:
            raise ValueError("fixed_shapes needs frame_shapes: with none, every frame is rejected")
        return self

    def image_shapes(self) -> list[tuple[int, int]]:
        """The distinct (H, W) the engine compiles: panels of a (P, H, W) shape run as frames."""
        return list(dict.fromkeys((int(s[-2]), int(s[-1])) for s in self.frame_shapes))


class BatchingConfig(Section):
    """Dynamic batching of the PeakNet deployment: its ``user_config``, changeable at run time."""

    max_batch_frames: int = Field(
        default=16,
        ge=1,
        description="Most frames per model call; messages with more frames are split.",
    )
    batch_wait_timeout_s: float = Field(
        default=0.005, ge=0, description="How long a partial batch waits for more frames."
    )

