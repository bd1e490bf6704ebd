"""One thread limit for every library a job uses: BLAS/OpenMP pools, OpenCV and torch."""

from __future__ import annotations

import contextlib
from typing import Iterator


@contextlib.contextmanager
def limit_threads(threads: int | None) -> Iterator[None]:
    """At most ``threads`` threads in the BLAS/OpenMP pools loaded so far (threadpoolctl),
    OpenCV and torch while the block runs, the previous counts restored after it; None:
    unchanged. (Pools loaded later follow ``OMP_NUM_THREADS`` and friends, not this.)"""
    if threads is None:
        yield
        return
    import cv2
    import torch
    from threadpoolctl import threadpool_limits

    before_cv, before_torch = cv2.getNumThreads(), torch.get_num_threads()
    cv2.setNumThreads(int(threads))
    torch.set_num_threads(int(threads))
    try:
        with threadpool_limits(limits=int(threads)):
            yield
    finally:
        cv2.setNumThreads(before_cv)
        torch.set_num_threads(before_torch)
