"""``tiny-fcn``: a small custom network trained by segbench's own trainer (example plugin).

:class:`TinyFCN` subclasses :class:`deep.method.DeepMethod`, so it gets the trainer, the
checkpoints, resuming, the settings (``epochs``, ``batch_size``, ``width``, ...) and the
records for free; it says which network to build (:meth:`create_network`; training always
starts from scratch, :meth:`initial_network`) and changes one default (``lr``). The
network itself is a :class:`deep.models.base.SegmentationNet` (padding to the output
stride and cropping back are done by the base class).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from bench.method import MethodError
from deep.method import DeepMethod, DeepSettings
from deep.models.base import ConvBNReLU, SegmentationNet, check_settings, kaiming_init, scaled


class TinyNet(SegmentationNet):
    """conv-BN-ReLU x2 at full resolution, max-pool, conv-BN-ReLU, 1x1 classifier,
    bilinear upsampling back to the input size (output stride 2)."""

    output_stride = 2
    min_input_size = 2

    def __init__(self, num_classes: int, width: float = 0.25):
        check_settings("tiny-fcn", num_classes, width)
        super().__init__(num_classes=num_classes, width=width)
        c = scaled(64, width)
        self.stem = nn.Sequential(ConvBNReLU(3, c, batch_norm=True), ConvBNReLU(c, c, batch_norm=True))
        self.down = nn.Sequential(nn.MaxPool2d(2), ConvBNReLU(c, 2 * c, batch_norm=True))
        self.classifier = nn.Conv2d(2 * c, num_classes, 1)
        kaiming_init(self)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        y = self.classifier(self.down(self.stem(x)))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


@dataclasses.dataclass
class TinyFCNSettings(DeepSettings):
    """segbench's training settings, with defaults of this network's own."""

    lr: float = 1e-2  # a small network from scratch: a larger step than the default 1e-3


class TinyFCN(DeepMethod):
    """Tiny FCN of the example plugin (examples/segbench-example-plugin): 3 conv layers."""

    network = "tiny-fcn"
    Settings = TinyFCNSettings

    def create_network(self, num_classes: int) -> nn.Module:
        try:
            net = TinyNet(num_classes, width=self.settings.width)
        except ValueError as e:
            raise MethodError(str(e)) from None  # names the network
        net.name = self.network
        return net

    def initial_network(self, num_classes: int, seed: int) -> nn.Module:
        """Always from scratch: this network has no pretrained weights."""
        if self.settings.pretrained is not None:
            raise MethodError(f"{self.name}: has no pretrained weights (pretrained must be None, "
                              f"got {self.settings.pretrained!r})")
        torch.manual_seed(seed)
        return self.create_network(num_classes)
