"""segmentation_models_pytorch (smp) networks as reference models, an optional extra
(``pip install ".[smp]"``): ``smp-unet``, ``smp-fpn``, ``smp-deeplabv3plus``.

Each is smp's own model (``smp.create_model(arch, encoder_name=encoder,
encoder_weights=None, classes=num_classes)``; nothing is downloaded), with the encoder of
the ``encoder`` option (default ``resnet18``; any of ``smp.encoders.get_encoder_names()`` or
``tu-<timm model>``). The input is zero-padded to a multiple of the encoder's output stride
(smp's FPN and DeepLabV3+ need it) and the logits cropped back. ``width`` must be 1: the
encoder sets the size.

The builders are registered only where smp is installed (so ``model_names()`` and
``bench models`` list what can be built); :func:`import_smp` says how to install it.

``pretrained``: ``None`` (smp's initialisation) or a path to a state_dict, loaded with
``torch.load(weights_only=True)``, of the same smp model (``model.state_dict()``) or of its
encoder alone (``model.encoder.state_dict()``, or a file the encoder's own
``load_state_dict`` takes, e.g. torchvision's ImageNet ResNet file for ``resnet*``).
``"imagenet"`` is a :class:`~deep.weights.WeightsUnavailable`: smp downloads those weights
itself, which segbench never does.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from torch import nn

from bench.errors import SegbenchError
from deep.models import register_model
from deep.models.wrapped import WrappedNet, check_fixed_width, check_same_keys, read_state_file
from deep.weights import WeightsUnavailable

SMP_MODULE = "segmentation_models_pytorch"
#: segbench name -> smp architecture
ARCHITECTURES = {"smp-unet": "Unet", "smp-fpn": "FPN", "smp-deeplabv3plus": "DeepLabV3Plus"}
DEFAULT_ENCODER = "resnet18"


class MissingExtra(SegbenchError, ImportError):
    """An optional dependency of segbench is not installed; the message says how to add it."""


def smp_installed() -> bool:
    """Whether segmentation_models_pytorch can be imported (without importing it: that takes seconds)."""
    return importlib.util.find_spec(SMP_MODULE) is not None


def import_smp(name: str) -> ModuleType:
    """The smp module; :class:`MissingExtra` naming the extra to install when it is missing."""
    try:
        return importlib.import_module(SMP_MODULE)
    except ImportError as e:
        raise MissingExtra(f"{name}: needs segmentation-models-pytorch, an optional extra: "
                           f"pip install \".[smp]\" ({e})") from None


def check_encoder(name: str, encoder: str) -> None:
    """ValueError when smp knows no encoder of that name."""
    names = import_smp(name).encoders.get_encoder_names()
    if not isinstance(encoder, str) or not (encoder in names or encoder.startswith("tu-")):
        raise ValueError(f"{name}: unknown encoder {encoder!r}; smp's include {', '.join(names[:6])}, ... "
                         f"({len(names)} in all: smp.encoders.get_encoder_names()) and tu-<timm model>")


def build(name: str, num_classes: int, width: float = 1.0, pretrained: str | None = None, *,
          encoder: str = DEFAULT_ENCODER) -> WrappedNet:
    """smp's ``ARCHITECTURES[name]`` with ``encoder`` for ``num_classes`` classes, wrapped."""
    check_fixed_width(name, width)
    check_encoder(name, encoder)
    if pretrained is not None and (not isinstance(pretrained, str) or pretrained.lower() == "imagenet"):
        raise WeightsUnavailable(
            f"{name}: pretrained={pretrained!r}: smp downloads its ImageNet encoder weights itself, which "
            f"segbench never does; save smp.encoders.get_encoder({encoder!r}, weights='imagenet').state_dict() "
            "where a network is reachable and pass pretrained=<that file>")
    state = read_state_file(pretrained, f"a state_dict of smp's {ARCHITECTURES[name]} or of its {encoder} encoder") \
        if pretrained is not None else None
    net = import_smp(name).create_model(ARCHITECTURES[name], encoder_name=encoder, encoder_weights=None,
                                        classes=num_classes)
    if state is not None:
        load_smp_state(net, state, str(pretrained))
    model = WrappedNet(net, num_classes, output_stride=int(net.encoder.output_stride), pad=True,
                       pooling_bn=ARCHITECTURES[name] == "DeepLabV3Plus")
    model.name = name
    return model


def load_smp_state(net: nn.Module, state: dict, where: str) -> None:
    """Load a whole-model state_dict (it has ``segmentation_head.*``) or an encoder's."""
    if any(k.startswith("segmentation_head.") for k in state):
        check_same_keys(net.state_dict(), state, where)
        net.load_state_dict(state)
        return
    try:
        net.encoder.load_state_dict(dict(state))  # the encoder's own loader drops what it knows to drop
    except RuntimeError as e:  # torch's message: a header line, then one line a kind of mismatch
        detail = " ".join(line.strip() for line in str(e).splitlines()[:2])
        raise ValueError(f"{where}: neither this smp model's nor its encoder's state_dict ({detail})") from None


def _register(name: str) -> None:
    def builder(num_classes: int, width: float = 1.0, pretrained: str | None = None, *,
                encoder: str = DEFAULT_ENCODER) -> WrappedNet:
        return build(name, num_classes, width, pretrained, encoder=encoder)

    builder.__name__ = builder.__qualname__ = name.replace("-", "_")
    builder.__doc__ = f"smp's ``{ARCHITECTURES[name]}`` with a chosen encoder (encoder_weights=None), wrapped."
    register_model(name)(builder)


if smp_installed():
    for _name in ARCHITECTURES:
        _register(_name)
