"""Joint image/mask transforms for training and evaluating networks.

Everything goes through ``torchvision.transforms.v2`` with the image wrapped as a
``tv_tensors.Image`` and the label map as a ``tv_tensors.Mask``: geometric transforms
(resize, crop, flip) move both together, masks are always resized with nearest
neighbour, colour transforms and normalisation touch the image only.

The label map is kept as int64 with its ignore value (the dataset's ignore index, or
``LOSS_IGNORE`` = -100 when the dataset has none); padding added by crops or batching
gets that ignore value so that it counts neither in the loss nor in the metrics.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from bench.torch_helpers import IMAGENET_MEAN, IMAGENET_STD

#: ignore value of the loss when the dataset has no ignore index (PyTorch's default)
LOSS_IGNORE = -100


def loss_ignore_index(ignore_index: int | None) -> int:
    """The label value the loss and the metrics skip."""
    return LOSS_IGNORE if ignore_index is None else int(ignore_index)


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """Size of an image resized by ``scale`` (at least one pixel each way)."""
    if scale == 1.0:
        return height, width
    return max(1, round(height * scale)), max(1, round(width * scale))


def to_tv(image: np.ndarray, label: np.ndarray | None = None):
    """HxWx3 uint8 (and HxW labels) -> tv_tensors.Image CxHxW uint8 (and Mask int64)."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {image.shape}")
    image = np.ascontiguousarray(image)
    if not image.flags.writeable:  # e.g. a cached read-only array: torch wants memory it may write
        image = image.copy()
    img = tv_tensors.Image(torch.from_numpy(image).permute(2, 0, 1))
    if label is None:
        return img
    return img, tv_tensors.Mask(torch.from_numpy(np.asarray(label).astype(np.int64)))


class Scale(v2.Transform):
    """Resize image and mask by a fixed factor (the ``scale`` of small CPU variants)."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor = float(factor)

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if self.factor == 1.0 or not isinstance(inpt, (tv_tensors.Image, tv_tensors.Mask)):
            return inpt
        h, w = inpt.shape[-2:]
        return TF.resize(inpt, list(scaled_size(h, w, self.factor)), antialias=True)


class RandomScale(v2.Transform):
    """Resize image and mask by one random factor drawn uniformly from ``[low, high]``."""

    def __init__(self, low: float, high: float):
        super().__init__()
        if not 0 < low <= high:
            raise ValueError(f"scale range must satisfy 0 < low <= high, got ({low}, {high})")
        self.low, self.high = float(low), float(high)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        factor = self.low + (self.high - self.low) * torch.rand(()).item()
        return {"factor": factor}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not isinstance(inpt, (tv_tensors.Image, tv_tensors.Mask)):
            return inpt
        h, w = inpt.shape[-2:]
        return TF.resize(inpt, list(scaled_size(h, w, params["factor"])), antialias=True)


def _to_float_normalised() -> list[v2.Transform]:
    return [
        v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ]


def train_transform(*, scale: float = 1.0, **augment: Any) -> v2.Compose:
    """Training augmentation: the input scale, then :func:`augment_transform` (random scale,
    random crop padded with the ignore value, horizontal flip, colour jitter, normalise)."""
    return v2.Compose([Scale(scale), augment_transform(**augment)])


def augment_transform(
    *,
    scale_range: tuple[float, float] = (1.0, 1.0),
    crop: tuple[int, int] | None = None,
    hflip: bool = True,
    jitter: float = 0.0,
    ignore: int = LOSS_IGNORE,
) -> v2.Compose:
    """The random part of :func:`train_transform` (everything after the fixed input scale),
    applied to images already resized: the in-memory path resizes each image once."""
    steps: list[v2.Transform] = []
    if tuple(scale_range) != (1.0, 1.0):
        steps.append(RandomScale(*scale_range))
    if crop:
        steps.append(v2.RandomCrop(tuple(crop), pad_if_needed=True,
                                   fill={tv_tensors.Image: 0, tv_tensors.Mask: ignore}))
    if hflip:
        steps.append(v2.RandomHorizontalFlip(0.5))
    if jitter > 0:
        steps.append(v2.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter, hue=min(jitter, 0.5) / 4))
    steps += _to_float_normalised()
    return v2.Compose(steps)


def normalize_images(images: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Evaluation preprocessing of a uint8 batch N x 3 x H x W (on any device): to float
    in [0, 1], resize by ``scale`` (bilinear, antialiased), normalise with ImageNet
    statistics. The trainer's validation and :func:`deep.engine.inference.predict_labels` both
    use it, so that validation and test predictions are made the same way."""
    x = images.float().div_(255)
    if scale != 1.0:
        size = scaled_size(x.shape[-2], x.shape[-1], scale)
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


class EvalTransform:
    """Image-only evaluation transform (labels stay at their original size for scoring)."""

    def __init__(self, scale: float = 1.0):
        self.scale = float(scale)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return normalize_images(image.as_subclass(torch.Tensor)[None], self.scale)[0]


def eval_transform(scale: float = 1.0) -> EvalTransform:
    return EvalTransform(scale)


def pad_to(x: torch.Tensor, height: int, width: int, value: float) -> torch.Tensor:
    """Pad the last two dims of ``x`` at the bottom/right up to ``height`` x ``width``."""
    dh, dw = height - x.shape[-2], width - x.shape[-1]
    if dh <= 0 and dw <= 0:
        return x
    return F.pad(x, (0, max(dw, 0), 0, max(dh, 0)), value=value)


def pad_collate(batch: Sequence[tuple[torch.Tensor, torch.Tensor]], ignore: int, min_size: int = 1):
    """Stack (image, label) pairs of different sizes by padding to the largest (and to at
    least ``min_size``): images with 0 (the mean colour after normalisation), labels with
    the ignore value."""
    height = max(min_size, *(img.shape[-2] for img, _ in batch))
    width = max(min_size, *(img.shape[-1] for img, _ in batch))
    images = torch.stack([pad_to(img.as_subclass(torch.Tensor), height, width, 0.0) for img, _ in batch])
    labels = torch.stack([pad_to(lab.as_subclass(torch.Tensor), height, width, ignore) for _, lab in batch])
    return images, labels


class PadCollate:
    """Picklable collate function (DataLoader workers) around :func:`pad_collate`."""

    def __init__(self, ignore: int, min_size: int = 1):
        self.ignore = ignore
        self.min_size = min_size

    def __call__(self, batch):
        return pad_collate(batch, self.ignore, self.min_size)
