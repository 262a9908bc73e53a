"""A persistent torch.compile cache, so a restarted replica warms up from disk, not from scratch.

torch.compile keeps compiled FX graphs (FXGraphCache), AOTAutograd graphs (AOTAutogradCache),
Triton kernels and autotuning results under ``TORCHINDUCTOR_CACHE_DIR`` (default
``/tmp/torchinductor_<user>``, lost on reboot and shared with every other job of the user). The
graphs are keyed on the graph, input shapes, torch/Triton versions and GPU, so one directory can
hold many models and shapes. Dynamo still traces the model again in a new process; what the cache
saves is Inductor's code generation and Triton's kernel compilation, most of the compile time.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)


def configure_compile_cache(directory: Path | None) -> Path:
    """Point torch.compile's on-disk caches at ``directory`` and make sure they are on.

    Call before the first compilation in the process. ``None`` keeps ``$TORCHINDUCTOR_CACHE_DIR``
    or torch's default. Triton's kernel cache goes to ``directory/triton`` unless
    ``$TRITON_CACHE_DIR`` says otherwise.

    Returns:
        The cache directory in use (created if missing).
    """
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    if directory is not None:
        directory = directory.expanduser().resolve()
        directory.mkdir(parents=True, exist_ok=True)
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(directory)
        os.environ.setdefault("TRITON_CACHE_DIR", str(directory / "triton"))
    inductor_config.fx_graph_cache = True
    inductor_config.autotune_local_cache = True
    functorch_config.enable_autograd_cache = True
    in_use = Path(cache_dir())
    logger.info("torch.compile cache: %s", in_use)
    return in_use
