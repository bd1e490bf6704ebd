"""What every network shares: the SegmentationNet base class, the width rule, the checks of
the common settings, the init and the conv-BN-ReLU block.

* :class:`SegmentationNet` -- base class of every registered network. It checks the
  input, pads it at the bottom/right to a multiple of ``output_stride`` (zeros, i.e. the
  mean of a normalised image), runs the network and crops the logits back to the input's
  ``H x W``. Subclasses implement :meth:`SegmentationNet.forward_padded` only.
* :func:`scaled` -- the ``width`` rule (every channel count is multiplied by ``width``,
  rounded half up, at least 1).
* :class:`ConvBNReLU` -- conv, BatchNorm, ReLU, dropout (the conv a
  :class:`deep.models.matmul_conv.MatmulConv2d` where asked).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from deep.models.matmul_conv import MatmulConv2d


def scaled(channels: int, width: float) -> int:
    """``channels * width`` rounded half up, at least 1."""
    return max(1, int(math.floor(channels * width + 0.5)))


def check_settings(name: str, num_classes: int, width: float, in_channels: int = 3) -> None:
    """The settings every network shares; a clear ValueError when bad."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int):
        raise ValueError(f"{name}: num_classes must be an int, got {num_classes!r}")
    if num_classes < 2:
        raise ValueError(f"{name}: num_classes must be >= 2, got {num_classes}")
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not math.isfinite(width):
        raise ValueError(f"{name}: width must be a positive number, got {width!r}")
    if width <= 0:
        raise ValueError(f"{name}: width must be > 0, got {width}")
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"{name}: in_channels must be an int >= 1, got {in_channels!r}")


class SegmentationNet(nn.Module):
    """Base class: any input ``>= min_input_size`` in, logits ``N x K x H x W`` out.

    Attributes every network sets:

    * ``output_stride`` -- the factor between the input and the network's coarsest
      feature map. The input is zero-padded at the bottom/right to a multiple of it (so
      every pooling divides evenly and the unpooling indices line up) and the logits are
      cropped back, hence any ``H x W`` works.
    * ``min_input_size`` -- the smallest accepted height/width (a smaller input is a
      ValueError naming the network and the minimum).
    * ``paper_params`` / ``paper_num_classes`` -- the parameter count the paper reports,
      and for how many classes (``None`` when the paper reports none).
    """

    name: str = ""
    output_stride: int = 1
    min_input_size: int = 1
    paper_params: int | None = None
    paper_num_classes: int | None = None

    def __init__(self, *, num_classes: int, width: float, in_channels: int = 3) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.width = float(width)
        self.in_channels = in_channels

    # -- to implement ------------------------------------------------------------------
    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """Logits for an input whose H and W are multiples of ``output_stride``."""
        raise NotImplementedError

    # -- shared ------------------------------------------------------------------------
    def check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{self.name}: expected an N x C x H x W tensor, got {shape}")
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"{self.name}: expected {self.in_channels} input channels, got {x.shape[1]}"
            )
        h, w = int(x.shape[-2]), int(x.shape[-1])
        if min(h, w) < self.min_input_size:
            raise ValueError(
                f"{self.name}: input {h}x{w} is smaller than the minimum input size "
                f"{self.min_input_size}x{self.min_input_size} of this network"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        h, w = int(x.shape[-2]), int(x.shape[-1])
        s = self.output_stride
        ph, pw = (-h) % s, (-w) % s
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        out = self.forward_padded(x)
        return out[..., :h, :w]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, width={self.width:g}, "
            f"output_stride={self.output_stride}, min_input_size={self.min_input_size}"
        )


def kaiming_init(module: nn.Module) -> None:
    """He et al. normal init of conv weights (fan_in, ReLU), zero biases, BN at 1/0.

    This is the "Gaussian with std sqrt(2/N)" of the U-Net paper and the usual
    from-scratch init of the other networks.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class ConvBNReLU(nn.Module):
    """conv (same padding) -> optional BatchNorm -> optional ReLU -> optional dropout
    (``matmul=True``: the conv is a :class:`MatmulConv2d`)."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int = 3,
        *,
        dilation: int = 1,
        padding: int | None = None,
        batch_norm: bool = False,
        relu: bool = True,
        dropout: float = 0.0,
        bias: bool = True,
        matmul: bool = False,
    ) -> None:
        super().__init__()
        if padding is None:
            padding = dilation * (kernel_size - 1) // 2
        self.conv = (MatmulConv2d if matmul else nn.Conv2d)(
            in_ch, out_ch, kernel_size, padding=padding, dilation=dilation, bias=bias
        )
        self.bn = nn.BatchNorm2d(out_ch) if batch_norm else None
        self.relu = nn.ReLU(inplace=True) if relu else None
        self.drop = nn.Dropout(dropout) if dropout > 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.relu is not None:
            x = self.relu(x)
        if self.drop is not None:
            x = self.drop(x)
        return x


def no_pretrained(name: str, pretrained: str | None) -> None:
    """Networks without a VGG body have no ImageNet weights to load."""
    if pretrained is not None:
        raise ValueError(
            f"{name}: has no pretrained encoder (pretrained must be None, got {pretrained!r})"
        )
