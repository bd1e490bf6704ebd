"""SegNet and SegNet-Basic (Badrinarayanan, Kendall, Cipolla, TPAMI 2017).

SegNet: the 13 convolutional layers of VGG16 with batch normalisation (VGG16-BN; the fully
connected layers are dropped), each encoder stage followed by a 2x2 max-pool that keeps
its indices. The decoder mirrors it: per stage, upsampling with the indices of the matching
encoder pooling (``MaxUnpool2d``, no learning) and 3x3 conv + BN + ReLU layers with the
channels 512,512,512 | 512,512,256 | 256,256,128 | 128,64 | 64; the last decoder conv is a
3x3 conv to the classes (``conv1_1_D`` of the authors' Caffe model, no BN/ReLU), followed by
the softmax of the loss. 29.5M parameters (the paper's figure, 11 CamVid classes).

SegNet-Basic: 4 encoder layers of 64 7x7 filters each with BN + ReLU + 2x2 max-pool
(indices kept); 4 decoder layers of unpooling + 64 7x7 filters + BN, without ReLU (as in the
paper); a 1x1 conv classifier. 1.425M parameters in the paper (11 classes).

Input: zero-padded to a multiple of the total pooling factor (32 / 16) so every pooling
divides evenly and the indices line up; the scores are cropped back. (The Caffe model
instead pools with ceil mode and gives the unpooling its output size; same parameters.)
Deviations: SegNet-Basic's local contrast normalisation of the input is left to the data
pipeline; the paper's median-frequency class balancing belongs to the loss, not the net.
"""

from __future__ import annotations

import torch
from torch import nn

from deep.models import register_model
from deep.models.base import ConvBNReLU, SegmentationNet, kaiming_init, no_pretrained, scaled
from deep.models.vgg import VGGEncoder
from deep.weights import check_pretrained, load_pretrained

#: output channels of the decoder convolutions, stage 5 -> 1 (the last one is the classes)
SEGNET_DECODER: tuple[tuple[int, ...], ...] = (
    (512, 512, 512),
    (512, 512, 256),
    (256, 256, 128),
    (128, 64),
    (64,),
)


class SegNet(SegmentationNet):
    name = "segnet"
    output_stride = 32
    min_input_size = 32
    paper_params = 29_500_000
    paper_num_classes = 11

    def __init__(self, num_classes: int, width: float = 1.0, *, in_channels: int = 3) -> None:
        super().__init__(num_classes=num_classes, width=width, in_channels=in_channels)
        self.encoder = VGGEncoder(in_channels, width, batch_norm=True, indices=True)
        self.unpool = nn.MaxUnpool2d(2, 2)
        self.decoder = nn.ModuleList()
        c_in = self.encoder.stage_channels[-1]
        for stage in SEGNET_DECODER:
            layers = []
            for c in stage:
                c_out = scaled(c, width)
                layers.append(ConvBNReLU(c_in, c_out, 3, batch_norm=True))
                c_in = c_out
            self.decoder.append(nn.Sequential(*layers))
        self.classifier = nn.Conv2d(c_in, num_classes, 3, padding=1)
        kaiming_init(self)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        x, indices = self.encoder.features(x)
        for stage in self.decoder:
            idx, size = indices.pop()
            x = stage(self.unpool(x, idx, output_size=size))
        return self.classifier(x)


class SegNetBasic(SegmentationNet):
    name = "segnet-basic"
    output_stride = 16
    min_input_size = 16
    paper_params = 1_425_000
    paper_num_classes = 11

    def __init__(
        self,
        num_classes: int,
        width: float = 1.0,
        *,
        in_channels: int = 3,
        depth: int = 4,
        kernel_size: int = 7,
    ) -> None:
        super().__init__(num_classes=num_classes, width=width, in_channels=in_channels)
        if depth < 1:
            raise ValueError(f"segnet-basic: depth must be >= 1, got {depth}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"segnet-basic: kernel_size must be odd, got {kernel_size}")
        self.output_stride = self.min_input_size = 2**depth
        c = scaled(64, width)
        self.encoder = nn.ModuleList(
            ConvBNReLU(in_channels if i == 0 else c, c, kernel_size, batch_norm=True)
            for i in range(depth)
        )
        self.decoder = nn.ModuleList(
            ConvBNReLU(c, c, kernel_size, batch_norm=True, relu=False) for _ in range(depth)
        )
        self.pool = nn.MaxPool2d(2, 2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2, 2)
        self.classifier = nn.Conv2d(c, num_classes, 1)
        kaiming_init(self)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        indices = []
        for layer in self.encoder:
            x = layer(x)
            size = x.shape[-2:]
            x, idx = self.pool(x)
            indices.append((idx, size))
        for layer in self.decoder:
            idx, size = indices.pop()
            x = layer(self.unpool(x, idx, output_size=size))
        return self.classifier(x)


@register_model("segnet")
def build_segnet(
    num_classes: int,
    width: float = 1.0,
    pretrained: str | None = None,
    *,
    in_channels: int = 3,
) -> SegNet:
    check_pretrained("segnet", pretrained, width, batch_norm=True)
    model = SegNet(num_classes, width, in_channels=in_channels)
    load_pretrained(model, pretrained, batch_norm=True)
    return model


@register_model("segnet-basic")
def build_segnet_basic(
    num_classes: int,
    width: float = 1.0,
    pretrained: str | None = None,
    *,
    in_channels: int = 3,
    depth: int = 4,
    kernel_size: int = 7,
) -> SegNetBasic:
    no_pretrained("segnet-basic", pretrained)
    return SegNetBasic(
        num_classes, width, in_channels=in_channels, depth=depth, kernel_size=kernel_size
    )
