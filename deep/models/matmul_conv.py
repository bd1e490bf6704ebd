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

A kernel larger than its map reads zero padding at most of its taps: DilatedNet's fc6 (7x7
at dilation 4, a 25x25-cell window) on the 15x10 map of a 120x80 input multiplies zeros in
4 of 5 products of its im2col matrix, VGG's fc6 and DeconvNet's deconvolution (7x7) on the
4x3 pool5 map of that input in 3 of 4. :func:`tapwise_conv2d` runs such a stride-1 layer
one kernel tap at a time, as a matrix product over the cells where that tap lands inside
the map, which skips them (where few products are live and the batch skips enough of them
to pay for two weight transposes: :attr:`MatmulConv2d.TAPWISE_BELOW`, ``TAPWISE_MIN_SKIPPED``). Same
results to float rounding (the sums run in another order); no library computes a
convolution that skips its padding, hence the hand-written forward and backward.
"""

from __future__ import annotations

import functools

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


def _out_size(size: tuple[int, int], kernel: tuple[int, int], dilation: tuple[int, int],
              padding: tuple[int, int]) -> tuple[int, int]:
    """Output height and width of a stride-1 convolution."""
    return (size[0] + 2 * padding[0] - dilation[0] * (kernel[0] - 1),
            size[1] + 2 * padding[1] - dilation[1] * (kernel[1] - 1))


@functools.lru_cache(maxsize=64)
def live_taps(size: tuple[int, int], kernel: tuple[int, int], dilation: tuple[int, int],
              padding: tuple[int, int]) -> tuple[tuple[int, int, slice, slice, slice, slice], ...]:
    """The taps of a stride-1 kernel that land inside a ``size`` map for some output cell:
    per tap ``(i, j, out_rows, out_cols, in_rows, in_cols)``, the output rectangle it
    contributes to and the input rectangle it reads (a tap's cells form a rectangle).
    Cached: a layer asks for the same map size on every call."""
    out = _out_size(size, kernel, dilation, padding)

    def spans(axis: int) -> list[tuple[int, slice, slice]]:
        found = []
        for t in range(kernel[axis]):
            shift = t * dilation[axis] - padding[axis]  # input index = output index + shift
            lo, hi = max(0, -shift), min(out[axis], size[axis] - shift)  # output indices
            if lo < hi:
                found.append((t, slice(lo, hi), slice(lo + shift, hi + shift)))
        return found

    return tuple((i, j, ro, co, ri, ci) for i, ro, ri in spans(0) for j, co, ci in spans(1))


def live_fraction(size: tuple[int, int], kernel: tuple[int, int], dilation: tuple[int, int],
                  padding: tuple[int, int]) -> float:
    """The share of the (tap, output cell) products of a stride-1 convolution that read the
    map rather than its zero padding."""
    ho, wo = _out_size(size, kernel, dilation, padding)
    live = sum((ro.stop - ro.start) * (co.stop - co.start)
               for _, _, ro, co, _, _ in live_taps(size, kernel, dilation, padding))
    return live / (kernel[0] * kernel[1] * ho * wo)


def _flipped_padding(kernel: tuple[int, int], dilation: tuple[int, int],
                     padding: tuple[int, int]) -> tuple[int, int]:
    """The padding of the convolution (flipped kernel) that a stride-1 deconvolution is."""
    return dilation[0] * (kernel[0] - 1) - padding[0], dilation[1] * (kernel[1] - 1) - padding[1]


def _cells(n: int, size: tuple[int, int], rows: slice, cols: slice) -> torch.Tensor:
    """Flat indices, in an ``n x size[0] x size[1]`` grid of cells, of a rectangle in each image."""
    r = torch.arange(rows.start, rows.stop)[:, None] * size[1] + torch.arange(cols.start, cols.stop)
    return (torch.arange(n)[:, None] * (size[0] * size[1]) + r.reshape(1, -1)).reshape(-1)


@functools.lru_cache(maxsize=64)
def _tap_index(n: int, size: tuple[int, int], kernel: tuple[int, int], dilation: tuple[int, int],
               padding: tuple[int, int]) -> tuple[tuple[int, torch.Tensor, torch.Tensor], ...]:
    """Per live tap: its flat index in the kernel, the input cells it reads and the output
    cells it writes, over a batch of ``n`` (read-only index tensors, cached per shape)."""
    out = _out_size(size, kernel, dilation, padding)
    return tuple((i * kernel[1] + j, _cells(n, size, ri, ci), _cells(n, out, ro, co))
                 for i, j, ro, co, ri, ci in live_taps(size, kernel, dilation, padding))


class _TapwiseConv(torch.autograd.Function):
    """A stride-1 convolution summed over its live taps (:func:`live_taps`): per tap, the
    input cells it reads (rows of the channels-last input) times that tap's C_in x C_out
    matrix, added into the output cells; backward the same, tap by tap. The weight is
    handled tap-major (one 2-D transpose each way, the cost of a copy). ``transposed``: the
    weight is a ``ConvTranspose2d``'s (C_in x C_out x kh x kw), whose stride-1 deconvolution
    is this convolution with the taps flipped."""

    @staticmethod
    def forward(ctx, x, weight, index, out_size, transposed):
        n, c_in, h, w = x.shape
        kh, kw = weight.shape[-2:]
        c_out = weight.shape[1] if transposed else weight.shape[0]
        # the products run in autocast's dtype where it is on, as the convolution's would; the
        # backward runs outside autocast, so both operands are cast here, once, and saved cast
        kind = x.device.type
        dtype = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else x.dtype
        x2 = x.permute(0, 2, 3, 1).reshape(-1, c_in).to(dtype)  # N*H*W x C_in (no copy if channels-last)
        wt = weight.new_empty((kh * kw, *weight.shape[:2]), dtype=dtype)  # tap-major: one copy, cast in it
        wt.view(kh * kw, -1).copy_(weight.reshape(-1, kh * kw).t())
        out = x2.new_zeros(n * out_size[0] * out_size[1], c_out)
        for t, src, dst in index:
            out.index_add_(0, dst, x2.index_select(0, src) @ _tap_matrix(wt, t, transposed))
        ctx.save_for_backward(x2, wt)
        ctx.index, ctx.shape, ctx.weight_shape, ctx.transposed = index, x.shape, weight.shape, transposed
        ctx.dtypes = x.dtype, weight.dtype
        # N x C_out x Ho x Wo, channels-last in memory
        return out.view(n, *out_size, c_out).permute(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, grad):
        x2, wt = ctx.saved_tensors
        n, c_in, h, w = ctx.shape
        taps, transposed = wt.shape[0], ctx.transposed
        g2 = grad.permute(0, 2, 3, 1).reshape(-1, grad.shape[1]).to(x2.dtype)
        gx = torch.zeros_like(x2) if ctx.needs_input_grad[0] else None
        gw = None
        if ctx.needs_input_grad[1]:
            gw = torch.empty_like(wt)
            live = {taps - 1 - t if transposed else t for t, _, _ in ctx.index}
            gw[sorted(set(range(taps)) - live)] = 0.0
        for t, src, dst in ctx.index:
            g = g2.index_select(0, dst)
            if gx is not None:
                gx.index_add_(0, src, g @ _tap_matrix(wt, t, transposed).t())
            if gw is not None:
                xs = x2.index_select(0, src)
                if transposed:
                    torch.mm(xs.t(), g, out=gw[taps - 1 - t])
                else:
                    torch.mm(g.t(), xs, out=gw[t])
        if gw is not None:
            gw = gw.view(taps, -1).t().contiguous().view(ctx.weight_shape).to(ctx.dtypes[1])
        if gx is not None:
            gx = gx.view(n, h, w, c_in).permute(0, 3, 1, 2).to(ctx.dtypes[0])
        return gx, gw, None, None, None


def _tap_matrix(wt: torch.Tensor, t: int, transposed: bool) -> torch.Tensor:
    """Tap ``t``'s C_in x C_out matrix of a tap-major weight (a view, no copy)."""
    return wt[wt.shape[0] - 1 - t] if transposed else wt[t].t()


def tapwise_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                   dilation: tuple[int, int], padding: tuple[int, int], transposed: bool = False) -> torch.Tensor:
    """``F.conv2d`` (stride 1, groups 1, zero padding) computed over the live taps only:
    the same sums to float rounding, without the products with the padding.
    ``transposed=True``: ``F.conv_transpose2d`` (stride 1, no output padding) of a
    ``ConvTranspose2d`` weight, ``padding`` being the deconvolution's own."""
    size = (x.shape[-2], x.shape[-1])
    kernel = (weight.shape[-2], weight.shape[-1])
    if transposed:  # the deconvolution is the convolution with the flipped kernel
        padding = _flipped_padding(kernel, dilation, padding)
    out = _TapwiseConv.apply(x, weight, _tap_index(x.shape[0], size, kernel, dilation, padding),
                             _out_size(size, kernel, dilation, padding), transposed)
    return out if bias is None else out + bias[:, None, None]


def _tapwise_pays(layer: nn.Module, out_cells: int, live: float) -> bool:
    """Whether ``layer`` runs tap by tap: few live products (``TAPWISE_BELOW``) and enough
    skipped ones (``TAPWISE_MIN_SKIPPED``) over the batch's ``out_cells`` output cells."""
    return live <= layer.TAPWISE_BELOW and (1.0 - live) * out_cells >= layer.TAPWISE_MIN_SKIPPED


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
    #: at most this share of live (tap, cell) products, a stride-1 layer runs tap by tap
    #: (:func:`tapwise_conv2d`) instead of unfolding the padding too ...
    TAPWISE_BELOW = 0.35
    #: ... when it skips at least this many products per weight (batch x output cells x dead
    #: share): below that the two weight transposes cost more than the products skipped
    #: (one thread: DilatedNet's fc6 at batch 2, 240 skipped, 1.4x faster; a 7x7 on 4x3 cells
    #: at batch 2, 18 skipped, 1.6-1.9x slower; the two cross between about 40 and 150;
    #: docs/BENCHMARKS.md)
    TAPWISE_MIN_SKIPPED = 64

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        (kh, kw), (dh, dw), (sh, sw) = self.kernel_size, self.dilation, self.stride
        (ph, pw) = (0, 0) if isinstance(self.padding, str) else self.padding
        ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        if not _small_map(self, x, ho * wo, self.in_channels * kh * kw):
            return super().forward(x)
        if (sh, sw) == (1, 1) and _tapwise_pays(self, n * ho * wo, live_fraction((h, w), (kh, kw), (dh, dw), (ph, pw))):
            return tapwise_conv2d(x, self.weight, self.bias, (dh, dw), (ph, pw))
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
    parameters and results as the deconvolution to float rounding. Where most of its
    products would be with the padding it runs tap by tap, as :class:`MatmulConv2d` does.
    Strided or grouped layers, other devices and larger maps take the deconvolution.
    """

    MAX_CELLS = MatmulConv2d.MAX_CELLS
    MAX_UNFOLD_BYTES = MatmulConv2d.MAX_UNFOLD_BYTES
    TAPWISE_BELOW = MatmulConv2d.TAPWISE_BELOW
    TAPWISE_MIN_SKIPPED = MatmulConv2d.TAPWISE_MIN_SKIPPED

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        n, _, h, w = x.shape
        (kh, kw), (dh, dw), (ph, pw) = self.kernel_size, self.dilation, self.padding
        if self.stride != (1, 1) or any(self.output_padding) or output_size is not None \
                or not _small_map(self, x, h * w, self.out_channels * kh * kw):
            return super().forward(x, output_size)
        flipped = _flipped_padding((kh, kw), (dh, dw), (ph, pw))
        ho, wo = _out_size((h, w), (kh, kw), (dh, dw), flipped)
        if min(flipped) >= 0 and _tapwise_pays(self, n * ho * wo, live_fraction((h, w), (kh, kw), (dh, dw), flipped)):
            return tapwise_conv2d(x, self.weight, self.bias, (dh, dw), (ph, pw), transposed=True)
        cols = self.weight.reshape(self.in_channels, -1).t() @ x.reshape(n, self.in_channels, h * w)
        out = F.fold(cols, (ho, wo), (kh, kw), dilation=(dh, dw), padding=(ph, pw))
        if self.bias is not None:
            out = out + self.bias[:, None, None]
        return out
