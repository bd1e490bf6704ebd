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

from bench.method import MethodError, runtime_setting
from deep.engine.config import TrainConfig
from deep.method import DeepMethod
from deep.models.smp_models import DEFAULT_ENCODER, MissingExtra, check_encoder, import_smp, smp_installed


@dataclasses.dataclass
class ReferenceSettings(TrainConfig):
    """The training settings of :class:`~deep.engine.config.TrainConfig` and the weights to
    start from (as :class:`deep.method.DeepSettings`, without ``width``)."""

    #: None (from scratch) | "imagenet" (the backbone file in the torch hub cache) | a path
    #: (a torchvision or smp state_dict, or a segbench model.pt)
    pretrained: str | None = None
    from_scratch: bool = False  # with pretrained="imagenet": train from scratch if the weights are missing
    keep: str = "last"  # "last" | "best" (by val mIoU: optimistic when the scored split is the validation split)
    #: after training keep last.pt/best.pt (with optimiser state); default: model.pt only
    keep_checkpoints: bool = runtime_setting(False)

    def __post_init__(self) -> None:
        try:  # the trainer's own checks (epochs >= 1, optimizer names, ...)
            super().__post_init__()
        except ValueError as e:
            raise MethodError(str(e)) from None
        if not (self.pretrained is None or isinstance(self.pretrained, str)):
            raise MethodError(f"pretrained must be None, 'imagenet' or a path, got {self.pretrained!r}")
        if self.keep not in ("best", "last"):
            raise MethodError(f"keep must be 'best' or 'last', got {self.keep!r}")


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
