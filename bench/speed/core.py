"""The one timing core: warm-up, device sync, timed calls and their summary (the runner and ``bench speed``).

What the figures built on it mean:

* **per-call seconds** (:func:`timed`): wall time of one call, the device synchronised
  before and after (``sync``), so queued GPU work is inside the figure and nothing before
  it is. The runner times every ``predict`` of the evaluation split this way after one
  untimed warm-up call (:func:`warm_up`); ``bench speed --method`` times every image of its
  one-process row the same way.
* **images/s of a leaderboard or a one-process row**: :attr:`Timing.rate`, the number of
  timed calls over the sum of their seconds (= 1 / mean seconds per image).
* **images/s of a network sweep** (:func:`time_calls`): ``batch x forwards / span``, the
  span running from the start of the first timed forward to the end of the last; forwards
  are queued back to back, the device is synchronised before the first and after the last
  (CUDA events around each forward on a GPU, :func:`timed` per forward on a CPU). Model
  only: no resize, normalisation or argmax, unlike a method's ``predict``.
* **latency p50 / p95**: :meth:`Timing.percentile` of the per-call seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterable, TypeVar

import numpy as np
import torch

from bench.torch_helpers import sync

T = TypeVar("T")
R = TypeVar("R")


def no_sync() -> None:
    """The ``sync`` of work that runs on the CPU only."""


@dataclass
class Timing:
    """Seconds of each timed call, and their summaries."""

    seconds: list[float]  # one entry per timed call

    @property
    def mean(self) -> float:
        return float(np.mean(self.seconds)) if self.seconds else float("nan")

    @property
    def median(self) -> float:
        return float(np.median(self.seconds)) if self.seconds else float("nan")

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.seconds, q)) if self.seconds else float("nan")

    @property
    def rate(self) -> float:
        """Calls per second: the number of calls over their summed seconds (1 / mean)."""
        total = float(np.sum(self.seconds)) if self.seconds else 0.0
        return len(self.seconds) / total if total > 0 else float("nan")


def timed(fn: Callable[[], R], sync: Callable[[], None] = no_sync) -> tuple[R, float]:
    """Run ``fn`` once and return (result, seconds), synchronising the device before and after."""
    sync()
    t0 = time.perf_counter()
    out = fn()
    sync()
    return out, time.perf_counter() - t0


def warm_up(fn: Callable[[T], object], items: Iterable[T], sync: Callable[[], None] = no_sync) -> None:
    """Untimed calls ``fn(item)`` (lazy initialisation, caches, kernel selection), then a sync."""
    for item in items:
        fn(item)
    sync()


def repeat_until(step: Callable[[], object], iters: int, min_time_s: float) -> int:
    """Call ``step`` until it ran at least ``iters`` times **and** ``min_time_s`` seconds passed."""
    count = 0
    t0 = time.perf_counter()
    while count < iters or time.perf_counter() - t0 < min_time_s:
        step()
        count += 1
    return count


def time_calls(call: Callable[[], object], device: torch.device, iters: int, min_time_s: float
               ) -> tuple[Timing, float]:
    """Per-call seconds of ``call`` and the span of all of them (see the module docstring),
    running until both ``iters`` calls and ``min_time_s`` seconds are reached."""
    iters = max(1, iters)
    if device.type != "cuda":
        per: list[float] = []
        _, span = timed(lambda: repeat_until(lambda: per.append(timed(call)[1]), iters, min_time_s))
        return Timing(per), span
    events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []

    def step() -> None:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        call()
        end.record()
        events.append((start, end))

    timed(lambda: repeat_until(step, iters, min_time_s), lambda: sync(device))
    per = [s.elapsed_time(e) / 1e3 for s, e in events]
    return Timing(per), events[0][0].elapsed_time(events[-1][1]) / 1e3
