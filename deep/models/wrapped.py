"""Another library's segmentation network (torchvision, segmentation_models_pytorch) behind
the :class:`~deep.models.base.SegmentationNet` interface, and the reading of its weights files.

* :class:`WrappedNet` -- the library's module as ``self.net``; ``forward`` returns its
  logits ``N x K x H x W``. ``pad=True`` zero-pads the input to a multiple of
  ``output_stride`` (and crops the logits) like the networks of this package; ``pad=False``
  leaves the size to the library (torchvision resizes its logits to the input itself).
* These networks come in one size: ``width`` must be 1 (:func:`check_fixed_width`).
* :func:`read_state_file` reads a state_dict with ``torch.load(weights_only=True)`` (no code
  runs); :func:`check_same_keys` compares it with a module's, naming the first difference.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from deep.models.base import SegmentationNet
from deep.weights import WeightsUnavailable


class WrappedNet(SegmentationNet):
    """``net``'s logits for any input of at least ``output_stride`` pixels a side.

    ``pooling_bn``: the network has a BatchNorm after a global image pooling (the ASPP of
    DeepLabV3), which cannot train on one image at a time: batch size 1 in training is a
    ValueError saying so rather than PyTorch's "more than 1 value per channel"."""

    def __init__(self, net: nn.Module, num_classes: int, *, output_stride: int, pad: bool,
                 pooling_bn: bool) -> None:
        super().__init__(num_classes=num_classes, width=1.0)
        self.net = net
        self.output_stride = output_stride
        self.min_input_size = output_stride
        self.pad = pad
        self.pooling_bn = pooling_bn

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return out["out"] if isinstance(out, Mapping) else out  # torchvision: {"out": logits}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.pooling_bn and isinstance(x, torch.Tensor) and x.dim() == 4 and x.shape[0] < 2:
            raise ValueError(f"{self.name}: training needs batches of at least 2 images (BatchNorm after "
                             "the image pooling of its ASPP head); use batch_size >= 2")
        if self.pad:
            return super().forward(x)  # checks the input, pads, crops
        self.check_input(x)
        return self.forward_padded(x)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, output_stride={self.output_stride}, pad={self.pad}"


def check_fixed_width(name: str, width: float) -> None:
    """ValueError unless ``width == 1``: a library's network has no channel multiplier."""
    if width != 1:
        raise ValueError(f"{name}: comes in one size (it has no width setting): width must be 1, got {width:g}")


def read_state_file(path: str | os.PathLike, what: str) -> dict[str, torch.Tensor]:
    """The state_dict saved in ``path``; :class:`WeightsUnavailable` when it is missing,
    unreadable or not a state_dict. ``what`` says in the message what the file should be."""
    path = Path(path)
    if not path.is_file():
        raise WeightsUnavailable(f"pretrained weights file {path} does not exist (expected {what})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt, truncated, pickled code: torch raises many kinds
        raise WeightsUnavailable(f"cannot read weights file {path}: {type(e).__name__}: {e}") from e
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsUnavailable(f"{path} does not hold a state_dict of tensors (expected {what})")
    return dict(state)


def check_same_keys(expected: Mapping[str, Any], state: Mapping[str, torch.Tensor], where: str) -> None:
    """ValueError naming the first missing, unexpected or mis-shaped tensor of ``state``
    against ``expected`` (a module's state_dict)."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise ValueError(f"{where}: the weights do not fit this network (missing: {', '.join(missing[:3]) or '-'}; "
                         f"unexpected: {', '.join(unexpected[:3]) or '-'})")
    for k, v in expected.items():
        if tuple(v.shape) != tuple(state[k].shape):
            raise ValueError(f"{where}: tensor {k} has shape {tuple(state[k].shape)}, "
                             f"the network's has {tuple(v.shape)}")
