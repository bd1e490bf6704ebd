"""Modern reference networks of maintained libraries as segbench Methods, trained by the same
trainer (:mod:`deep.engine`) and scored the same way as the 2015 networks of :mod:`deep.method`.

* torchvision: :class:`LRASPPMobileNetV3`, :class:`DeepLabV3MobileNetV3`,
  :class:`DeepLabV3ResNet50`, :class:`FCNResNet50` (:mod:`deep.models.torchvision_models`).
* segmentation_models_pytorch, an optional extra (``pip install ".[smp]"``): :class:`SmpUnet`,
  :class:`SmpFPN`, :class:`SmpDeepLabV3Plus` with the ``encoder`` setting
  (:mod:`deep.models.smp_models`). Without smp, creating one is a MethodError naming the
  extra, and they declare no network (``bench models`` leaves them out).

They have no ``width`` setting: a library's network comes in one size. ``pretrained`` takes a
local file (see the model modules: a torchvision / smp state_dict, or a segbench
``model.pt``); nothing is ever downloaded.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from bench.method import MethodError
from deep.method import DeepMethod, NetworkSettings
from deep.models.smp_models import DEFAULT_ENCODER, MissingExtra, check_encoder, import_smp, smp_installed


@dataclasses.dataclass
class ReferenceSettings(NetworkSettings):
    """:class:`deep.method.NetworkSettings` (training and the weights to start from; a
    ``pretrained`` path may be a torchvision or smp state_dict too); no width: one size."""


@dataclasses.dataclass
class SmpSettings(ReferenceSettings):
    """:class:`ReferenceSettings` and smp's encoder; needs segmentation_models_pytorch."""

    encoder: str = DEFAULT_ENCODER  # smp.encoders.get_encoder_names() or "tu-<timm model>"

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            import_smp("smp")
            check_encoder("smp", self.encoder)
        except (MissingExtra, ValueError) as e:
            raise MethodError(str(e)) from None


class ReferenceMethod(DeepMethod):
    """A library's network trained by :mod:`deep.engine` (no width: one size)."""

    Settings = ReferenceSettings
    version = 2  # 2: BatchNorm statistics recomputed after training (precise_bn)

    def network_options(self) -> dict[str, Any]:
        return {}


class LRASPPMobileNetV3(ReferenceMethod):
    """Lite R-ASPP on MobileNetV3-Large (Howard et al. 2019), torchvision's ``lraspp_mobilenet_v3_large``."""

    network = "lraspp-mobilenet-v3-large"


class DeepLabV3MobileNetV3(ReferenceMethod):
    """DeepLabV3 (Chen et al. 2017) on MobileNetV3-Large, torchvision's ``deeplabv3_mobilenet_v3_large``."""

    network = "deeplabv3-mobilenet-v3-large"


class DeepLabV3ResNet50(ReferenceMethod):
    """DeepLabV3 on a dilated ResNet-50 (output stride 8), torchvision's ``deeplabv3_resnet50``."""

    network = "deeplabv3-resnet50"


class FCNResNet50(ReferenceMethod):
    """FCN head on a dilated ResNet-50 (output stride 8), torchvision's ``fcn_resnet50``."""

    network = "fcn-resnet50"


class SmpMethod(ReferenceMethod):
    """An smp architecture with the ``encoder`` setting."""

    Settings = SmpSettings
    capabilities = dataclasses.replace(DeepMethod.capabilities, network=smp_installed())

    def network_options(self) -> dict[str, Any]:
        return {"encoder": self.settings.encoder}


class SmpUnet(SmpMethod):
    """U-Net decoder on an smp encoder, smp's ``Unet``."""

    network = "smp-unet"


class SmpFPN(SmpMethod):
    """Feature Pyramid Network decoder (Kirillov et al. 2019 panoptic FPN head), smp's ``FPN``."""

    network = "smp-fpn"


class SmpDeepLabV3Plus(SmpMethod):
    """DeepLabV3+ (Chen et al. 2018) on an smp encoder at output stride 16, smp's ``DeepLabV3Plus``."""

    network = "smp-deeplabv3plus"
