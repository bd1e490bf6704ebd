"""Throughput of segmentation networks: one measurement (:func:`measure_model`) and the sweep table.

What one measurement does, in order:

1. the model goes to the device in eval mode; with ``channels_last`` its weights and the
   input are converted to NHWC (the weights are converted back afterwards);
2. every forward runs under ``torch.inference_mode()`` (on CUDA with cuDNN benchmark on)
   and :func:`bench.torch_helpers.precision_context`: TF32 **on** for ``tf32`` only, so our
   ``fp32`` is strict IEEE fp32; ``bf16`` / ``fp16`` use ``torch.autocast``;
3. optionally the forward is wrapped by ``torch.compile`` (``max-autotune`` on CUDA,
   default mode on CPU) and/or captured once into a CUDA graph with a static input;
4. ``warmup`` untimed forwards (autotuning, compilation, allocator growth), then
   :func:`bench.speed.core.time_calls` (``iters`` forwards **and** ``min_time_s`` seconds);
5. images/s = batch size x forwards / span of the timed forwards (model only); latency
   p50/p95 per batch; peak memory (:class:`bench.speed.memory.PeakMemory`); FLOPs per image
   by :func:`bench.torch_helpers.count_flops` (**one multiply-add = 2 FLOPs**), achieved
   TFLOP/s = FLOPs per image x images/s, and the fraction of the device's dense peak for
   that precision (:mod:`bench.speed.gpu_peaks`, or ``peak_tflops`` given by the user).

A setting the device cannot run (fp16 or tf32 on a CPU, bf16 on a GPU without it, CUDA
graphs on a CPU) gives a row with status ``unsupported`` and a note, never a crash; so does
a failing ``torch.compile`` or graph capture (status ``failed``). A batch that does not fit
in memory is halved until one fits (status ``ok`` with a note, or ``oom`` when even batch
1 does not fit). Every row names the device, precision, batch size, input size and versions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import tempfile
import time
from typing import Any, Callable, Sequence

import pandas as pd
import torch
from torch import nn

from bench.formatting import is_finite_number
from bench.method import MethodError, create_method, method_class
from bench.run.provenance import device_name, git_commit, versions
import bench.speed.gpu_peaks as gpu_peaks
from bench.speed.core import time_calls
from bench.speed.forward import forward_session, mode_name, resolve_device, unsupported_reason
from bench.speed.loader import end_to_end_rates, write_images
from bench.speed.memory import (
    BATCH_CAP, BatchProbe, PeakMemory, first_line, free_memory, is_oom, probe_batches, with_backoff,
)
from bench.speed.table import hw_text
from bench.torch_helpers import PRECISIONS, count_flops

#: (warmup, iters, min_time_s) when the caller gives None
CUDA_DEFAULTS = (10, 50, 2.0)
CPU_DEFAULTS = (2, 5, 1.0)

#: column order of the table; extra keys follow in their own order
COLUMNS = [
    "model", "width", "num_classes", "input_hw", "batch_size", "precision", "layout", "mode", "status",
    "images_per_s", "latency_p50_ms", "latency_p95_ms", "speedup_vs_eager_fp32",
    "e2e_images_per_s", "loader_images_per_s", "limited_by", "num_workers",
    "peak_mem_mib", "gflops_per_image", "achieved_tflops", "peak_tflops", "fraction_of_peak",
    "iters", "time_s", "warmup_s", "note", "baseline", "requested_batch_size",
    "device", "device_name", "torch", "torchvision", "cuda", "cudnn", "driver", "python", "git_commit",
]


def add_note(rec: dict[str, Any], note: str) -> None:
    """Append ``note`` to the record's note."""
    rec["note"] = f"{rec['note']}; {note}" if rec.get("note") else note


def _base_record(model: nn.Module, dev: torch.device, input_hw, batch_size: int, precision: str,
                 channels_last: bool, compile: bool, cuda_graphs: bool) -> dict[str, Any]:
    v = versions()
    return {
        "model": getattr(model, "name", "") or type(model).__name__,
        "width": getattr(model, "width", None), "num_classes": getattr(model, "num_classes", None),
        "input_hw": hw_text(input_hw), "batch_size": int(batch_size), "precision": precision,
        "layout": "NHWC" if channels_last else "NCHW", "mode": mode_name(compile, cuda_graphs),
        "status": "ok", "note": "", "device": str(dev), "device_name": device_name(str(dev)),
        "torch": v.get("torch"), "torchvision": v.get("torchvision"), "cuda": v.get("cuda"),
        "cudnn": v.get("cudnn", "none"), "driver": v.get("driver", "none"), "python": v.get("python"),
        "git_commit": git_commit(),
    }


def _finish(rec: dict[str, Any]) -> dict[str, Any]:
    for key in COLUMNS:
        rec.setdefault(key, None)
    return rec


def _defaults(dev: torch.device, warmup, iters, min_time_s) -> tuple[int, int, float]:
    dw, di, dt = CUDA_DEFAULTS if dev.type == "cuda" else CPU_DEFAULTS
    return (dw if warmup is None else int(warmup), di if iters is None else int(iters),
            dt if min_time_s is None else float(min_time_s))


def _flops_and_peak(rec: dict[str, Any], model: nn.Module, input_hw, dev: torch.device, precision: str,
                    flops_per_image: int | None, peak_tflops: float | None) -> int | None:
    """Fill ``gflops_per_image`` and ``peak_tflops``; return the FLOPs per image (None: not counted)."""
    if flops_per_image is None:
        try:
            flops_per_image = count_flops(model.to(dev).eval(), input_hw)
        except Exception as exc:  # noqa: BLE001 -- a counting failure must not stop timing; it is noted
            add_note(rec, f"FLOPs not counted ({first_line(exc)})")
    rec["gflops_per_image"] = flops_per_image / 1e9 if flops_per_image else None
    if peak_tflops is not None:
        rec["peak_tflops"] = float(peak_tflops)
    elif dev.type == "cuda":
        rec["peak_tflops"] = gpu_peaks.peak_tflops(torch.cuda.get_device_name(dev), precision)
        if rec["peak_tflops"] is None:
            add_note(rec, "peak TFLOP/s unknown for this GPU (give --peak-tflops)")
    return flops_per_image


def _time_forwards(rec: dict[str, Any], model: nn.Module, input_hw, dev: torch.device, precision: str,
                   channels_last: bool, compile: bool, cuda_graphs: bool, warmup: int, iters: int,
                   min_time_s: float, e2e: dict | None) -> None:
    """Time the forwards (and the end-to-end pipeline) into ``rec``; OOM and compile errors propagate."""
    batch_size = rec["batch_size"]
    memory = PeakMemory(dev).start()
    start = time.perf_counter()
    with forward_session(model, input_hw, batch_size, dev, precision, channels_last, compile,
                         cuda_graphs, warmup) as (fn, x, notes):
        # the untimed part: layout, compilation, warm-up forwards (cuDNN's autotuning of each new shape)
        rec["warmup_s"] = time.perf_counter() - start
        for n in notes:
            add_note(rec, n)
        timing, span = time_calls(lambda: fn(x), dev, iters, min_time_s)
        rec["peak_mem_mib"] = memory.mib()
        rec.update(iters=len(timing.seconds), time_s=span, images_per_s=batch_size * len(timing.seconds) / span,
                   latency_p50_ms=timing.median * 1e3, latency_p95_ms=timing.percentile(95) * 1e3)
        if e2e is None:
            return
        rec["num_workers"] = e2e["num_workers"]
        e2e_msg = None
        try:
            rec["e2e_images_per_s"], rec["loader_images_per_s"] = end_to_end_rates(
                e2e, fn, batch_size, dev, channels_last, iters, min_time_s)
        except Exception as exc:  # noqa: BLE001 -- e.g. a worker killed (shared memory full); noted below
            if is_oom(exc):
                raise
            e2e_msg = first_line(exc)
        if e2e_msg is not None:  # the model-only figures stand; say why e2e is missing
            rec["e2e_images_per_s"] = rec["loader_images_per_s"] = None
            add_note(rec, f"end-to-end not measured ({e2e_msg})")


def _measure(model, input_hw, batch_size, device, precision, channels_last, compile, cuda_graphs,
             warmup, iters, min_time_s, flops_per_image, peak_tflops, e2e: dict | None) -> dict[str, Any]:
    """One record of :func:`measure_model` (plus the end-to-end figures when ``e2e`` is given)."""
    dev = resolve_device(device)
    warmup, iters, min_time_s = _defaults(dev, warmup, iters, min_time_s)
    rec = _base_record(model, dev, input_hw, batch_size, precision, channels_last, compile, cuda_graphs)
    reason = unsupported_reason(dev, precision, cuda_graphs)
    if reason:
        rec.update(status="unsupported", note=reason)
        return _finish(rec)
    flops_per_image = _flops_and_peak(rec, model, input_hw, dev, precision, flops_per_image, peak_tflops)
    error = None
    try:
        _time_forwards(rec, model, input_hw, dev, precision, channels_last, compile, cuda_graphs,
                       warmup, iters, min_time_s, e2e)
    except Exception as exc:  # noqa: BLE001 -- OOM and compile/graph failures become the row's status
        if is_oom(exc):
            error = ("oom", f"batch {batch_size} does not fit ({first_line(exc)})")
        elif compile or cuda_graphs:
            error = ("failed", f"{rec['mode']} failed: {first_line(exc)}")
        else:
            raise
    # the exception (and the frames holding the tensors) is gone here: give the memory back
    if error is not None:
        free_memory(dev)
        for key in ("iters", "time_s", "images_per_s", "latency_p50_ms", "latency_p95_ms",
                    "e2e_images_per_s", "loader_images_per_s"):  # no figures for a row that did not run
            rec.pop(key, None)
        rec["status"] = error[0]
        add_note(rec, error[1])
        return _finish(rec)
    if flops_per_image:
        rec["achieved_tflops"] = flops_per_image * rec["images_per_s"] / 1e12
        if rec.get("peak_tflops"):
            rec["fraction_of_peak"] = rec["achieved_tflops"] / rec["peak_tflops"]
    if e2e is not None and rec.get("loader_images_per_s"):
        rec["limited_by"] = "data loading" if rec["loader_images_per_s"] < rec["images_per_s"] else "model"
    return _finish(rec)


def measure_model(
    model: nn.Module,
    input_hw: Sequence[int],
    batch_size: int = 1,
    device: str = "cpu",
    precision: str = "fp32",
    channels_last: bool = False,
    compile: bool = False,
    cuda_graphs: bool = False,
    warmup: int | None = None,
    iters: int | None = None,
    min_time_s: float | None = None,
    *,
    flops_per_image: int | None = None,
    peak_tflops: float | None = None,
) -> dict[str, Any]:
    """Time the forward of ``model`` on random input of ``batch_size x C x H x W``; one record.

    ``warmup`` / ``iters`` / ``min_time_s`` default to :data:`CUDA_DEFAULTS` or
    :data:`CPU_DEFAULTS`. ``flops_per_image`` (else counted here) and ``peak_tflops`` (else
    looked up for a known GPU; None on a CPU) give ``achieved_tflops`` and
    ``fraction_of_peak``. Status ``ok``, ``unsupported``, ``oom`` or ``failed`` (compile
    or graph capture), with a note; other errors of the model propagate.
    """
    return _measure(model, input_hw, batch_size, device, precision, channels_last, compile, cuda_graphs,
                    warmup, iters, min_time_s, flops_per_image, peak_tflops, None)


def measure_with_backoff(model: nn.Module, input_hw: Sequence[int], batch_size: int, device: str = "cpu",
                         precision: str = "fp32", channels_last: bool = False, compile: bool = False,
                         cuda_graphs: bool = False, warmup: int | None = None, iters: int | None = None,
                         min_time_s: float | None = None, *, flops_per_image: int | None = None,
                         peak_tflops: float | None = None, e2e: dict | None = None) -> dict[str, Any]:
    """:func:`measure_model` (plus the end-to-end figures when ``e2e`` is given), halving the
    batch while it runs out of memory (:func:`bench.speed.memory.with_backoff`)."""
    return with_backoff(lambda b: _measure(model, input_hw, b, device, precision, channels_last, compile,
                                           cuda_graphs, warmup, iters, min_time_s, flops_per_image,
                                           peak_tflops, e2e), batch_size)


def _fits(model: nn.Module, input_hw, batch_size: int, dev: torch.device, precision: str, channels_last: bool
          ) -> str | None:
    """None when two forwards of ``batch_size`` run; else the out-of-memory message."""
    msg = None
    try:
        with forward_session(model, input_hw, batch_size, dev, precision, channels_last, False, False, 2):
            pass
    except Exception as exc:  # noqa: BLE001 -- only an OOM is an answer; anything else propagates
        if not is_oom(exc):
            raise
        msg = first_line(exc)
    if msg is not None:
        free_memory(dev)  # outside the except block: the traceback's tensors are gone
    return msg


def probe_largest_batch(model: nn.Module, input_hw: Sequence[int], device: str = "cpu", precision: str = "fp32",
                        channels_last: bool = False, cap: int | None = None) -> BatchProbe:
    """Double the batch from 1 until it runs out of memory or passes ``cap`` (256 on CUDA, 16 on CPU)."""
    dev = resolve_device(device)
    return probe_batches(lambda b: _fits(model, input_hw, b, dev, precision, channels_last),
                         int(cap or BATCH_CAP[dev.type]))


def largest_batch(model: nn.Module, input_hw: Sequence[int], device: str = "cpu", precision: str = "fp32",
                  channels_last: bool = False, cap: int | None = None) -> int:
    """The largest power-of-two batch (<= cap) whose forward fits in memory; 0 when none does."""
    probe = probe_largest_batch(model, input_hw, device, precision, channels_last, cap)
    print(f"segbench speed: {probe.note}", file=sys.stderr)
    return probe.largest


# -- the sweep ----------------------------------------------------------------------------------
def build_network(name: str, num_classes: int, width: float = 1.0, seed: int = 0) -> nn.Module:
    """The untrained network of the registered method ``name`` (its ``create_network``), built with
    ``width`` and random weights seeded with ``seed``; an error for a method without a network."""
    cls = method_class(name)
    if not cls.capabilities.network:
        raise MethodError(f"method '{name}' has no network to time (a {cls.kind} method); "
                          f"time it with `bench speed --method {name}`")
    has_width = "width" in {f.name for f in dataclasses.fields(cls.Settings)}  # library networks: one size
    method = create_method(name, {"width": float(width)} if has_width else {})
    torch.manual_seed(seed)  # after create_method: the weights depend on the seed alone
    return method.create_network(num_classes)


def _as_list(value, kind=str) -> list:
    if isinstance(value, str):
        return [kind(v.strip()) for v in value.split(",") if v.strip()]
    return [kind(v) for v in value]


def _batch_sizes(batch_sizes: Sequence[int] | str) -> list[int] | None:
    """The batch sizes asked for; None for ``"auto"``."""
    if isinstance(batch_sizes, str) and batch_sizes.strip().lower() == "auto":
        return None
    batches = _as_list(batch_sizes, int)
    if not batches or min(batches) < 1:
        raise ValueError(f"batch sizes must be positive integers or 'auto', got {batch_sizes!r}")
    return batches


#: precision, batch, channels_last, compile, cuda_graphs of the baseline row
BASELINE = ("fp32", 1, False, False, False)


def _settings(model: nn.Module, input_hw, dev: torch.device, precisions: list[str], batches: list[int] | None,
              channels_last: bool, compile: bool, cuda_graphs: bool) -> list[tuple]:
    """(precision, batch, channels_last, compile, cuda_graphs, note) of every row, the baseline first."""
    rows: list[tuple] = [(*BASELINE, "")]
    for p in precisions:
        if batches is not None:
            bs, note = batches, ""
        elif unsupported_reason(dev, p, cuda_graphs):
            bs, note = [1], ""
        else:
            probe = probe_largest_batch(model, input_hw, dev, p, channels_last)
            bs, note = sorted({1, max(1, probe.largest)}), "auto: " + probe.note
        for b in bs:
            s = (p, b, channels_last, compile, cuda_graphs)
            if s != BASELINE:
                rows.append((*s, note if b != 1 or len(bs) == 1 else ""))
    return rows


def _count_flops_once(model: nn.Module, input_hw, dev: torch.device) -> int | None:
    """FLOPs per image, or None when counting runs out of memory (each row then retries and notes it)."""
    try:
        return count_flops(model, input_hw)
    except Exception as exc:  # noqa: BLE001 -- only an OOM is tolerated here
        if not is_oom(exc):
            raise
    free_memory(dev)
    return None


def speed_table(
    model_name: str | nn.Module,
    device: str = "cpu",
    width: float = 1.0,
    input_hw: Sequence[int] = (360, 480),
    batch_sizes: Sequence[int] | str = (1,),
    precisions: Sequence[str] | str = ("fp32",),
    channels_last: bool = False,
    compile: bool = False,
    cuda_graphs: bool = False,
    num_classes: int = 21,
    peak_tflops: float | None = None,
    end_to_end: bool = True,
    *,
    num_workers: int | None = None,
    warmup: int | None = None,
    iters: int | None = None,
    min_time_s: float | None = None,
    image_format: str = "png",
    decoder: str = "pil",
    seed: int = 0,
    on_row: Callable[[pd.DataFrame], None] | None = None,
) -> pd.DataFrame:
    """One row per (batch size, precision) with the chosen layout and mode, plus the baseline.

    ``model_name``: a registered method with a network (:func:`build_network`, built with
    ``width`` and ``num_classes``, random weights seeded with ``seed``) or an ``nn.Module``.
    ``batch_sizes``: integers, or ``"auto"`` = batch 1 and the largest power of two that
    fits (per precision; cap 256 on CUDA, 16 on CPU). ``channels_last`` / ``compile`` /
    ``cuda_graphs`` apply to every row except the baseline, which is always measured: eager,
    fp32 (TF32 off), batch 1, NCHW -- what most people write; ``speedup_vs_eager_fp32``
    divides each row's images/s by the baseline's. ``end_to_end`` adds decode +
    preprocessing through a DataLoader with ``num_workers`` processes (default
    ``min(8, cpu count)``) next to the model-only figure. ``on_row`` is called with the
    table so far after every row (the baseline is the first), so a sweep stopped half-way
    keeps what it measured.
    """
    dev = resolve_device(device)
    precisions = _as_list(precisions)
    for p in precisions:
        if p not in PRECISIONS:
            raise ValueError(f"unknown precision {p!r}; known: {', '.join(PRECISIONS)}")
    batches = _batch_sizes(batch_sizes)
    model = model_name if isinstance(model_name, nn.Module) else build_network(model_name, num_classes, width, seed)
    model.to(dev).eval()
    name = getattr(model, "name", "") or (model_name if isinstance(model_name, str) else type(model).__name__)
    meta = dict(model=name, width=getattr(model, "width", width),
                num_classes=getattr(model, "num_classes", num_classes))
    flops = _count_flops_once(model, input_hw, dev)
    rows = []
    with contextlib.ExitStack() as stack:
        e2e = None
        if end_to_end:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="segbench-speed-"))
            e2e = {"paths": write_images(folder, input_hw, 16, image_format), "decoder": decoder,
                   "num_workers": int(min(8, os.cpu_count() or 1) if num_workers is None else num_workers)}
        for p, b, cl, comp, graphs, note in _settings(model, input_hw, dev, precisions, batches, channels_last,
                                                     compile, cuda_graphs):
            rec = measure_with_backoff(model, input_hw, b, dev, p, cl, compile=comp, cuda_graphs=graphs,
                                       warmup=warmup, iters=iters, min_time_s=min_time_s, flops_per_image=flops,
                                       peak_tflops=peak_tflops, e2e=e2e)
            if note:
                add_note(rec, note)
            rec.update(meta, baseline=(p, b, cl, comp, graphs) == BASELINE)
            rows.append(rec)
            if on_row is not None:
                on_row(_table(rows))
    return _table(rows)


def _table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The records as a frame with ``speedup_vs_eager_fp32`` (images/s over the baseline's), columns in order."""
    df = pd.DataFrame(rows)
    rates = pd.to_numeric(df["images_per_s"], errors="coerce")
    base_rate = rates[df["baseline"]].iloc[0]
    ok = is_finite_number(base_rate) and base_rate > 0
    df["speedup_vs_eager_fp32"] = [r / base_rate if ok and is_finite_number(r) else None for r in rates]
    cols = [c for c in COLUMNS if c in df.columns] + [c for c in df.columns if c not in COLUMNS]
    return df[cols]
