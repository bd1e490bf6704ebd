"""DilatedNet: front end + basic context module (Yu, Koltun, "Multi-Scale Context
Aggregation by Dilated Convolutions", ICLR 2016).

Front end: VGG16 with the last two pooling layers (pool4, pool5) removed; the conv5
layers are dilated by 2 and fc6 (a 7x7 conv, 4096 channels) by 4, fc7 is a 1x1 conv
(4096), both with ReLU + dropout 0.5, and a final 1x1 conv gives the class scores at
output stride 8. (The paper also drops the padding of the intermediate feature maps and
reflection-pads the input instead; here every conv is "same"-padded, the input is
zero-padded to a multiple of 8 and the scores are cropped back.) ~134M parameters with 21
classes -- the paper reports no count.

Basic context module (``context="basic"``, default): 8 layers on C = K channels: seven 3x3
convolutions with dilations 1, 1, 2, 4, 8, 16, 1, each followed by the paper's truncation
max(., 0), and a final 1x1 convolution without truncation. Identity initialisation
(``k(t, a) = 1[t = 0] 1[a = b]``, biases 0): every layer passes its input through, so at
initialisation the module computes max(x, 0), i.e. the identity on its (non-negative)
input domain after the first truncation. ``context="none"`` gives the front end alone;
``batch_norm=True`` (off by default, not in the paper) puts BatchNorm in the front end.

The scores are upsampled x8 bilinearly (``align_corners=False``, which is what the paper's
fixed bilinear deconvolution computes) to the padded input and cropped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deep.models import register_model
from deep.models.base import SegmentationNet, kaiming_init, scaled
from deep.models.vgg import VGG16_FC, FCHead, VGGEncoder
from deep.weights import check_pretrained, load_pretrained

#: dilations of the seven 3x3 layers of the context module (then a 1x1 layer)
CONTEXT_DILATIONS = (1, 1, 2, 4, 8, 16, 1)
CONTEXT_MODES = ("basic", "none")


class ContextModule(nn.Module):
    """The basic context module: C -> C channels everywhere, identity initialised."""

    def __init__(self, channels: int, dilations=CONTEXT_DILATIONS) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Conv2d(channels, channels, 3, padding=d, dilation=d) for d in dilations
        )
        self.final = nn.Conv2d(channels, channels, 1)
        self.reset_identity()

    @torch.no_grad()
    def reset_identity(self) -> None:
        for conv in [*self.layers, self.final]:
            w = conv.weight
            w.zero_()
            k = w.shape[-1] // 2
            for c in range(w.shape[0]):
                w[c, c, k, k] = 1.0
            conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.layers:
            x = F.relu(conv(x))
        return self.final(x)


class DilatedNet(SegmentationNet):
    name = "dilatednet"
    output_stride = 8
    min_input_size = 8
    # Yu & Koltun report no parameter count.
    paper_params = None
    paper_num_classes = 21

    def __init__(
        self,
        num_classes: int,
        width: float = 1.0,
        *,
        in_channels: int = 3,
        context: str = "basic",
        dropout: float = 0.5,
        batch_norm: bool = False,
    ) -> None:
        super().__init__(num_classes=num_classes, width=width, in_channels=in_channels)
        if context not in CONTEXT_MODES:
            raise ValueError(f"dilatednet: context must be one of {CONTEXT_MODES}, got {context!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dilatednet: dropout must be in [0, 1), got {dropout}")
        # pool4 and pool5 removed: pooling after the first three stages only
        self.encoder = VGGEncoder(in_channels, width, batch_norm=batch_norm, dilations=(1, 1, 1, 1, 2), pooled=3,
                                  fc=FCHead(padding=12, dilation=4, dropout=dropout))
        self.final = nn.Conv2d(scaled(VGG16_FC, width), num_classes, 1)
        kaiming_init(self)
        self.context = ContextModule(num_classes) if context == "basic" else None

    def front_end(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores of the front end at output stride 8 (before the context module)."""
        x, _ = self.encoder.features(x)
        return self.final(self.encoder.fc(x))

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        x = self.front_end(x)
        if self.context is not None:
            x = self.context(x)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


@register_model("dilatednet")
def build_dilatednet(
    num_classes: int,
    width: float = 1.0,
    pretrained: str | None = None,
    *,
    in_channels: int = 3,
    context: str = "basic",
    dropout: float = 0.5,
    batch_norm: bool = False,
) -> DilatedNet:
    check_pretrained("dilatednet", pretrained, width, batch_norm=batch_norm)
    model = DilatedNet(
        num_classes, width, in_channels=in_channels, context=context, dropout=dropout, batch_norm=batch_norm
    )
    load_pretrained(model, pretrained, batch_norm=batch_norm)
    return model
