"""Speed of classical methods' predict: per image in one process, and throughput of a process pool."""

from __future__ import annotations

import multiprocessing
import os
from typing import Any, Callable, Sequence

import numpy as np
import torch

from bench.method import FitContext, Method, create_method
from bench.run.provenance import device_name, git_commit, versions
from bench.speed.core import Timing, timed, warm_up
from bench.speed.table import hw_text
from bench.threads import limit_threads

_WORKER_METHOD: Method | None = None


def _resolve_method(method_or_factory: Method | Callable[[], Method]) -> Method:
    """A fitted method as given, or the one a zero-argument factory returns."""
    method = method_or_factory
    if not isinstance(method, Method) and callable(method) and not isinstance(method, type):
        method = method()
    if not isinstance(method, Method):
        raise TypeError("classical_speed needs a fitted bench.method.Method or a factory returning one")
    return method


def _pool_init(method_or_factory) -> None:
    global _WORKER_METHOD
    import cv2

    torch.set_num_threads(1)  # N processes x 1 thread, no oversubscription
    cv2.setNumThreads(1)
    _WORKER_METHOD = _resolve_method(method_or_factory)


def _pool_predict(image: np.ndarray) -> float:
    return timed(lambda: _WORKER_METHOD.predict(image), _WORKER_METHOD.sync)[1]


def _one_process(method: Method, images: Sequence[np.ndarray], warmup: int, threads: int | None
                 ) -> tuple[Timing, float, dict[str, float]]:
    """Per-image timing as the runner does it (:func:`warm_up`, then :func:`timed` per image),
    the loop's wall seconds and the median milliseconds of each stage (``<stage>_ms_p50``) of a
    method with ``predict_with_stages``."""
    staged = method.capabilities.stages  # the region labellers (baselines.labelling)

    def predict(image: np.ndarray) -> dict[str, float] | None:
        """The stage seconds of a staged method; None (the labels are not kept) for the others."""
        if staged:
            return method.predict_with_stages(image)[1]
        method.predict(image)
        return None

    with limit_threads(threads):
        warm_up(method.predict, images[:warmup], method.sync)
        results, wall = timed(lambda: [timed(lambda: predict(im), method.sync) for im in images])
    timing = Timing([seconds for _, seconds in results])
    stages = [out for out, _ in results] if staged else []
    stage_cols = {
        f"{name.replace(' ', '_')}_ms_p50": float(np.median([st.get(name, 0.0) for st in stages])) * 1e3
        for name in dict.fromkeys(k for st in stages for k in st if k != "total")
    }
    return timing, wall, stage_cols


def _pool(ctx, method_or_factory, images: Sequence[np.ndarray], n: int, warmup: int) -> tuple[Timing, float]:
    """Per-image seconds in ``n`` worker processes and the wall seconds of ``pool.map`` over all images."""
    with ctx.Pool(n, initializer=_pool_init, initargs=(method_or_factory,)) as pool:
        # untimed: the workers start, unpickle the method and predict once each
        pool.map(_pool_predict, [images[i % len(images)] for i in range(n * max(1, warmup))], chunksize=1)
        chunk = max(1, len(images) // (4 * n))
        per, wall = timed(lambda: pool.map(_pool_predict, images, chunksize=chunk))
    return Timing(list(per)), wall


def classical_speed(
    method: Any,
    images: Sequence[np.ndarray],
    processes: Sequence[int] | None = None,
    *,
    warmup: int = 1,
    mp_context: str | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Per-image time of a (fitted) method's ``predict`` in one process and in a Pool of N.

    ``method``: a fitted method (pickled to each worker) or a picklable zero-argument
    factory returning one. ``processes`` defaults to ``(1, os.cpu_count())``. In one
    process, every image is timed by itself exactly as the runner times predict for the
    leaderboard (``warmup`` untimed calls, then :func:`bench.speed.core.timed` with the
    method's ``sync``), and images/s is :attr:`bench.speed.core.Timing.rate` (1 / mean
    seconds per image). With N > 1 processes each worker is limited to one torch/OpenCV
    thread, the pool is started and warmed up untimed, and images/s is the whole list over
    the wall time of ``pool.map`` (pickling the images included).
    ``threads``: limit the one-process row to this many threads (BLAS/OpenMP pools,
    OpenCV, torch), e.g. 1 for per-image figures on one core; None leaves the libraries
    their defaults. A method with ``predict_with_stages`` (the region labellers) also gets
    the median milliseconds of each stage in the one-process row (``<stage>_ms_p50``).
    Returns ``{"method", "num_images", "input_hw", "device_name", "rows": [...]}`` with one
    row per process count.
    """
    if not images:
        raise ValueError("classical_speed needs at least one image")
    if threads is not None and int(threads) < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    processes = [int(n) for n in (processes or (1, os.cpu_count() or 1))]
    if min(processes) < 1:
        raise ValueError(f"process counts must be >= 1, got {min(processes)}")
    local = _resolve_method(method)
    v = versions()
    common = {
        "method": local.name or type(local).__name__, "kind": local.kind, "input_hw": hw_text(images[0].shape[:2]),
        "num_images": len(images), "device": "cpu", "device_name": device_name("cpu"),
        "python": v.get("python"), "numpy": v.get("numpy"), "opencv": v.get("opencv"),
        "scikit-image": v.get("scikit-image"), "torch": v.get("torch"), "git_commit": git_commit(),
    }
    # spawn, not fork: forking after torch/OpenMP started their threads deadlocks the workers
    ctx = multiprocessing.get_context(mp_context or "spawn")
    rows = []
    for n in processes:
        if n == 1:
            timing, wall, stage_cols = _one_process(local, images, warmup, threads)
            rate = timing.rate
        else:
            (timing, wall), stage_cols = _pool(ctx, method, images, n, warmup), {}
            rate = len(images) / wall
        rows.append({
            **common, "processes": n, "threads": (threads or "default") if n == 1 else 1, "images_per_s": rate,
            "ms_per_image_p50": timing.median * 1e3, "ms_per_image_p95": timing.percentile(95) * 1e3,
            **stage_cols, "wall_s": wall,
        })
    return {**common, "rows": rows}


def _evaluation_images(data, num_images: int, input_hw: Sequence[int] | None) -> list[np.ndarray]:
    """The first ``num_images`` images of the evaluation split (val, else test), resized to ``input_hw``."""
    import cv2

    evaluation = data.split("val" if "val" in data.split_names() else "test")
    images = []
    for i in range(min(num_images, len(evaluation))):
        im = evaluation[i].image
        if input_hw is not None and tuple(im.shape[:2]) != tuple(input_hw):
            im = cv2.resize(im, (int(input_hw[1]), int(input_hw[0])), interpolation=cv2.INTER_AREA)
        images.append(im)
    return images


def classical_speed_on_dataset(
    name: str,
    dataset: str = "ccp-mini",
    data_root: str | None = None,
    input_hw: Sequence[int] | None = (360, 480),
    num_images: int = 16,
    processes: Sequence[int] | None = None,
    settings: dict[str, Any] | None = None,
    progress: bool = False,
    threads: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """``bench speed --method NAME``: fit a method on a dataset's train split, then time it.

    The timed images are the first ``num_images`` of the evaluation split (val, else
    test), resized to ``input_hw`` (None: as stored), so the figure is per image at that
    size. The rows of :func:`classical_speed` gain the dataset and the fit time.
    """
    from bench.datasets import get_dataset

    data = get_dataset(dataset, data_root)
    method = create_method(name, settings or {})
    _, fit_s = timed(lambda: method.fit(data.split("train"), None, FitContext(seed=seed, progress=progress)),
                     method.sync)
    res = classical_speed(method, _evaluation_images(data, num_images, input_hw), processes, threads=threads)
    for row in res["rows"]:
        row.update({"method": name, "dataset": dataset, "fit_s": fit_s})
    res.update({"method": name, "dataset": dataset, "fit_s": fit_s})
    return res
