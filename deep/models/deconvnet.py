"""DeconvNet (Noh, Hong, Han, "Learning Deconvolution Network for Semantic Segmentation",
ICCV 2015).

Encoder: VGG16 with batch normalisation after every convolution (as in the authors'
Caffe model), 5 max-pools 2x2 that keep their switches (indices); fc6 as a 7x7 conv
(4096, unpadded in the paper: 7x7 -> 1x1) and fc7 as a 1x1 conv (4096), each with BN +
ReLU. Decoder, the mirror image: a 7x7 deconvolution (``ConvTranspose2d`` 4096 -> 512,
1x1 -> 7x7 in the paper) + BN + ReLU, then per stage an unpooling with the switches of the
matching pooling (``MaxUnpool2d``) and 3x3 deconvolutions (``ConvTranspose2d``, stride 1)
+ BN + ReLU mirroring VGG16's convolutions (channels 512,512,512 | 512,512,256 |
256,256,128 | 128,64 | 64,64), and a final 1x1 score layer to the classes.

Parameters: about 252M with 21 classes, the figure quoted for DeconvNet (e.g. in the
SegNet paper's comparison). That figure counts the fully connected layers: fc6 and the
mirrored 7x7 deconvolution are ~103M each, fc7 ~17M; the convolutional encoder and decoder
are only ~15M each.

Input size: the paper's net sees 224x224 crops (pool5 is 7x7, fc6 makes it 1x1, the 7x7
deconvolution makes it 7x7 again). Two ways to take any size, with identical parameters:

* ``fc_mode="same"`` (default): the input is zero-padded to a multiple of 32, fc6 and the
  7x7 deconvolution are padded by 3 so the pool5 map keeps its size, and the scores are
  cropped back. Fully convolutional; at 224x224 this differs from the paper's 1x1 bottleneck.
* ``fc_mode="resize"``: the input is resized (bilinear) to 224x224, the paper's net runs
  with unpadded fc6 / 7x7 deconvolution, and the scores are resized back to the input size.
  Exactly the paper's network, at the price of the resampling.

The paper's two-stage training, proposal-wise inference and ensemble with FCN are not part
of the network and are not reproduced.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deep.models import register_model
from deep.models.base import SegmentationNet, kaiming_init, scaled
from deep.models.matmul_conv import MatmulConvTranspose2d
from deep.models.vgg import VGG16_FC, FCHead, VGGEncoder
from deep.weights import check_pretrained, load_pretrained

#: output channels of the 3x3 deconvolutions, decoder stage 5 -> 1
DECODER_STAGES: tuple[tuple[int, ...], ...] = (
    (512, 512, 512),
    (512, 512, 256),
    (256, 256, 128),
    (128, 64),
    (64, 64),
)
FC_MODES = ("same", "resize")


class DeconvBNReLU(nn.Sequential):
    """deconvolution (stride 1) -> BatchNorm -> ReLU; ``matmul=True``: the deconvolution is
    a :class:`MatmulConvTranspose2d` (the 7x7 one from fc7, on a map of a few cells)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 3, padding: int = 1,
                 *, matmul: bool = False) -> None:
        deconv = MatmulConvTranspose2d if matmul else nn.ConvTranspose2d
        super().__init__(
            deconv(c_in, c_out, kernel_size, stride=1, padding=padding),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )


class DeconvNet(SegmentationNet):
    name = "deconvnet"
    output_stride = 32
    min_input_size = 32
    paper_params = 252_000_000
    paper_num_classes = 21
    #: the paper's input size (pool5 is 7x7)
    paper_input_size = 224

    def __init__(
        self,
        num_classes: int,
        width: float = 1.0,
        *,
        in_channels: int = 3,
        fc_mode: str = "same",
    ) -> None:
        super().__init__(num_classes=num_classes, width=width, in_channels=in_channels)
        if fc_mode not in FC_MODES:
            raise ValueError(f"deconvnet: fc_mode must be one of {FC_MODES}, got {fc_mode!r}")
        self.fc_mode = fc_mode
        pad = 3 if fc_mode == "same" else 0
        self.encoder = VGGEncoder(in_channels, width, batch_norm=True, indices=True,
                                  fc=FCHead(padding=pad, dropout=0.0))
        self.unpool = nn.MaxUnpool2d(2, 2)
        c5 = self.encoder.stage_channels[-1]
        self.deconv_fc6 = DeconvBNReLU(scaled(VGG16_FC, width), c5, 7, padding=pad, matmul=True)
        self.decoder = nn.ModuleList()
        c_in = c5
        for stage in DECODER_STAGES:
            layers = []
            for c in stage:
                c_out = scaled(c, width)
                layers.append(DeconvBNReLU(c_in, c_out))
                c_in = c_out
            self.decoder.append(nn.Sequential(*layers))
        self.score = nn.Conv2d(c_in, num_classes, 1)
        kaiming_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fc_mode == "same":
            return super().forward(x)
        self.check_input(x)
        h, w = int(x.shape[-2]), int(x.shape[-1])
        s = self.paper_input_size
        if (h, w) != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False)
        out = self.forward_padded(x)
        if (h, w) != (s, s):
            out = F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False)
        return out

    def _check_bn_batch(self, x: torch.Tensor) -> None:
        """BatchNorm after fc6 in training needs more than one value per channel."""
        h, w = x.shape[-2:]
        if self.fc_mode == "resize":
            h = w = 1  # unpadded 7x7 fc6 on the 7x7 pool5 map
        if self.training and x.shape[0] * h * w == 1:
            raise ValueError(
                "deconvnet: in training, the batch norm after fc6 needs more than one value "
                "per channel, but the fc6 map is 1x1 at batch size 1; train with batch "
                "size > 1" + (" or fc_mode='same'" if self.fc_mode == "resize" else
                              " or inputs larger than 32x32")
            )

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        x, switches = self.encoder.features(x)
        self._check_bn_batch(x)
        x = self.deconv_fc6(self.encoder.fc(x))
        for stage in self.decoder:
            idx, size = switches.pop()
            x = stage(self.unpool(x, idx, output_size=size))
        return self.score(x)


@register_model("deconvnet")
def build_deconvnet(
    num_classes: int,
    width: float = 1.0,
    pretrained: str | None = None,
    *,
    in_channels: int = 3,
    fc_mode: str = "same",
) -> DeconvNet:
    check_pretrained("deconvnet", pretrained, width, batch_norm=True)
    model = DeconvNet(num_classes, width, in_channels=in_channels, fc_mode=fc_mode)
    load_pretrained(model, pretrained, batch_norm=True)
    return model
