"""Forward passes outside training: logits of a normalised batch at any size, and label maps
of RGB images, made the same way for validation and for a fitted method's predictions."""

from __future__ import annotations

import contextlib

from typing import Callable, ContextManager, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.torch_helpers import AMP_TO_PRECISION, precision_context
from deep.engine import transforms as T


def min_input_size(model: nn.Module) -> int:
    """The smallest height/width the network accepts (1 when it does not say)."""
    return int(getattr(model, "min_input_size", 1) or 1)


def amp_context(amp: str, device: torch.device) -> ContextManager[None]:
    """Run a block in the precision of the trainer's ``amp`` setting ("none", "bf16", "fp16").

    "none" leaves every flag as PyTorch sets it (on CUDA its default TF32 convolutions), as
    the trainer always has; ``bench speed`` with ``fp32`` is the one that forces strict fp32."""
    if amp == "none":
        return contextlib.nullcontext()
    return precision_context(AMP_TO_PRECISION[amp], device.type)


def predict_logits(
    net: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    out_size: Sequence[int] | None = None,
    *,
    amp: str = "none",
    channels_last: bool = False,
    min_size: int = 1,
) -> torch.Tensor:
    """Float32 logits N x K x H x W of a normalised batch (on the model's device).

    Inputs smaller than ``min_size`` are zero-padded and the logits cropped back; with
    ``out_size`` the logits are resized bilinearly to it (the label's original size).
    """
    h, w = images.shape[-2:]
    x = T.pad_to(images, max(h, min_size), max(w, min_size), 0.0)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with amp_context(amp, x.device):
        logits = net(x)
    logits = logits[..., :h, :w].float()
    if out_size is not None and tuple(out_size) != (h, w):
        logits = F.interpolate(logits, size=tuple(int(s) for s in out_size), mode="bilinear", align_corners=False)
    return logits


def predict_labels(model: nn.Module, image: np.ndarray, device: torch.device, *, scale: float = 1.0,
                   amp: str = "none", channels_last: bool = False, flip: bool = False,
                   scales: Sequence[float] = (1.0,)) -> np.ndarray:
    """HxW int32 label map of one RGB uint8 image: resize by ``scale``, normalise, forward,
    bilinear resize of the logits to the image's size, argmax (as validation does).

    Test-time augmentation: with ``flip`` the mirrored image is predicted too (and its scores
    mirrored back); ``scales`` are factors of ``scale`` to predict at. With more than one pass
    the class probabilities (softmax at the image's size) are averaged before the argmax, as
    MMSegmentation's ``aug_test`` does; one pass is the plain prediction."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got {image.dtype} {image.shape}")
    if not scales or any(not m > 0 for m in scales):
        raise ValueError(f"test-time scales must be a non-empty list of factors > 0, got {list(scales)}")
    h, w = image.shape[:2]
    passes = [(m, mirrored) for m in scales for mirrored in ((False, True) if flip else (False,))]
    with torch.inference_mode():
        pixels = torch.from_numpy(np.stack([image])).to(device).permute(0, 3, 1, 2)
        total = None
        for m, mirrored in passes:
            x = T.normalize_images(pixels, scale * m)
            if mirrored:
                x = x.flip(-1)
            logits = predict_logits(model, x, (h, w), amp=amp, channels_last=channels_last,
                                    min_size=min_input_size(model))
            if mirrored:
                logits = logits.flip(-1)
            scores = logits if len(passes) == 1 else logits.softmax(1)
            total = scores if total is None else total.add_(scores)
        assert total is not None
        return total.argmax(1)[0].to(torch.int32).cpu().numpy()
