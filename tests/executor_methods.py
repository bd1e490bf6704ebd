"""Test-only methods for the executors' tests (tests/test_ray_executor.py,
tests/test_workers.py): some kill their own process in fit(), one reports its thread count.

They live in a module of their own, not in the test file, because a worker (a Ray worker, a
``--workers`` process) looks a job's method up by name in its own registry: the worker must
import this module to know them. The tests pass ``setup_modules=("executor_methods",)``,
which the worker imports before its first job (Ray's workers also get this folder on their
PYTHONPATH through ``runtime_env``; spawned processes inherit the driver's ``sys.path``).
The driver imports it too (to plan the jobs).
"""

from __future__ import annotations

import dataclasses
import os
import signal
from pathlib import Path

import numpy as np
import torch

from bench.method import Method, register_method


@dataclasses.dataclass
class MarkerSettings:
    #: a file in the test's tmp_path: one line is appended per fit() attempt
    marker: str = ""


class _KillsItsWorker(Method):
    Settings = MarkerSettings

    def _attempt(self) -> int:
        """Count this attempt in the marker file; the number of attempts so far."""
        marker = Path(self.settings.marker)
        with marker.open("a") as f:
            f.write(f"{os.getpid()}\n")
        return len(marker.read_text().splitlines())

    def predict(self, image):
        self._require_fitted()
        return np.zeros(image.shape[:2], np.int32)


@register_method("test-ray-kill-once")
class KillOnce(_KillsItsWorker):
    """SIGKILLs its own worker on the first attempt, fits on the next."""

    def _fit(self, train, val):
        if self._attempt() == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        self.info = train.info


@register_method("test-ray-kill-always")
class KillAlways(_KillsItsWorker):
    """SIGKILLs its own worker on every attempt."""

    def _fit(self, train, val):
        self._attempt()
        os.kill(os.getpid(), signal.SIGKILL)


@register_method("test-report-threads")
class ReportThreads(Method):
    """Says, in its extra figures, how many threads torch had while fitting, and its process."""

    Settings = MarkerSettings  # the marker only tells jobs apart here

    def _fit(self, train, val):
        self.info = train.info
        self.seen = {"torch_threads": torch.get_num_threads(), "pid": os.getpid()}

    def extra_metrics(self):
        return dict(getattr(self, "seen", {}))

    def predict(self, image):
        self._require_fitted()
        return np.zeros(image.shape[:2], np.int32)
