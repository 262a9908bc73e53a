"""Host-side copies between numpy arrays and pinned staging buffers, split over threads."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np

_MIN_PARALLEL_COPY_BYTES = 4 << 20
"""Host copies smaller than this run inline: a thread hop costs more than the copy."""


class HostCopier:
    """``dst[...] = src`` on ``threads`` worker threads (numpy drops the GIL), awaited by the loop.

    Args:
        threads: copy threads (``EngineConfig.copy_threads``); 1 copies inline.
    """

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._copier = ThreadPoolExecutor(threads, thread_name_prefix="peaknet-copy")

    async def copy(self, dst: np.ndarray, src: np.ndarray) -> None:
        """``dst[...] = src`` split over the copy threads when large, cast unsafely to ``dst``."""
        if dst.nbytes < _MIN_PARALLEL_COPY_BYTES or self.threads == 1:
            np.copyto(dst, src, casting="unsafe")
            return
        loop = asyncio.get_running_loop()
        rows_dst = dst.reshape(-1, dst.shape[-1])
        rows_src = src.reshape(-1, src.shape[-1])
        bounds = np.linspace(0, rows_dst.shape[0], self.threads + 1, dtype=int)
        await asyncio.gather(
            *(
                loop.run_in_executor(self._copier, _copy_rows, rows_dst[a:b], rows_src[a:b])
                for a, b in zip(bounds[:-1], bounds[1:], strict=True)
                if b > a
            )
        )

    def close(self) -> None:
        """Stop the copy threads (after the copies in flight)."""
        self._copier.shutdown(wait=True)


def _copy_rows(dst: np.ndarray, src: np.ndarray) -> None:
    np.copyto(dst, src, casting="unsafe")
