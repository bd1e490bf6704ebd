"""U-Net (Ronneberger, Fischer, Brox, MICCAI 2015).

Contracting path of four levels 64-128-256-512 (two 3x3 conv + ReLU each, then 2x2
max-pool) and a 1024-channel bottom level; expanding path of 2x2 up-convolutions
(``ConvTranspose2d`` stride 2, halving the channels), concatenation with the cropped
contracting feature map and two 3x3 conv + ReLU; a final 1x1 conv to the classes.
Dropout at the end of the contracting path (the paper's "implicit data augmentation").

Deviation: the paper uses unpadded ("valid") 3x3 convolutions, so that a 572x572 tile
gives a 388x388 output and large images are segmented by overlap-tiling. Here the
convolutions are padded ("same"), the input is padded to a multiple of 16 and the logits
are cropped back, so the output has exactly the input's size. The parameter count is the
same (31.0M with 2 classes). ``batch_norm=True`` adds BatchNorm after every 3x3 conv (not
in the paper, off by default).
"""

from __future__ import annotations

import torch
from torch import nn

from deep.models import register_model
from deep.models.base import ConvBNReLU, SegmentationNet, kaiming_init, no_pretrained, scaled

UNET_CHANNELS = (64, 128, 256, 512, 1024)


class DoubleConv(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, batch_norm: bool) -> None:
        super().__init__(
            ConvBNReLU(c_in, c_out, 3, batch_norm=batch_norm),
            ConvBNReLU(c_out, c_out, 3, batch_norm=batch_norm),
        )


class UNet(SegmentationNet):
    name = "unet"
    output_stride = 16
    min_input_size = 16
    # The paper prints no count; "31M" (2 classes) is the figure usually quoted for its
    # architecture (31,031,810 with conv biases, here).
    paper_params = 31_000_000
    paper_num_classes = 2

    def __init__(
        self,
        num_classes: int,
        width: float = 1.0,
        *,
        in_channels: int = 3,
        batch_norm: bool = False,
        dropout: float = 0.5,
    ) -> None:
        super().__init__(num_classes=num_classes, width=width, in_channels=in_channels)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"unet: dropout must be in [0, 1), got {dropout}")
        ch = [scaled(c, width) for c in UNET_CHANNELS]
        self.down = nn.ModuleList()
        c_prev = in_channels
        for c in ch:
            self.down.append(DoubleConv(c_prev, c, batch_norm))
            c_prev = c
        self.pool = nn.MaxPool2d(2, 2)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for i in range(len(ch) - 1, 0, -1):
            self.up.append(nn.ConvTranspose2d(ch[i], ch[i - 1], 2, stride=2))
            self.dec.append(DoubleConv(2 * ch[i - 1], ch[i - 1], batch_norm))
        self.classifier = nn.Conv2d(ch[0], num_classes, 1)
        kaiming_init(self)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            if i > 0:
                x = self.pool(x)
            x = block(x)
            skips.append(x)
        x = self.drop(skips.pop())
        for up, dec in zip(self.up, self.dec):
            x = up(x)
            x = dec(torch.cat([skips.pop(), x], dim=1))
        return self.classifier(x)


@register_model("unet")
def build_unet(
    num_classes: int,
    width: float = 1.0,
    pretrained: str | None = None,
    *,
    in_channels: int = 3,
    batch_norm: bool = False,
    dropout: float = 0.5,
) -> UNet:
    no_pretrained("unet", pretrained)
    return UNet(
        num_classes, width, in_channels=in_channels, batch_norm=batch_norm, dropout=dropout
    )
