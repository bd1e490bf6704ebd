"""Convolutions that the CPU computes as one matrix product when their map is small.

VGG's fc6 is a 7x7 convolution with 4096 channels (DeconvNet mirrors it with a 7x7
deconvolution back to pool5's channels). On the few cells of a pool5 map oneDNN runs it
slowly and reorders the whole weight on every call; as ``unfold`` + a matrix product (the
convolution) or a matrix product + ``fold`` (the deconvolution, its adjoint) the same
arithmetic runs at the matrix product's rate. Neither torch nor oneDNN picks this path by
itself, hence these two small layers.

On the CPU both keep their weight in the contiguous (NCHW) layout when the network is
moved to channels-last: the matrix product reads the weight as a ``out x (in * kh * kw)`` (or
``in x (out * kh * kw)``) matrix, and a channels-last weight would be copied into that order
on every call (25 MB for DeconvNet's fc6 at 1/4 width: 90 ms of its 280 ms training step at
batch 2 on 80x120 inputs, docs/BENCHMARKS.md).
The values and the order of the sums are those of the copy, so the results do not change.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _small_map(layer: nn.Module, x: torch.Tensor, cells: int, unfold_rows: int) -> bool:
    """Whether ``x`` (CPU, plain zero padding) has a map small enough for the matrix
    product: at most ``MAX_CELLS`` cells and an unfolded matrix under ``MAX_UNFOLD_BYTES``."""
    if x.device.type != "cpu" or layer.groups != 1 or isinstance(layer.padding, str) \
            or layer.padding_mode != "zeros":
        return False
    return cells <= layer.MAX_CELLS and \
        x.shape[0] * unfold_rows * cells * x.element_size() <= layer.MAX_UNFOLD_BYTES


class _ContiguousWeight:
    """Keeps a CPU weight in the contiguous layout through ``module.to(memory_format=...)``
    (on other devices the layer is the convolution, which takes the network's layout)."""

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        if self.weight.device.type == "cpu" and not self.weight.is_contiguous():
            self.weight.data = self.weight.data.contiguous()
        return self


class MatmulConv2d(_ContiguousWeight, nn.Conv2d):
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
        (ph, pw) = (0, 0) if isinstance(self.padding, str) else self.padding
        ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        if not _small_map(self, x, ho * wo, self.in_channels * kh * kw):
            return super().forward(x)
        cols = F.unfold(x, (kh, kw), dilation=(dh, dw), padding=(ph, pw), stride=(sh, sw))
        out = self.weight.reshape(self.out_channels, -1) @ cols  # (n, out_channels, ho * wo)
        if self.bias is not None:
            out = out + self.bias[:, None]
        return out.reshape(n, self.out_channels, ho, wo)


class MatmulConvTranspose2d(_ContiguousWeight, nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` (stride 1, no output padding) that the CPU computes as one
    matrix product + ``fold`` (col2im) when its input map is small: the adjoint of
    :class:`MatmulConv2d`'s path.

    For DeconvNet's 7x7 deconvolution from fc7 (4096 channels) back to pool5's map on a few
    cells, oneDNN is slower than the matrix product (with the weights kept contiguous,
    DeconvNet trained 1.41x faster on the default suite, docs/BENCHMARKS.md). Same
    parameters and results as the deconvolution to float rounding. Strided or grouped
    layers, other devices and larger maps take the deconvolution.
    """

    MAX_CELLS = MatmulConv2d.MAX_CELLS
    MAX_UNFOLD_BYTES = MatmulConv2d.MAX_UNFOLD_BYTES

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        n, _, h, w = x.shape
        (kh, kw), (dh, dw), (ph, pw) = self.kernel_size, self.dilation, self.padding
        if self.stride != (1, 1) or any(self.output_padding) or output_size is not None \
                or not _small_map(self, x, h * w, self.out_channels * kh * kw):
            return super().forward(x, output_size)
        ho = h - 2 * ph + dh * (kh - 1)
        wo = w - 2 * pw + dw * (kw - 1)
        cols = self.weight.reshape(self.in_channels, -1).t() @ x.reshape(n, self.in_channels, h * w)
        out = F.fold(cols, (ho, wo), (kh, kw), dilation=(dh, dw), padding=(ph, pw))
        if self.bias is not None:
            out = out + self.bias[:, None, None]
        return out
