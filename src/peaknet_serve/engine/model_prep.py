"""Preparing PeakNet for the engine: fused kernels, torch.compile, CUDA-graph thread state."""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence

import torch
from torch import nn

from peaknet_serve.errors import ConfigError

logger = logging.getLogger(__name__)


def compile_forward(
    fn: Callable[[torch.Tensor], torch.Tensor],
    *,
    mode: str,
    on_gpu: bool,
    buckets: Sequence[int],
) -> Callable[..., torch.Tensor]:
    """``fn`` compiled as ``EngineConfig.compile`` asks (``mode``); itself for "off" and "aot"."""
    if mode in ("off", "aot"):
        return fn
    if mode == "reduce-overhead" and not on_gpu:
        logger.warning("compile='reduce-overhead' needs CUDA graphs; using 'default' on a CPU")
        mode = "default"
    # One graph per (bucket, frame shape): lift dynamo's recompile limit (default 8) so
    # several frame shapes do not silently fall back to eager.
    limit = 4 * len(buckets) + 8
    dynamo_config = torch._dynamo.config
    dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, limit)
    dynamo_config.accumulated_recompile_limit = max(
        dynamo_config.accumulated_recompile_limit, 8 * limit
    )
    return torch.compile(fn, mode=mode, dynamic=False)


def switch_to_fused_kernels(model: nn.Module, stages: Sequence[int]) -> None:
    """Switch the blocks of backbone ``stages`` to the Triton dwconv + LayerNorm kernel.

    Raises:
        ConfigError: Triton is not installed.
    """
    try:
        from peaknet_serve.model.kernels import use_fused_kernels
    except ImportError as exc:
        raise ConfigError(
            f"engine.fused_dwconv_stages needs Triton ({exc}); install it or set "
            "fused_dwconv_stages: []"
        ) from exc
    use_fused_kernels(model, stages)


def init_cuda_graph_thread() -> None:
    """Give the launcher thread its own CUDA-graph tree state.

    torch.compile's CUDA-graph trees keep per-thread state that torch < 2.12 only sets up in the
    thread that imported them (elsewhere: ``assert torch._C._is_key_in_tls``), so a process that
    compiled with reduce-overhead on its main thread first could not replay graphs here.
    """
    from torch._inductor import cudagraph_trees

    local = cudagraph_trees.local
    if not hasattr(local, "tree_manager_containers"):
        local.tree_manager_containers = {}
        local.tree_manager_locks = defaultdict(threading.Lock)
