"""Throughput of segmentation networks (and classical methods): ``python -m bench speed``.

What one measurement does (:func:`measure_model`), in order:

1. the model goes to the device in eval mode; with ``channels_last`` its weights and the
   input are converted to NHWC (the weights are converted back afterwards);
2. every forward runs under ``torch.inference_mode()``; on CUDA with
   ``torch.backends.cudnn.benchmark = True``; TF32 is switched **on** for ``tf32`` and
   **off** for everything else (``torch.backends.cuda.matmul.allow_tf32`` and
   ``torch.backends.cudnn.allow_tf32``; PyTorch's default lets cuDNN convolutions use
   TF32, so our ``fp32`` is strict IEEE fp32); ``bf16`` / ``fp16`` use ``torch.autocast``;
   the global flags are restored afterwards;
3. optionally the forward is wrapped by ``torch.compile`` (``max-autotune`` on CUDA,
   default mode on CPU) and/or captured once into a CUDA graph with a static input;
4. ``warmup`` untimed forwards (cuDNN autotuning, compilation, allocator growth), then
   timed forwards until **both** ``iters`` forwards and ``min_time_s`` seconds are reached:
   CUDA events around every forward on the GPU (the device is synchronised before the
   first and after the last), ``time.perf_counter`` on the CPU;
5. images/s = batch size x forwards / time from the start of the first timed forward to
   the end of the last; latency p50/p95 per batch from the per-forward times; peak memory
   (``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, i.e. weights +
   activations + workspaces; on Linux CPUs the rise of the process' peak RSS, reset through
   ``/proc/self/clear_refs``); FLOPs per image counted once per model and input size with
   ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matrix products only;
   **one multiply-add = 2 FLOPs**), achieved TFLOP/s = FLOPs per image x images/s, and
   the fraction of the device's dense peak for that precision (:mod:`bench.gpu_peaks`, or
   ``peak_tflops`` given by the user).

A setting the device cannot run (fp16 or tf32 on a CPU, bf16 on a GPU without it, CUDA
graphs on a CPU) gives a row with status ``unsupported`` and a note, never a crash; so does
a failing ``torch.compile`` or graph capture (status ``failed``). A batch that does not fit
in memory is halved until one fits (status ``ok`` with a note, or ``oom`` when even batch
1 does not fit). Every row names the device, precision, batch size, input size and the
library versions.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from bench import gpu_peaks
from bench.provenance import device_name, git_commit, versions
from bench.timing import Timing

PRECISIONS = gpu_peaks.PRECISIONS
#: (warmup, iters, min_time_s) when the caller gives None
CUDA_DEFAULTS = (10, 50, 2.0)
CPU_DEFAULTS = (2, 5, 1.0)
#: largest batch tried by ``batch_sizes="auto"`` / :func:`largest_batch`
BATCH_CAP = {"cuda": 256, "cpu": 16}
#: ImageNet statistics the data pipeline normalises with (as deep/transforms.py does)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: column order of the table; extra keys follow in their own order
COLUMNS = [
    "model", "width", "num_classes", "input_hw", "batch_size", "precision", "layout", "mode", "status",
    "images_per_s", "latency_p50_ms", "latency_p95_ms", "speedup_vs_eager_fp32",
    "e2e_images_per_s", "loader_images_per_s", "limited_by", "num_workers",
    "peak_mem_mib", "gflops_per_image", "achieved_tflops", "peak_tflops", "fraction_of_peak",
    "iters", "time_s", "note", "baseline", "requested_batch_size",
    "device", "device_name", "torch", "torchvision", "cuda", "cudnn", "driver", "python", "git_commit",
]


class Unsupported(Exception):
    """A setting the device cannot run."""


# -- small helpers ---------------------------------------------------------------------------
def _hw_text(input_hw: Sequence[int]) -> str:
    return f"{int(input_hw[0])}x{int(input_hw[1])}"


def _mode(compile: bool, cuda_graphs: bool) -> str:
    parts = (["compile"] if compile else []) + (["cuda-graphs"] if cuda_graphs else [])
    return "+".join(parts) or "eager"


def _dev(device: str | torch.device) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {device}: CUDA is not available on this machine")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
    elif dev.type != "cpu":
        raise ValueError(f"device must be cpu or cuda[:N], not {device!r}")
    return dev


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


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


def _first_line(exc: BaseException, limit: int = 160) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _in_channels(model: nn.Module) -> int:
    return int(getattr(model, "in_channels", 3))


def _base_record(model: nn.Module | None, dev: torch.device, input_hw, batch_size: int, precision: str,
                 channels_last: bool, compile: bool, cuda_graphs: bool) -> dict[str, Any]:
    v = versions()
    rec: dict[str, Any] = {
        "model": (getattr(model, "name", "") or type(model).__name__) if model is not None else None,
        "width": getattr(model, "width", None) if model is not None else None,
        "num_classes": getattr(model, "num_classes", None) if model is not None else None,
        "input_hw": _hw_text(input_hw),
        "batch_size": int(batch_size),
        "precision": precision,
        "layout": "NHWC" if channels_last else "NCHW",
        "mode": _mode(compile, cuda_graphs),
        "status": "ok",
        "note": "",
        "device": str(dev),
        "device_name": device_name(str(dev)),
        "torch": v.get("torch"), "torchvision": v.get("torchvision"), "cuda": v.get("cuda"),
        "cudnn": v.get("cudnn", "none"), "driver": v.get("driver", "none"), "python": v.get("python"),
        "git_commit": git_commit(),
    }
    return rec


def _add_note(rec: dict[str, Any], note: str) -> None:
    rec["note"] = f"{rec['note']}; {note}" if rec.get("note") else note


def _defaults(dev: torch.device, warmup, iters, min_time_s) -> tuple[int, int, float]:
    dw, di, dt = CUDA_DEFAULTS if dev.type == "cuda" else CPU_DEFAULTS
    return (dw if warmup is None else int(warmup), di if iters is None else int(iters),
            dt if min_time_s is None else float(min_time_s))


# -- precision, flags, support ------------------------------------------------------------------
def unsupported_reason(device: str | torch.device, precision: str, cuda_graphs: bool = False) -> str | None:
    """Why ``precision`` (and CUDA graphs) cannot run on ``device``; None when they can."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")
    dev = torch.device(device)
    if dev.type == "cpu":
        if precision == "fp16":
            return "fp16 unsupported on cpu (fp16 autocast is benchmarked on CUDA only; use bf16 on a CPU)"
        if precision == "tf32":
            return "tf32 unsupported on cpu (TF32 is an NVIDIA tensor-core format)"
        if cuda_graphs:
            return "CUDA graphs unsupported on cpu"
        return None
    major, _ = torch.cuda.get_device_capability(dev)
    if precision == "tf32" and major < 8:
        return f"tf32 unsupported on {torch.cuda.get_device_name(dev)} (needs compute capability 8.0+)"
    if precision == "bf16":
        try:
            ok = torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # older signature
            ok = torch.cuda.is_bf16_supported()
        if not ok:
            return f"bf16 unsupported on {torch.cuda.get_device_name(dev)}"
    return None


@contextlib.contextmanager
def precision_context(precision: str, device_type: str, cache_enabled: bool = True) -> Iterator[None]:
    """TF32 on only for ``tf32`` (CUDA), autocast for bf16/fp16; global flags restored on exit."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")
    saved = None
    if device_type == "cuda":
        saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        tf32 = precision == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    try:
        if precision in ("bf16", "fp16"):
            dtype = torch.bfloat16 if precision == "bf16" else torch.float16
            with torch.autocast(device_type=device_type, dtype=dtype, cache_enabled=cache_enabled):
                yield
        else:
            yield
    finally:
        if saved is not None:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@contextlib.contextmanager
def _cudnn_benchmark(device_type: str) -> Iterator[None]:
    saved = torch.backends.cudnn.benchmark
    if device_type == "cuda":
        torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = saved


@contextlib.contextmanager
def _layout(model: nn.Module, channels_last: bool) -> Iterator[None]:
    if channels_last:
        model.to(memory_format=torch.channels_last)
    try:
        yield
    finally:
        if channels_last:
            model.to(memory_format=torch.contiguous_format)


# -- FLOPs and memory ------------------------------------------------------------------------------
def count_flops(model: nn.Module, input_hw: Sequence[int], device: str | torch.device = "cpu") -> int:
    """FLOPs of one forward of one image (batch 1, fp32) by ``FlopCounterMode``.

    Counts convolutions, transposed convolutions and matrix products; one multiply-add is
    two FLOPs. Biases, normalisation, activations, pooling and interpolation are not counted.
    """
    from torch.utils.flop_counter import FlopCounterMode

    dev = _dev(device)
    model = model.to(dev).eval()
    x = torch.zeros(1, _in_channels(model), int(input_hw[0]), int(input_hw[1]), device=dev)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(x)
    return int(counter.get_total_flops())


def _read_proc_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


class _CpuPeakRss:
    """Rise of the process' peak resident memory since :meth:`start`, in MiB (Linux), else None."""

    def start(self) -> "_CpuPeakRss":
        self.before = _read_proc_kib("VmRSS")
        self.reset = False
        try:  # writing 5 resets VmHWM (the peak RSS) to the current RSS
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.reset = True
        except OSError:
            pass
        self.ru_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        return self

    def peak_mib(self) -> float | None:
        hwm = _read_proc_kib("VmHWM")
        if self.reset and self.before is not None and hwm is not None:
            return max(0, hwm - self.before) / 1024
        if sys.platform.startswith("linux"):  # lifetime peak: only a rise above it shows
            return max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - self.ru_before) / 1024
        return None


# -- the forward under all settings ---------------------------------------------------------------------
def _compile(model: nn.Module, device_type: str, cuda_graphs: bool) -> tuple[Callable, str]:
    import torch._dynamo

    torch._dynamo.reset()  # each setting compiles afresh (no recompile-limit surprises)
    if device_type == "cuda":
        mode = "max-autotune" if cuda_graphs else "max-autotune-no-cudagraphs"
        return torch.compile(model, mode=mode, dynamic=False), f"torch.compile(mode={mode})"
    return torch.compile(model, dynamic=False), "torch.compile(default mode)"


def _capture_graph(fn: Callable, static_x: torch.Tensor, warmup: int) -> Callable:
    """Capture ``fn(static_x)`` in a CUDA graph; the returned callable copies its input in and replays."""
    dev = static_x.device
    side = torch.cuda.Stream(device=dev)
    side.wait_stream(torch.cuda.current_stream(dev))
    with torch.cuda.stream(side):  # warm up on a side stream, as capture requires
        for _ in range(max(3, warmup)):
            fn(static_x)
    torch.cuda.current_stream(dev).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = fn(static_x)

    def replay(x: torch.Tensor) -> torch.Tensor:
        if x is not static_x:
            static_x.copy_(x)
        graph.replay()
        return static_out

    replay.graph = graph  # type: ignore[attr-defined]  # keep it alive with the callable
    return replay


@contextlib.contextmanager
def _forward_session(model: nn.Module, input_hw, batch_size: int, dev: torch.device, precision: str,
                     channels_last: bool, compile: bool, cuda_graphs: bool, warmup: int
                     ) -> Iterator[tuple[Callable, torch.Tensor, list[str]]]:
    """Yield ``(fn, x, notes)``: ``fn(x)`` is one forward under every setting, already warmed up.

    The caller's forwards must run inside the ``with`` block (precision and flags are active
    there); everything is restored on exit.
    """
    notes: list[str] = []
    model.to(dev).eval()
    with contextlib.ExitStack() as stack:
        stack.enter_context(_layout(model, channels_last))
        stack.enter_context(torch.inference_mode())
        stack.enter_context(_cudnn_benchmark(dev.type))
        # autocast's weight cache must be off while a CUDA graph is captured
        stack.enter_context(precision_context(precision, dev.type, cache_enabled=not cuda_graphs))
        x = torch.randn(batch_size, _in_channels(model), int(input_hw[0]), int(input_hw[1]), device=dev)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        fn: Callable = model
        if compile:
            fn, how = _compile(model, dev.type, cuda_graphs)
            notes.append(how + (" (CUDA graphs by inductor)" if cuda_graphs else ""))
        if cuda_graphs and not compile:
            fn = _capture_graph(fn, x, warmup)
        for _ in range(warmup):
            fn(x)
        _sync(dev)
        yield fn, x, notes


def _timed_loop(fn: Callable, x: torch.Tensor, dev: torch.device, iters: int, min_time_s: float
                ) -> tuple[list[float], float]:
    """Per-forward seconds and the total span, running until both ``iters`` and ``min_time_s``."""
    iters = max(1, iters)
    if dev.type == "cuda":
        starts: list[torch.cuda.Event] = []
        ends: list[torch.cuda.Event] = []
        _sync(dev)
        t0 = time.perf_counter()
        while len(starts) < iters or time.perf_counter() - t0 < min_time_s:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn(x)
            end.record()
            starts.append(start)
            ends.append(end)
        _sync(dev)
        per = [s.elapsed_time(e) / 1e3 for s, e in zip(starts, ends)]
        return per, starts[0].elapsed_time(ends[-1]) / 1e3
    per = []
    t0 = time.perf_counter()
    while len(per) < iters or time.perf_counter() - t0 < min_time_s:
        t = time.perf_counter()
        fn(x)
        per.append(time.perf_counter() - t)
    return per, time.perf_counter() - t0


# -- data loading ------------------------------------------------------------------------------------------
def synthetic_image(input_hw: Sequence[int], seed: int = 0) -> np.ndarray:
    """An HxWx3 uint8 image with smooth gradients, flat regions and mild noise (compresses like a photo)."""
    h, w = int(input_hw[0]), int(input_hw[1])
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([xx / max(w - 1, 1) * 255, yy / max(h - 1, 1) * 255, (xx + yy) / max(h + w - 2, 1) * 255], -1)
    for _ in range(8):
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        y1, x1 = min(h, y0 + rng.integers(h // 8 + 1, h // 2 + 2)), min(w, x0 + rng.integers(w // 8 + 1, w // 2 + 2))
        img[y0:y1, x0:x1] = rng.integers(0, 256, 3)
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_images(folder: str | Path, input_hw: Sequence[int], count: int = 16, image_format: str = "png") -> list[Path]:
    """Write ``count`` synthetic images of ``input_hw`` as PNG or JPEG (quality 90); return the paths."""
    from PIL import Image

    fmt = image_format.lower()
    if fmt not in ("png", "jpeg", "jpg"):
        raise ValueError(f"image_format must be png or jpeg, not {image_format!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        p = folder / f"img_{i:04d}.{'png' if fmt == 'png' else 'jpg'}"
        im = Image.fromarray(synthetic_image(input_hw, seed=i))
        im.save(p, **({"quality": 90} if fmt != "png" else {}))
        paths.append(p)
    return paths


class ImageFileDataset(torch.utils.data.Dataset):
    """Decode + normalise image files, cycling over them for ``length`` items.

    Each item: read the file, decode it to RGB uint8 (PIL or OpenCV), convert to a float
    CxHxW tensor in [0, 1] and normalise with the ImageNet mean and std -- what an
    evaluation pipeline does before the network. Files are read from the page cache after
    the first pass, so disk speed is not part of the figure.
    """

    def __init__(self, paths: Sequence[str | Path], length: int, decoder: str = "pil"):
        if not paths:
            raise ValueError("ImageFileDataset needs at least one file")
        if decoder not in ("pil", "cv2"):
            raise ValueError(f"decoder must be pil or cv2, not {decoder!r}")
        self.paths = [str(p) for p in paths]
        self.length = int(length)
        self.decoder = decoder
        self.mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> torch.Tensor:
        path = self.paths[index % len(self.paths)]
        if self.decoder == "cv2":
            import cv2

            bgr = cv2.imread(path, cv2.IMREAD_COLOR)
            if bgr is None:
                raise OSError(f"cannot decode {path}")
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        else:
            from PIL import Image

            with Image.open(path) as im:
                rgb = np.array(im.convert("RGB"))  # a writable copy
        x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div_(255)
        return (x - self.mean) / self.std


def _make_loader(paths: Sequence[Path], batch_size: int, num_workers: int, pin: bool, decoder: str,
                 max_batches: int = 10**7) -> torch.utils.data.DataLoader:
    ds = ImageFileDataset(paths, length=batch_size * max_batches, decoder=decoder)
    return torch.utils.data.DataLoader(
        ds, batch_size=batch_size, shuffle=False, num_workers=num_workers, pin_memory=pin, drop_last=True,
    )


def _loader_rate(loader, dev: torch.device, channels_last: bool, iters: int, min_time_s: float,
                 fn: Callable | None = None) -> tuple[float, int]:
    """Images/s through the loader (and ``fn`` when given); the workers' start-up is not timed.

    Runs until both ``min(iters, 10)`` batches and ``min_time_s`` seconds are reached.
    """
    iters = max(1, min(iters, 10))
    it = iter(loader)
    try:
        for _ in range(max(2, loader.num_workers)):  # every worker has started and produced a batch
            xb = next(it).to(dev, non_blocking=True)
            if fn is not None:
                fn(xb.contiguous(memory_format=torch.channels_last) if channels_last else xb)
        _sync(dev)
        n_img = n_batches = 0
        t0 = time.perf_counter()
        while n_batches < iters or time.perf_counter() - t0 < min_time_s:
            xb = next(it).to(dev, non_blocking=True)
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            if fn is not None:
                fn(xb)
            n_img += xb.shape[0]
            n_batches += 1
        _sync(dev)
        return n_img / (time.perf_counter() - t0), n_batches
    finally:
        del it  # shuts the workers down


# -- one measurement -----------------------------------------------------------------------------------------
def _measure(model, input_hw, batch_size, device, precision, channels_last, compile, cuda_graphs,
             warmup, iters, min_time_s, flops_per_image, peak_tflops, e2e: dict | None) -> dict[str, Any]:
    dev = _dev(device)
    warmup, iters, min_time_s = _defaults(dev, warmup, iters, min_time_s)
    rec = _base_record(model, dev, input_hw, batch_size, precision, channels_last, compile, cuda_graphs)
    reason = unsupported_reason(dev, precision, cuda_graphs)
    if reason:
        rec.update(status="unsupported", note=reason)
        return _finish(rec)
    if flops_per_image is None:
        try:
            flops_per_image = count_flops(model, input_hw, dev)
        except Exception as exc:  # noqa: BLE001 -- a counting failure must not stop timing
            _add_note(rec, f"FLOPs not counted ({_first_line(exc)})")
    rec["gflops_per_image"] = flops_per_image / 1e9 if flops_per_image else None
    if peak_tflops is not None:
        rec["peak_tflops"] = float(peak_tflops)
    elif dev.type == "cuda":
        rec["peak_tflops"] = gpu_peaks.peak_tflops(torch.cuda.get_device_name(dev), precision)
        if rec["peak_tflops"] is None:
            _add_note(rec, "peak TFLOP/s unknown for this GPU (give --peak-tflops)")

    oom_msg = fail_msg = None
    try:
        if dev.type == "cuda":
            _sync(dev)
            torch.cuda.reset_peak_memory_stats(dev)
        cpu_mem = _CpuPeakRss().start() if dev.type == "cpu" else None
        with _forward_session(model, input_hw, batch_size, dev, precision, channels_last, compile,
                              cuda_graphs, warmup) as (fn, x, notes):
            for n in notes:
                _add_note(rec, n)
            per, total = _timed_loop(fn, x, dev, iters, min_time_s)
            if dev.type == "cuda":
                rec["peak_mem_mib"] = torch.cuda.max_memory_allocated(dev) / 2**20
            else:
                rec["peak_mem_mib"] = cpu_mem.peak_mib()
            if e2e is not None:
                rec["num_workers"] = e2e["num_workers"]
                e2e_msg = None
                try:
                    loader = _make_loader(e2e["paths"], batch_size, e2e["num_workers"], dev.type == "cuda",
                                          e2e.get("decoder", "pil"))
                    rec["e2e_images_per_s"], _ = _loader_rate(loader, dev, channels_last, iters, min_time_s, fn)
                    rec["loader_images_per_s"], _ = _loader_rate(loader, dev, channels_last, iters, min_time_s)
                    del loader
                except Exception as exc:  # noqa: BLE001 -- e.g. a worker killed (shared memory full)
                    if is_oom(exc):
                        raise
                    e2e_msg = _first_line(exc)
                if e2e_msg is not None:  # the model-only figures stand; say why e2e is missing
                    rec["e2e_images_per_s"] = rec["loader_images_per_s"] = None
                    _add_note(rec, f"end-to-end not measured ({e2e_msg})")
    except Exception as exc:  # noqa: BLE001
        if is_oom(exc):
            oom_msg = _first_line(exc)
        elif compile or cuda_graphs:
            fail_msg = f"{rec['mode']} failed: {_first_line(exc)}"
        else:
            raise
    # the exception (and the frames holding the tensors) is gone here: give the memory back
    if oom_msg is not None:
        free_memory(dev)
        rec.update(status="oom")
        _add_note(rec, f"batch {batch_size} does not fit ({oom_msg})")
        return _finish(rec)
    if fail_msg is not None:
        free_memory(dev)
        rec.update(status="failed")
        _add_note(rec, fail_msg)
        return _finish(rec)

    timing = Timing(per)
    rec["iters"] = len(per)
    rec["time_s"] = total
    rec["images_per_s"] = batch_size * len(per) / total
    rec["latency_p50_ms"] = timing.median * 1e3
    rec["latency_p95_ms"] = timing.percentile(95) * 1e3
    if flops_per_image:
        rec["achieved_tflops"] = flops_per_image * rec["images_per_s"] / 1e12
        if rec.get("peak_tflops"):
            rec["fraction_of_peak"] = rec["achieved_tflops"] / rec["peak_tflops"]
    if e2e is not None and rec.get("loader_images_per_s"):
        rec["limited_by"] = "data loading" if rec["loader_images_per_s"] < rec["images_per_s"] else "model"
    return _finish(rec)


def _finish(rec: dict[str, Any]) -> dict[str, Any]:
    for key in COLUMNS:
        rec.setdefault(key, None)
    return rec


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
    """:func:`measure_model`, halving the batch while it runs out of memory; the note says so.

    ``requested_batch_size`` keeps the batch asked for, ``batch_size`` the one measured.
    """
    b, failed = int(batch_size), []
    while True:
        rec = _measure(model, input_hw, b, device, precision, channels_last, compile, cuda_graphs,
                       warmup, iters, min_time_s, flops_per_image, peak_tflops, e2e)
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


# -- largest batch ---------------------------------------------------------------------------------------
@dataclass
class BatchProbe:
    largest: int  # largest batch that ran (0: not even 1)
    oom_at: int | None  # first batch that ran out of memory; None when the cap was reached
    cap: int
    note: str


def _fits(model: nn.Module, input_hw, batch_size: int, dev: torch.device, precision: str, channels_last: bool
          ) -> str | None:
    """None when two forwards of ``batch_size`` run; else the out-of-memory message."""
    msg = None
    try:
        with _forward_session(model, input_hw, batch_size, dev, precision, channels_last, False, False, 2):
            pass
    except Exception as exc:  # noqa: BLE001
        if not is_oom(exc):
            raise
        msg = _first_line(exc)
    if msg is not None:
        free_memory(dev)  # outside the except block: the traceback's tensors are gone
    return msg


def probe_largest_batch(model: nn.Module, input_hw: Sequence[int], device: str = "cpu", precision: str = "fp32",
                        channels_last: bool = False, cap: int | None = None) -> BatchProbe:
    """Double the batch from 1 until it runs out of memory or passes ``cap`` (256 on CUDA, 16 on CPU)."""
    dev = _dev(device)
    cap = int(cap or BATCH_CAP[dev.type])
    largest, b = 0, 1
    while b <= cap:
        msg = _fits(model, input_hw, b, dev, precision, channels_last)
        if msg is not None:
            note = (f"largest batch that fits: {largest} (batch {b} ran out of memory)" if largest
                    else f"batch 1 does not fit ({msg})")
            return BatchProbe(largest, b, cap, note)
        largest, b = b, b * 2
    return BatchProbe(largest, None, cap, f"largest batch tried: {largest} (cap {cap} reached, no OOM)")


def largest_batch(model: nn.Module, input_hw: Sequence[int], device: str = "cpu", precision: str = "fp32",
                  channels_last: bool = False, cap: int | None = None) -> int:
    """The largest power-of-two batch (<= cap) whose forward fits in memory; 0 when none does."""
    probe = probe_largest_batch(model, input_hw, device, precision, channels_last, cap)
    print(f"segbench speed: {probe.note}", file=sys.stderr)
    return probe.largest


# -- end to end --------------------------------------------------------------------------------------------
def end_to_end_throughput(
    model: nn.Module,
    input_hw: Sequence[int],
    batch_size: int = 1,
    device: str = "cpu",
    precision: str = "fp32",
    channels_last: bool = False,
    num_workers: int = 2,
    *,
    image_dir: str | Path | None = None,
    num_images: int = 16,
    image_format: str = "png",
    decoder: str = "pil",
    compile: bool = False,
    cuda_graphs: bool = False,
    warmup: int | None = None,
    iters: int | None = None,
    min_time_s: float | None = None,
    flops_per_image: int | None = None,
    peak_tflops: float | None = None,
) -> dict[str, Any]:
    """Model-only images/s next to end-to-end images/s (decode + normalise in a DataLoader + forward).

    ``num_images`` synthetic images of ``input_hw`` are written as PNG/JPEG to a temporary
    folder (or ``image_dir``), decoded with PIL or OpenCV by ``num_workers`` DataLoader
    worker processes (0: in this process) and fed to the model. The record has
    ``images_per_s`` (model only), ``e2e_images_per_s``, ``loader_images_per_s`` (decode,
    normalise, collate, copy to the device; no model) and ``limited_by``.
    """
    with contextlib.ExitStack() as stack:
        folder = Path(image_dir) if image_dir is not None else Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="segbench-speed-")))
        paths = write_images(folder, input_hw, num_images, image_format)
        e2e = {"paths": paths, "num_workers": int(num_workers), "decoder": decoder}
        rec = _measure(model, input_hw, batch_size, device, precision, channels_last, compile, cuda_graphs,
                       warmup, iters, min_time_s, flops_per_image, peak_tflops, e2e)
    rec["image_format"] = image_format
    rec["decoder"] = decoder
    return rec


# -- the table --------------------------------------------------------------------------------------------
def _finite(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _as_list(value, kind=str) -> list:
    if isinstance(value, str):
        return [kind(v.strip()) for v in value.split(",") if v.strip()]
    return [kind(v) for v in value]


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
) -> pd.DataFrame:
    """One row per (batch size, precision) with the chosen layout and mode, plus the baseline.

    ``model_name``: a name for :func:`deep.models.create_model` (built with ``width`` and
    ``num_classes``, random weights seeded with ``seed``) or an ``nn.Module``.
    ``batch_sizes``: integers, or ``"auto"`` = batch 1 and the largest power of two that
    fits (per precision; cap 256 on CUDA, 16 on CPU). ``channels_last`` / ``compile`` /
    ``cuda_graphs`` apply to every row except the baseline, which is always measured: eager,
    fp32 (TF32 off), batch 1, NCHW -- what most people write; ``speedup_vs_eager_fp32``
    divides each row's images/s by the baseline's. ``end_to_end`` adds decode +
    preprocessing through a DataLoader with ``num_workers`` processes (default
    ``min(8, cpu count)``) next to the model-only figure.
    """
    dev = _dev(device)
    precisions = _as_list(precisions)
    for p in precisions:
        if p not in PRECISIONS:
            raise ValueError(f"unknown precision {p!r}; known: {', '.join(PRECISIONS)}")
    auto = isinstance(batch_sizes, str) and batch_sizes.strip().lower() == "auto"
    batches = [] if auto else _as_list(batch_sizes, int)
    if not auto and (not batches or min(batches) < 1):
        raise ValueError(f"batch sizes must be positive integers or 'auto', got {batch_sizes!r}")

    if isinstance(model_name, nn.Module):
        model = model_name
    else:
        from deep.models import create_model

        torch.manual_seed(seed)
        model = create_model(model_name, num_classes, width=width)
    model.to(dev).eval()
    name = getattr(model, "name", "") or (model_name if isinstance(model_name, str) else type(model).__name__)
    model_width = getattr(model, "width", width)
    flops_msg = None
    try:
        flops = count_flops(model, input_hw, dev)
    except Exception as exc:  # noqa: BLE001
        if not is_oom(exc):
            raise
        flops, flops_msg = None, _first_line(exc)
    if flops_msg is not None:  # each row retries and notes it
        free_memory(dev)
    if num_workers is None:
        num_workers = min(8, os.cpu_count() or 1)

    base = ("fp32", 1, False, False, False)  # precision, batch, channels_last, compile, cuda_graphs
    settings: list[tuple[str, int, bool, bool, bool, str]] = [(*base, "")]
    for p in precisions:
        if auto:
            if unsupported_reason(dev, p, cuda_graphs):
                bs, note = [1], ""
            else:
                probe = probe_largest_batch(model, input_hw, dev, p, channels_last)
                bs, note = sorted({1, max(1, probe.largest)}), "auto: " + probe.note
        else:
            bs, note = batches, ""
        for b in bs:
            s = (p, b, channels_last, compile, cuda_graphs)
            if s != base:
                settings.append((*s, note if b != 1 or len(bs) == 1 else ""))

    rows = []
    with contextlib.ExitStack() as stack:
        e2e = None
        if end_to_end:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="segbench-speed-"))
            paths = write_images(folder, input_hw, 16, image_format)
            e2e = {"paths": paths, "num_workers": int(num_workers), "decoder": decoder}
        for p, b, cl, comp, graphs, note in settings:
            rec = measure_with_backoff(model, input_hw, b, dev, p, cl, compile=comp, cuda_graphs=graphs,
                                       warmup=warmup, iters=iters, min_time_s=min_time_s, flops_per_image=flops,
                                       peak_tflops=peak_tflops, e2e=e2e)
            if note:
                _add_note(rec, note)
            rec.update(model=name, width=model_width, num_classes=getattr(model, "num_classes", num_classes))
            rec["baseline"] = (p, b, cl, comp, graphs) == base
            rows.append(rec)
    df = pd.DataFrame(rows)
    base_rate = _finite(df.loc[df["baseline"], "images_per_s"].iloc[0])
    df["speedup_vs_eager_fp32"] = [
        _finite(r) / base_rate if base_rate and _finite(r) is not None else None for r in df["images_per_s"]
    ]
    cols = [c for c in COLUMNS if c in df.columns] + [c for c in df.columns if c not in COLUMNS]
    return df[cols]


# -- classical methods ---------------------------------------------------------------------------------------
_WORKER_METHOD = None


def _resolve_method(method_or_factory):
    from bench.methods import Method

    if isinstance(method_or_factory, Method) or (
        not isinstance(method_or_factory, type) and hasattr(method_or_factory, "predict")
    ):
        return method_or_factory
    if callable(method_or_factory):
        return method_or_factory()
    raise TypeError("classical_speed needs a fitted method (with .predict) or a factory returning one")


def _pool_init(method_or_factory) -> None:
    global _WORKER_METHOD
    torch.set_num_threads(1)  # N processes x 1 thread, no oversubscription
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:
        pass
    _WORKER_METHOD = _resolve_method(method_or_factory)


@contextlib.contextmanager
def _thread_limit(threads: int | None) -> Iterator[None]:
    """At most ``threads`` threads in BLAS/OpenMP (threadpoolctl), OpenCV and torch; None: unchanged."""
    if threads is None:
        yield
        return
    import cv2
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


def _pool_predict(image: np.ndarray) -> float:
    t = time.perf_counter()
    _WORKER_METHOD.predict(image)
    return time.perf_counter() - t


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
    process, every image is timed by itself; with N > 1 processes each worker is limited to
    one torch/OpenCV thread, the pool is started and warmed up untimed, and images/s is the
    whole list over the wall time of ``pool.map`` (pickling the images included).
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
    processes = list(processes or (1, os.cpu_count() or 1))
    local = _resolve_method(method)
    name = getattr(local, "name", "") or type(local).__name__
    hw = images[0].shape[:2]
    v = versions()
    common = {
        "method": name, "kind": getattr(local, "kind", "classical"), "input_hw": _hw_text(hw),
        "num_images": len(images), "device": "cpu", "device_name": device_name("cpu"),
        "python": v.get("python"), "numpy": v.get("numpy"), "opencv": v.get("opencv-python-headless"),
        "scikit-image": v.get("scikit-image"), "torch": v.get("torch"), "git_commit": git_commit(),
    }
    rows = []
    # spawn, not fork: forking after torch/OpenMP started their threads deadlocks the workers
    ctx = multiprocessing.get_context(mp_context or "spawn")
    for n in processes:
        n = int(n)
        if n < 1:
            raise ValueError(f"process counts must be >= 1, got {n}")
        stage_cols: dict[str, float] = {}
        if n == 1:
            with _thread_limit(threads):
                for im in images[:warmup]:
                    local.predict(im)
                staged = hasattr(local, "predict_with_stages")
                t0 = time.perf_counter()
                per, stages = [], []
                for im in images:
                    t = time.perf_counter()
                    if staged:
                        stages.append(local.predict_with_stages(im)[1])
                    else:
                        local.predict(im)
                    per.append(time.perf_counter() - t)
                wall = time.perf_counter() - t0
            for name in dict.fromkeys(k for st in stages for k in st if k != "total"):
                stage_cols[f"{name.replace(' ', '_')}_ms_p50"] = float(np.median([st.get(name, 0.0) for st in stages])) * 1e3
        else:
            with ctx.Pool(n, initializer=_pool_init, initargs=(method,)) as pool:
                # untimed: the workers start, unpickle the method and predict once each
                pool.map(_pool_predict, [images[i % len(images)] for i in range(n * max(1, warmup))], chunksize=1)
                chunk = max(1, len(images) // (4 * n))
                t0 = time.perf_counter()
                per = pool.map(_pool_predict, images, chunksize=chunk)
                wall = time.perf_counter() - t0
        timing = Timing(list(per))
        rows.append({
            **common, "processes": n, "threads": (threads or "default") if n == 1 else 1,
            "images_per_s": len(images) / wall,
            "ms_per_image_p50": timing.median * 1e3, "ms_per_image_p95": timing.percentile(95) * 1e3,
            **stage_cols, "wall_s": wall,
        })
    return {**common, "rows": rows}


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
) -> dict[str, Any]:
    """``bench speed --method NAME``: fit a method on a dataset's train split, then time it.

    The timed images are the first ``num_images`` of the evaluation split (val, else
    test), resized to ``input_hw`` (None: as stored), so the figure is per image at that
    size. The rows of :func:`classical_speed` gain the dataset and the fit time.
    """
    import cv2

    from bench.datasets import get_dataset
    from bench.methods import create_method

    data = get_dataset(dataset, data_root)
    names = data.split_names()
    evaluation = data.split("val" if "val" in names else "test")
    method = create_method(name, settings or {}, progress=progress)
    t0 = time.perf_counter()
    method.fit(data.split("train"))
    fit_s = time.perf_counter() - t0
    images = []
    for i in range(min(num_images, len(evaluation))):
        im = evaluation[i].image
        if input_hw is not None and tuple(im.shape[:2]) != tuple(input_hw):
            im = cv2.resize(im, (int(input_hw[1]), int(input_hw[0])), interpolation=cv2.INTER_AREA)
        images.append(im)
    res = classical_speed(method, images, processes, threads=threads)
    for row in res["rows"]:
        row.update({"method": name, "dataset": dataset, "fit_s": fit_s})
    res.update({"method": name, "dataset": dataset, "fit_s": fit_s})
    return res


# -- output ----------------------------------------------------------------------------------------------------
_MD_COLUMNS = [
    "model", "width", "input_hw", "batch_size", "precision", "layout", "mode", "status", "images_per_s",
    "latency_p50_ms", "latency_p95_ms", "speedup_vs_eager_fp32", "e2e_images_per_s", "loader_images_per_s",
    "limited_by", "peak_mem_mib", "achieved_tflops", "fraction_of_peak", "note",
    # classical_speed rows
    "method", "processes", "threads", "num_images", "ms_per_image_p50", "ms_per_image_p95",
    "edge_map_ms_p50", "partition_ms_p50", "features_ms_p50", "classifier_ms_p50", "crf_inference_ms_p50",
]
_MD_HEADER = ["dataset", "device_name", "torch", "torchvision", "cuda", "cudnn", "driver", "python", "git_commit",
              "gflops_per_image", "peak_tflops", "num_workers"]


def _fmt_num(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else ""
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        a = abs(float(v))
        if a == 0:
            return "0"
        if a >= 100:
            return f"{v:.0f}"
        if a >= 10:
            return f"{v:.1f}"
        if a >= 0.01:
            return f"{v:.3g}"
        return f"{v:.2e}"
    return str(v)


def _json_value(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(float(v)) else None
    return v


def format_speed(df: pd.DataFrame | dict, fmt: str = "md") -> str:
    """The table as ``md`` (settings shared by every row in a header), ``csv`` or ``json``."""
    if isinstance(df, dict):  # a classical_speed result or one record
        df = pd.DataFrame(df["rows"] if "rows" in df else [df])
    fmt = fmt.lower()
    if fmt == "csv":
        return df.to_csv(index=False)
    if fmt == "json":
        records = [{k: _json_value(v) for k, v in row.items()} for row in df.to_dict(orient="records")]
        return json.dumps(records, indent=2)
    if fmt not in ("md", "markdown"):
        raise ValueError(f"format must be md, csv or json, not {fmt!r}")
    lines = []
    for key in _MD_HEADER:
        if key in df.columns:
            vals = [v for v in df[key].tolist() if v is not None and not (isinstance(v, float) and math.isnan(v))]
            uniq = list(dict.fromkeys(_fmt_num(v) for v in vals))
            if uniq:
                lines.append(f"- {key}: {', '.join(uniq)}")
    cols = [c for c in _MD_COLUMNS if c in df.columns and not df[c].isna().all()]
    if "note" in cols and not any(df["note"].fillna("").astype(str).str.strip()):
        cols.remove("note")
    table = [[_fmt_num(v) for v in row] for row in df[cols].itertuples(index=False)]
    out = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    out += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in table]
    return "\n".join(lines + ([""] if lines else []) + out) + "\n"
