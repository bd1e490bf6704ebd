"""Torch helpers shared by the trainer (deep/) and the speed measurements (bench/speed/):
normalisation constants, the one precision/autocast context, device sync and FLOP counting.

They know no network by name; anything that is an ``nn.Module`` works.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Iterator, Sequence

import torch
from torch import nn

#: ImageNet statistics; every network sees images normalised with them
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: precisions a forward pass can run in: fp32; tf32 (CUDA tensor cores); bf16/fp16 autocast
PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
#: the trainer's spelling of the same choice (``amp`` setting) -> precision
AMP_TO_PRECISION = {"none": "fp32", "bf16": "bf16", "fp16": "fp16"}


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a precision (None: no autocast)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


class SlowPrecisionWarning(UserWarning):
    """A precision that runs on this device, but through slow fallback kernels."""


def cpu_has_fast_bf16() -> bool:
    """Whether oneDNN has bf16 kernels for this CPU (AVX-512 BW/VL/DQ or newer; AMX and
    AVX512_BF16 make them fast). Without them bf16 autocast runs on reference kernels, about
    20x slower than float32 (a training step on the AVX2 AMD EPYC, docs/BENCHMARKS.md)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch built without oneDNN
        return False


def check_precision(precision: str, device: torch.device | str) -> None:
    """A clear ValueError when ``device`` cannot run ``precision`` (autocast), and a
    :class:`SlowPrecisionWarning` when it can but slowly (bf16 on a CPU without oneDNN bf16
    kernels)."""
    device = torch.device(device)
    if autocast_dtype(precision) is None:
        return
    if not torch.amp.autocast_mode.is_autocast_available(device.type):
        raise ValueError(f"{precision}: autocast is not available on device '{device.type}'")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("bf16: this GPU does not support bfloat16; use fp16")
    if precision == "bf16" and device.type == "cpu" and not cpu_has_fast_bf16():
        warnings.warn(f"bf16 on this CPU (instruction set {torch.backends.cpu.get_cpu_capability()}): oneDNN has no "
                      "bf16 kernels for it, so autocast runs on slow fallbacks (a training step about 20x "
                      "slower than float32 on an AVX2 AMD EPYC); use amp: none here", SlowPrecisionWarning)
        # issued here (stacklevel 1): Python's default filter shows it once, not once per caller


@contextlib.contextmanager
def precision_context(precision: str, device_type: str, cache_enabled: bool = True) -> Iterator[None]:
    """Run the block in ``precision``: TF32 on only for ``tf32`` (CUDA), autocast for bf16 and
    fp16, plain fp32 otherwise; global flags are restored on exit."""
    dtype = autocast_dtype(precision)
    saved = None
    if device_type == "cuda":
        saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision == "tf32"
    try:
        if dtype is not None:
            with torch.autocast(device_type=device_type, dtype=dtype, cache_enabled=cache_enabled):
                yield
        else:
            yield
    finally:
        if saved is not None:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def sync(device: torch.device | str) -> None:
    """Wait for the device's queued work (CUDA), so that a timer measures the work itself."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def in_channels(model: nn.Module) -> int:
    """Input channels of a network: its ``in_channels`` attribute, else its first convolution's."""
    value = getattr(model, "in_channels", None)
    if value:
        return int(value)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return int(m.in_channels)
    return 3


def count_flops(model: nn.Module, input_hw: Sequence[int], in_ch: int | None = None) -> int:
    """FLOPs of one forward pass of one image (batch 1) by ``FlopCounterMode``, on the device
    the model's parameters are on (built under ``torch.device("meta")`` it costs no memory and
    no compute).

    Counts convolutions, transposed convolutions and matrix products; one multiply-add is two
    FLOPs. Biases, normalisation, activations, pooling and interpolation are not counted.
    """
    from torch.utils.flop_counter import FlopCounterMode

    in_ch = in_channels(model) if in_ch is None else int(in_ch)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    x = torch.zeros(1, in_ch, int(input_hw[0]), int(input_hw[1]), device=device)
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())
