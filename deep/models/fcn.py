"""Fully convolutional networks FCN-32s, FCN-16s, FCN-8s (Long, Shelhamer, Darrell 2015).

VGG16 body (13 convs + ReLU, 5 max-pools 2x2 ceil-mode), fc6 as a 7x7 conv with 4096
channels and fc7 as a 1x1 conv with 4096 channels (ReLU + dropout 0.5 each), a 1x1
``score_fr`` conv to the classes, and upsampling by ``ConvTranspose2d`` layers without
bias initialised to bilinear interpolation (identity across classes, as Caffe's
``surgery.interp``):

* FCN-32s: score_fr -> 32x (kernel 64, stride 32).
* FCN-16s: score_fr -> 2x (kernel 4, stride 2) + score_pool4 -> 16x (kernel 32, stride 16).
* FCN-8s:  score_fr -> 2x + score_pool4 -> 2x + score_pool3 -> 8x (kernel 16, stride 8).

As in the paper the intermediate 2x upsamplings are learned (initialised bilinear) and the
final one is fixed bilinear (``requires_grad=False``; it is still counted as a parameter,
like Caffe's blob). The skip score layers ``score_pool4``/``score_pool3`` are zero
initialised so that the net starts as its coarser version; ``score_fr`` is zero initialised
too when ImageNet weights are loaded (the paper's choice), otherwise He-initialised so that a
from-scratch net gets gradients in its body from the first step.

Deviations (documented in docs/MODELS.md):

* The Caffe model pads conv1_1 by 100 and uses an unpadded ("valid") 7x7 fc6, then crops
  the upsampled scores with fixed offsets. Here the input is zero-padded to a multiple of
  32, fc6 is padded by 3 ("same"), every deconvolution is padded so that it scales by
  exactly its stride (kernel 2f, stride f, padding f/2: bilinear with half-pixel centres,
  i.e. ``align_corners=False``), and the scores are cropped back to the input. Same
  parameters, aligned maps without offset bookkeeping.
* All-at-once training (one net, no 32s -> 16s -> 8s staging). The PAMI "at-once" variant's
  fixed scaling of pool4/pool3 by 0.01/0.0001 is off by default (``skip_scaling=True``
  turns it on); it compensates Caffe's unnormalised loss with a pretrained body and is not
  needed here.
* ``batch_norm=True`` (off by default, not in the paper) gives the body, fc6 and fc7
  BatchNorm (VGG16-BN): from scratch on little data the default suite trains it so.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deep.models import register_model
from deep.models.base import SegmentationNet, kaiming_init, scaled
from deep.models.vgg import VGG16_FC, FCHead, VGGEncoder
from deep.weights import check_pretrained, load_pretrained


def bilinear_filter(size: int, *, device=None, dtype=None) -> torch.Tensor:
    """1-D bilinear interpolation filter of ``size`` taps (one axis of Caffe's ``upsample_filt``)."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    og = torch.arange(size, device=device, dtype=dtype)
    return 1 - (og - center).abs() / factor


def bilinear_kernel(size: int, *, device=None, dtype=None) -> torch.Tensor:
    """2-D bilinear interpolation kernel of ``size x size`` (Caffe's ``upsample_filt``)."""
    filt = bilinear_filter(size, device=device, dtype=dtype)
    return filt[:, None] * filt[None, :]


def transposed_conv_matrix(filt: torch.Tensor, size: int, stride: int, padding: int) -> torch.Tensor:
    """The ``out x size`` matrix of a 1-D transposed convolution with ``filt``:
    ``out[o] = sum_i x[i] * filt[o + padding - i * stride]`` over the taps inside the filter."""
    k = filt.numel()
    out = (size - 1) * stride - 2 * padding + k
    tap = torch.arange(out, device=filt.device)[:, None] + padding \
        - stride * torch.arange(size, device=filt.device)[None, :]
    inside = (tap >= 0) & (tap < k)
    return torch.where(inside, filt[tap.clamp(0, k - 1)], filt.new_zeros(()))


def _recheck_bilinear(module: "FixedBilinearUpsample", _incompatible_keys) -> None:
    module.check_bilinear()


class FixedBilinearUpsample(nn.ConvTranspose2d):
    """The paper's fixed (never trained) bilinear ``Deconvolution`` layer, K -> K channels.

    Its weight is bilinear on the diagonal and zero across channels, so the full K x K
    transposed convolution equals a depthwise one on the diagonal (K times fewer operations:
    FCN-32s' 64x64 kernel made CPU training 9x slower). The bilinear kernel is also
    separable, ``filt x filt``, so under autocast the forward computes it as two small matrix
    products, ``U_h @ x @ U_w^T`` (:func:`transposed_conv_matrix`), in the weight's precision:
    oneDNN's depthwise transposed convolution with a 64x64 kernel took 1.6 s of
    FCN-32s' 2.2 s training step in bf16 at 270x360, batch 8, one thread (0.25 s in float32;
    the products, forward and backward, about 0.1 s, most of it writing the full-size scores).
    Without autocast it stays the depthwise convolution, so float32 training is bit for bit
    what it was (changing the summation order moved the default suite's FCN-8s by 2 points).
    Whether the weight is that kernel is decided when it is set (built bilinear; checked again
    whenever a state dict is loaded), not on every call, so the forward stays free of data-
    dependent branches (meta-device FLOP counts, ``torch.compile``); a weight loaded from
    elsewhere that is not bilinear takes the depthwise convolution. The full weight stays a
    (frozen) parameter, so counts and checkpoints match the paper.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.separable = False  # set by :func:`bilinear_upsampler` and after each load
        self.register_load_state_dict_post_hook(_recheck_bilinear)

    def _diagonal(self) -> torch.Tensor:
        idx = torch.arange(self.in_channels, device=self.weight.device)
        return self.weight[idx, idx]  # (K, k, k): one kernel per channel

    @torch.no_grad()
    def check_bilinear(self) -> bool:
        """Whether every channel's kernel is exactly ``filt x filt`` (the matrix-product path)."""
        d = self._diagonal()
        filt = bilinear_filter(d.shape[-1], device=d.device, dtype=d.dtype)
        self.separable = bool(torch.equal(d, (filt[:, None] * filt[None, :]).expand_as(d)))
        return self.separable

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:
        device = x.device.type
        autocast = torch.amp.is_autocast_available(device) and torch.is_autocast_enabled(device)
        if not (self.separable and autocast):
            return F.conv_transpose2d(x, self._diagonal().unsqueeze(1), None, self.stride,
                                      self.padding, groups=self.in_channels)
        filt = bilinear_filter(self.kernel_size[0], device=self.weight.device, dtype=self.weight.dtype)
        u_h = transposed_conv_matrix(filt, x.shape[-2], self.stride[0], self.padding[0])
        u_w = transposed_conv_matrix(filt, x.shape[-1], self.stride[1], self.padding[1])
        with torch.autocast(device, enabled=False):
            return u_h @ x.to(filt.dtype) @ u_w.T


def bilinear_upsampler(channels: int, factor: int, *, learnable: bool) -> nn.ConvTranspose2d:
    """``ConvTranspose2d`` that upsamples by exactly ``factor`` (bilinear, per channel)."""
    cls = nn.ConvTranspose2d if learnable else FixedBilinearUpsample
    up = cls(channels, channels, 2 * factor, stride=factor, padding=factor // 2, bias=False)
    init_bilinear_(up)
    up.weight.requires_grad_(learnable)
    if not learnable:
        up.separable = True  # built bilinear (also on the meta device, where values cannot be read)
    return up


@torch.no_grad()
def init_bilinear_(up: nn.ConvTranspose2d) -> None:
    """Bilinear interpolation per channel, zero across channels."""
    w = up.weight
    k = bilinear_kernel(w.shape[-1], device=w.device, dtype=w.dtype)
    w.zero_()
    for c in range(min(w.shape[0], w.shape[1])):
        w[c, c] = k


class FCN(SegmentationNet):
    output_stride = 32
    min_input_size = 32
    # Table 1 of the paper: 134M for FCN-VGG16 on PASCAL VOC (21 classes).
    paper_params = 134_000_000
    paper_num_classes = 21

    def __init__(
        self,
        variant: int,
        num_classes: int,
        width: float = 1.0,
        *,
        in_channels: int = 3,
        dropout: float = 0.5,
        skip_scaling: bool = False,
        zero_init_score: bool = False,
        batch_norm: bool = False,
    ) -> None:
        super().__init__(num_classes=num_classes, width=width, in_channels=in_channels)
        if variant not in (32, 16, 8):
            raise ValueError(f"FCN variant must be 32, 16 or 8, got {variant}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"fcn{variant}s: dropout must be in [0, 1), got {dropout}")
        self.name = f"fcn{variant}s"
        self.variant = variant
        self.skip_scaling = skip_scaling
        k = num_classes
        self.encoder = VGGEncoder(in_channels, width, batch_norm=batch_norm, fc=FCHead(padding=3, dropout=dropout))
        self.score_fr = nn.Conv2d(scaled(VGG16_FC, width), k, 1)
        c3, c4 = self.encoder.stage_channels[2:4]
        kaiming_init(self)
        if zero_init_score:
            nn.init.zeros_(self.score_fr.weight)
            nn.init.zeros_(self.score_fr.bias)
        if variant == 32:
            self.upscore = bilinear_upsampler(k, 32, learnable=False)
        else:
            self.upscore2 = bilinear_upsampler(k, 2, learnable=True)
            self.score_pool4 = nn.Conv2d(c4, k, 1)
            nn.init.zeros_(self.score_pool4.weight)
            nn.init.zeros_(self.score_pool4.bias)
            if variant == 16:
                self.upscore16 = bilinear_upsampler(k, 16, learnable=False)
            else:
                self.upscore_pool4 = bilinear_upsampler(k, 2, learnable=True)
                self.score_pool3 = nn.Conv2d(c3, k, 1)
                nn.init.zeros_(self.score_pool3.weight)
                nn.init.zeros_(self.score_pool3.bias)
                self.upscore8 = bilinear_upsampler(k, 8, learnable=False)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        x, pools = self.encoder.features(x)
        pool3, pool4 = pools[2], pools[3]
        score = self.score_fr(self.encoder.fc(x))
        if self.variant == 32:
            return self.upscore(score)
        s4, s3 = (0.01, 0.0001) if self.skip_scaling else (1.0, 1.0)
        score = self.upscore2(score) + self.score_pool4(pool4 * s4 if s4 != 1 else pool4)
        if self.variant == 16:
            return self.upscore16(score)
        score = self.upscore_pool4(score) + self.score_pool3(pool3 * s3 if s3 != 1 else pool3)
        return self.upscore8(score)


def _build(variant: int, num_classes, width, pretrained, in_channels, dropout, skip_scaling, batch_norm):
    check_pretrained(f"fcn{variant}s", pretrained, width, batch_norm=batch_norm)
    model = FCN(
        variant, num_classes, width, in_channels=in_channels, dropout=dropout,
        skip_scaling=skip_scaling, zero_init_score=pretrained is not None, batch_norm=batch_norm,
    )
    load_pretrained(model, pretrained, batch_norm=batch_norm)
    return model


@register_model("fcn32s")
def build_fcn32s(
    num_classes: int, width: float = 1.0, pretrained: str | None = None, *,
    in_channels: int = 3, dropout: float = 0.5, skip_scaling: bool = False, batch_norm: bool = False,
) -> FCN:
    return _build(32, num_classes, width, pretrained, in_channels, dropout, skip_scaling, batch_norm)


@register_model("fcn16s")
def build_fcn16s(
    num_classes: int, width: float = 1.0, pretrained: str | None = None, *,
    in_channels: int = 3, dropout: float = 0.5, skip_scaling: bool = False, batch_norm: bool = False,
) -> FCN:
    return _build(16, num_classes, width, pretrained, in_channels, dropout, skip_scaling, batch_norm)


@register_model("fcn8s")
def build_fcn8s(
    num_classes: int, width: float = 1.0, pretrained: str | None = None, *,
    in_channels: int = 3, dropout: float = 0.5, skip_scaling: bool = False, batch_norm: bool = False,
) -> FCN:
    return _build(8, num_classes, width, pretrained, in_channels, dropout, skip_scaling, batch_norm)
