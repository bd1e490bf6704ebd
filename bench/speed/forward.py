"""One network forward under every speed setting: device, precision, layout, compile, CUDA graphs."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

from bench.speed.core import warm_up
from bench.torch_helpers import PRECISIONS, in_channels, precision_context, sync


def resolve_device(device: str | torch.device) -> torch.device:
    """``cpu`` or ``cuda[:N]`` as a torch device with its index; a clear error for anything else."""
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {device}: CUDA is not available on this machine")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
    elif dev.type != "cpu":
        raise ValueError(f"device must be cpu or cuda[:N], not {device!r}")
    return dev


def mode_name(compile: bool, cuda_graphs: bool) -> str:
    """``eager``, ``compile``, ``cuda-graphs`` or ``compile+cuda-graphs``."""
    parts = (["compile"] if compile else []) + (["cuda-graphs"] if cuda_graphs else [])
    return "+".join(parts) or "eager"


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
    if precision == "bf16" and not torch.cuda.is_bf16_supported(including_emulation=False):
        return f"bf16 unsupported on {torch.cuda.get_device_name(dev)}"
    return None


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
def forward_session(model: nn.Module, input_hw: Sequence[int], batch_size: int, dev: torch.device,
                    precision: str, channels_last: bool, compile: bool, cuda_graphs: bool, warmup: int
                    ) -> Iterator[tuple[Callable, torch.Tensor, list[str]]]:
    """Yield ``(fn, x, notes)``: ``fn(x)`` is one forward under every setting, already warmed up.

    The model runs in eval mode under ``torch.inference_mode()``, with cuDNN benchmark on
    CUDA and :func:`bench.torch_helpers.precision_context`; the caller's forwards must run
    inside the ``with`` block. Everything (layout, flags) is restored on exit.
    """
    notes: list[str] = []
    model.to(dev).eval()
    with contextlib.ExitStack() as stack:
        stack.enter_context(_layout(model, channels_last))
        stack.enter_context(torch.inference_mode())
        stack.enter_context(_cudnn_benchmark(dev.type))
        # autocast's weight cache must be off while a CUDA graph is captured
        stack.enter_context(precision_context(precision, dev.type, cache_enabled=not cuda_graphs))
        x = torch.randn(batch_size, in_channels(model), int(input_hw[0]), int(input_hw[1]), device=dev)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        fn: Callable = model
        if compile:
            fn, how = _compile(model, dev.type, cuda_graphs)
            notes.append(how + (" (CUDA graphs by inductor)" if cuda_graphs else ""))
        if cuda_graphs and not compile:
            fn = _capture_graph(fn, x, warmup)
        warm_up(fn, [x] * warmup, lambda: sync(dev))
        yield fn, x, notes
