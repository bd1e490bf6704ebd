"""Memory of a measurement: out-of-memory detection and recovery, peak memory, batch back-off and probing."""

from __future__ import annotations

import gc
import resource
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from bench.torch_helpers import sync

#: largest batch tried by ``batch_sizes="auto"`` / :func:`probe_batches`
BATCH_CAP = {"cuda": 256, "cpu": 16}


def is_oom(exc: BaseException) -> bool:
    """True for an out-of-memory error (CUDA's own type, or the allocator's RuntimeError)."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    if isinstance(exc, RuntimeError):
        msg = str(exc).lower()
        return "out of memory" in msg or "can't allocate memory" in msg or "cudnn_status_alloc_failed" in msg
    return False


def free_memory(dev: torch.device | str | None = None) -> None:
    """Drop unreachable tensors and give cached CUDA blocks back (after an OOM)."""
    gc.collect()
    if torch.cuda.is_available() and (dev is None or torch.device(dev).type == "cuda"):
        torch.cuda.empty_cache()


def first_line(exc: BaseException, limit: int = 160) -> str:
    """``Type: first line of the message``, shortened to ``limit`` characters (for a note)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- peak memory ------------------------------------------------------------------------------
def _read_proc_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset VmHWM (the peak RSS) to the current RSS by writing 5 to clear_refs; False where
    that is impossible (not Linux, not allowed)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class PeakMemory:
    """Peak memory of the work between :meth:`start` and :meth:`mib`, in MiB.

    CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` (weights +
    activations + workspaces). CPU: the rise of the process' peak RSS (reset through
    ``/proc/self/clear_refs`` on Linux; else the rise above the lifetime peak; None elsewhere).
    """

    def __init__(self, dev: torch.device):
        self.dev = dev

    def start(self) -> "PeakMemory":
        if self.dev.type == "cuda":
            sync(self.dev)
            torch.cuda.reset_peak_memory_stats(self.dev)
            return self
        self.rss_before = _read_proc_kib("VmRSS")
        self.reset = _reset_peak_rss()
        self.ru_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        return self

    def mib(self) -> float | None:
        if self.dev.type == "cuda":
            return torch.cuda.max_memory_allocated(self.dev) / 2**20
        hwm = _read_proc_kib("VmHWM")
        if self.reset and self.rss_before is not None and hwm is not None:
            return max(0, hwm - self.rss_before) / 1024
        if sys.platform.startswith("linux"):  # lifetime peak: only a rise above it shows
            return max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - self.ru_before) / 1024
        return None


# -- batch sizes ------------------------------------------------------------------------------
def with_backoff(measure: Callable[[int], dict[str, Any]], batch_size: int) -> dict[str, Any]:
    """``measure(batch)``, halving the batch while its record's status is ``oom``; the note says so.

    ``requested_batch_size`` keeps the batch asked for, ``batch_size`` the one measured.
    """
    b, failed = int(batch_size), []
    while True:
        rec = measure(b)
        if rec["status"] != "oom" or b == 1:
            break
        failed.append(b)
        b //= 2
    rec["requested_batch_size"] = int(batch_size)
    if failed and rec["status"] != "oom":
        rec["note"] = (f"batch {batch_size} does not fit (out of memory); backed off by halving: "
                       f"largest that fitted = {b}" + (f"; {rec['note']}" if rec["note"] else ""))
    elif failed:
        rec["note"] = f"no batch size fits, not even 1 (tried {', '.join(map(str, failed + [1]))}); {rec['note']}"
    return rec


@dataclass
class BatchProbe:
    """What :func:`probe_batches` found."""

    largest: int  # largest batch that ran (0: not even 1)
    oom_at: int | None  # first batch that ran out of memory; None when the cap was reached
    cap: int
    note: str


def probe_batches(fits: Callable[[int], str | None], cap: int) -> BatchProbe:
    """Double the batch from 1 until ``fits(batch)`` returns an out-of-memory message or the
    batch passes ``cap``."""
    largest, b = 0, 1
    while b <= cap:
        msg = fits(b)
        if msg is not None:
            note = (f"largest batch that fits: {largest} (batch {b} ran out of memory)" if largest
                    else f"batch 1 does not fit ({msg})")
            return BatchProbe(largest, b, cap, note)
        largest, b = b, b * 2
    return BatchProbe(largest, None, cap, f"largest batch tried: {largest} (cap {cap} reached, no OOM)")
