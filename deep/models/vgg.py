"""The VGG16 encoder that FCN, SegNet, DeconvNet and DilatedNet decode from.

:class:`VGGEncoder` holds the 13 convolutions of VGG16 (optionally with batch norm as in
VGG16-BN) grouped in the 5 stages between the max-pools, the pooling after them (ceil
mode, or keeping the indices for unpooling decoders) and, for the networks that keep
them, fc6/fc7 written as convolutions. :func:`deep.weights.load_vgg16_weights` maps a
torchvision state_dict onto it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from deep.models.base import ConvBNReLU, scaled

#: channels of the 13 convolutions of VGG16, per stage (stages end in a max-pool)
VGG16_STAGES: tuple[tuple[int, ...], ...] = (
    (64, 64),
    (128, 128),
    (256, 256, 256),
    (512, 512, 512),
    (512, 512, 512),
)
#: width of the fully connected layers fc6 and fc7 of VGG16
VGG16_FC = 4096


@dataclass(frozen=True)
class FCHead:
    """fc6 (a 7x7 conv, 4096 channels) and fc7 (1x1, 4096) of VGG16 as convolutions."""

    padding: int = 3
    dilation: int = 1
    dropout: float = 0.5


class VGGEncoder(nn.Module):
    """The VGG16 body: 5 stages of 3x3 convolutions, each but the last ``5 - pooled``
    followed by a 2x2 max-pool, then optionally fc6 and fc7.

    ``indices=True`` pools keeping the indices (for ``MaxUnpool2d`` decoders), otherwise the
    pooling is in ceil mode. ``dilations`` gives the dilation of each stage's convolutions.
    """

    def __init__(
        self,
        in_channels: int = 3,
        width: float = 1.0,
        *,
        batch_norm: bool = False,
        dilations: Sequence[int] = (1, 1, 1, 1, 1),
        indices: bool = False,
        pooled: int = 5,
        fc: FCHead | None = None,
    ) -> None:
        super().__init__()
        self.batch_norm = batch_norm
        self.width = float(width)
        self.indices = indices
        self.pooled = pooled
        self.stages = nn.ModuleList()
        c_in = in_channels
        for stage, dil in zip(VGG16_STAGES, dilations):
            layers = []
            for c in stage:
                c_out = scaled(c, width)
                layers.append(ConvBNReLU(c_in, c_out, 3, dilation=dil, batch_norm=batch_norm))
                c_in = c_out
            self.stages.append(nn.Sequential(*layers))
        self.pool = nn.MaxPool2d(2, 2, return_indices=True) if indices else nn.MaxPool2d(2, 2, ceil_mode=True)
        self.fc6 = self.fc7 = None
        if fc is not None:
            cf = scaled(VGG16_FC, width)
            # a matrix product on the CPU: oneDNN's 7x7 backward on a few cells is slow
            self.fc6 = ConvBNReLU(c_in, cf, 7, padding=fc.padding, dilation=fc.dilation,
                                  batch_norm=batch_norm, dropout=fc.dropout, matmul=True)
            self.fc7 = ConvBNReLU(cf, cf, 1, padding=0, batch_norm=batch_norm, dropout=fc.dropout)

    @property
    def stage_channels(self) -> list[int]:
        """Output channels of the five stages."""
        return [stage[-1].conv.out_channels for stage in self.stages]

    def convs(self) -> list[ConvBNReLU]:
        """The 13 convolution blocks in order (what torchvision's ``features`` holds)."""
        return [block for stage in self.stages for block in stage]

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, list]:
        """The 13 convolutions and the pools. Returns the last map and, per pooled stage,
        the pooled map (ceil mode) or ``(indices, size before pooling)`` (indices mode)."""
        skips: list = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i >= self.pooled:
                continue
            if self.indices:
                size = x.shape[-2:]
                x, idx = self.pool(x)
                skips.append((idx, size))
            else:
                x = self.pool(x)
                skips.append(x)
        return x, skips

    def fc(self, x: torch.Tensor) -> torch.Tensor:
        """fc6 then fc7."""
        return self.fc7(self.fc6(x))
