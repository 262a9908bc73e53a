"""CUDA graphs of the compiled masker, one per warm (batch bucket, frame shape), replayed by the
engine on its compute stream (``engine.cuda_graphs``).

Why not ``compile="reduce-overhead"``: torch.compile's CUDA-graph trees ran the standard model
slower inside the engine than default mode (docs/perf-notes.md, issue 6). Here each pair is
captured once at warm-up, after its compiled function has run (so compilation, Triton autotuning
and cuDNN's algorithm search are done), on the stream the replays use, with a static float32
input and the masks as static output. A batch copies its frames into the static input (a cast
from the staging dtype, on the device), replays the graph and copies the masks out, all on the
compute stream: the copy-in and copy-out streams overlap with it as before, and the launcher
thread issues one graph launch instead of the model's kernels one by one.

On a CPU there are no graphs: the same static buffers and calls run the function directly,
which is the path CI tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from peaknet_serve.engine.shapes import Pair, pair_of


@dataclass
class _Captured:
    static_in: torch.Tensor
    static_out: torch.Tensor | None
    graph: torch.cuda.CUDAGraph | None


class GraphedForward:
    """Replays ``forward`` (float32 (B, H, W) frames -> uint8 (B, H, W) masks) per pair.

    Not thread-safe: capture and run on one thread (the engine's launcher), inside
    ``torch.inference_mode``, with the stream that runs the replays current.

    Args:
        forward: the compiled masker; must be warm for a pair before ``capture``.
        device: a CUDA device captures graphs; any other runs ``forward`` on the static buffers.
    """

    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor], device: torch.device):
        self._forward = forward
        self._on_gpu = device.type == "cuda"
        self._captured: dict[Pair, _Captured] = {}

    def pairs(self) -> list[Pair]:
        """(bucket, height, width) pairs with a captured graph (on a CPU: registered buffers)."""
        return sorted(self._captured)

    def has(self, pair: Pair) -> bool:
        return pair in self._captured

    def capture(self, frames: torch.Tensor) -> None:
        """Capture the graph of ``frames``' pair (float32 (B, H, W) on the device), once.

        Raises:
            RuntimeError: from CUDA if the forward cannot be captured (it synchronises, or
                allocates outside the graph's pool); the pair is then left uncaptured.
        """
        pair = pair_of(frames)
        if pair in self._captured:
            return
        static_in = frames.to(torch.float32, copy=True)
        if not self._on_gpu:
            self._captured[pair] = _Captured(static_in, None, None)
            return
        graph = torch.cuda.CUDAGraph()
        # thread_local: health checks or event queries of other threads may run meanwhile.
        stream = torch.cuda.current_stream()
        with torch.cuda.graph(graph, stream=stream, capture_error_mode="thread_local"):
            static_out = self._forward(static_in)
        self._captured[pair] = _Captured(static_in, static_out, graph)

    def run(self, frames: torch.Tensor, out: torch.Tensor) -> None:
        """Masks of ``frames`` (any dtype, a captured pair's shape) into ``out``, enqueued on the
        current stream; ``out`` holds them in stream order, the static output is reused."""
        captured = self._captured[pair_of(frames)]
        captured.static_in.copy_(frames)
        if captured.graph is None:
            out.copy_(self._forward(captured.static_in))
            return
        captured.graph.replay()
        assert captured.static_out is not None
        out.copy_(captured.static_out)
