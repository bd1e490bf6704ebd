"""What every network shares: the SegmentationNet base class, the width rule, the checks of
the common settings, the init and the conv-BN-ReLU block.

* :class:`SegmentationNet` -- base class of every registered network. It checks the
  input, pads it at the bottom/right to a multiple of ``output_stride`` (zeros, i.e. the
  mean of a normalised image), runs the network and crops the logits back to the input's
  ``H x W``. Subclasses implement :meth:`SegmentationNet.forward_padded` only.
* :func:`scaled` -- the ``width`` rule (every channel count is multiplied by ``width``,
  rounded half up, at least 1).
* :class:`MatmulConv2d` -- a convolution computed as one matrix product on the CPU (VGG's
  fc6: a 7x7 kernel over a map of a few cells).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


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


class MatmulConv2d(nn.Conv2d):
    """``nn.Conv2d`` that the CPU computes as ``unfold`` + one matrix product (im2col) when
    its output map is small.

    For VGG's fc6 (a 7x7 kernel, 4096 channels) on the few cells of a pool5 map, oneDNN's
    backward is slow and reorders the whole weight on each call. As a matrix product, a
    training step at batch 2 on 80x120 inputs (one thread; fc6 on 12 cells for the FCNs,
    150 for DilatedNet) is 1.2-1.3x faster for FCN-8s and DilatedNet; on 48 cells (FCN-8s at
    180x240) it is even, on 690 (DilatedNet there) 0.65x, hence :attr:`MAX_CELLS`
    (docs/BENCHMARKS.md). Same parameters and results as the convolution to float rounding
    (the sums run in another order). Other devices, larger maps and unfolded inputs over
    :attr:`MAX_UNFOLD_BYTES` take the convolution.
    """

    #: the most output cells (height x width) computed as a matrix product
    MAX_CELLS = 256
    #: the largest unfolded input (batch x in_channels * kernel area x output cells) built
    MAX_UNFOLD_BYTES = 256 * 2**20

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        (kh, kw), (dh, dw), (sh, sw) = self.kernel_size, self.dilation, self.stride
        if x.device.type != "cpu" or self.groups != 1 or isinstance(self.padding, str) \
                or self.padding_mode != "zeros":
            return super().forward(x)
        (ph, pw) = self.padding
        ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        if ho * wo > self.MAX_CELLS or n * self.in_channels * kh * kw * ho * wo * x.element_size() \
                > self.MAX_UNFOLD_BYTES:
            return super().forward(x)
        cols = F.unfold(x, (kh, kw), dilation=(dh, dw), padding=(ph, pw), stride=(sh, sw))
        out = self.weight.reshape(self.out_channels, -1) @ cols  # (n, out_channels, ho * wo)
        if self.bias is not None:
            out = out + self.bias[:, None]
        return out.reshape(n, self.out_channels, ho, wo)


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
