"""torchvision's segmentation networks as reference models: ``lraspp-mobilenet-v3-large``,
``deeplabv3-mobilenet-v3-large``, ``deeplabv3-resnet50``, ``fcn-resnet50``.

Each is torchvision's own model (``torchvision.models.segmentation``), built with
``weights=None, weights_backbone=None`` (nothing is downloaded) and without the auxiliary
head (``aux_loss=False``: the trainer has one loss), wrapped so that ``forward`` returns the
logits tensor. Its size is torchvision's: ``width`` must be 1.

``pretrained`` (a local file, loaded with ``torch.load(weights_only=True)``):

* ``None`` -- from scratch, torchvision's own initialisation;
* a path to a torchvision **segmentation** state_dict (``torch.save(model.state_dict())`` of
  the same torchvision model, e.g. its COCO-with-VOC-labels file): the auxiliary head's keys
  are left out; when the file is for another class count the score layer keeps its fresh
  initialisation (a warning says so), every other tensor must match;
* a path to a torchvision **ImageNet backbone** state_dict (``mobilenet_v3_large`` or
  ``resnet50``, what ``weights_backbone`` would load): the backbone only, its
  classification head left out;
* ``"imagenet"`` -- that backbone file in the torch hub cache (where torchvision keeps it);
  a missing file is a :class:`~deep.weights.WeightsUnavailable` saying where to put it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torchvision.models import MobileNet_V3_Large_Weights, ResNet50_Weights, WeightsEnum, segmentation

from deep.models import register_model
from deep.models.wrapped import WrappedNet, check_fixed_width, check_same_keys, read_state_file
from deep.weights import WeightsUnavailable


@dataclass(frozen=True)
class TorchvisionSpec:
    """What differs between the four networks."""

    build: Callable[..., nn.Module]  # the torchvision builder
    backbone_weights: WeightsEnum  # the ImageNet file that pretrained="imagenet" loads
    backbone_prefix: str  # prefix of the backbone's keys in that file ("features." or none)
    head_prefix: str  # prefix of the ImageNet classifier's keys in that file (left out)
    score_prefixes: tuple[str, ...]  # the layers whose output is the classes
    output_stride: int  # of the coarsest feature map (the backbones are dilated)
    pooling_bn: bool  # BatchNorm after the ASPP's image pooling (training needs batch >= 2)


MOBILENET = dict(backbone_weights=MobileNet_V3_Large_Weights.IMAGENET1K_V1, backbone_prefix="features.",
                 head_prefix="classifier.", output_stride=16)
RESNET = dict(backbone_weights=ResNet50_Weights.IMAGENET1K_V1, backbone_prefix="", head_prefix="fc.",
              output_stride=8)
SPECS: dict[str, TorchvisionSpec] = {
    "lraspp-mobilenet-v3-large": TorchvisionSpec(
        segmentation.lraspp_mobilenet_v3_large, **MOBILENET,
        score_prefixes=("classifier.low_classifier.", "classifier.high_classifier."), pooling_bn=False),
    "deeplabv3-mobilenet-v3-large": TorchvisionSpec(
        segmentation.deeplabv3_mobilenet_v3_large, **MOBILENET, score_prefixes=("classifier.4.",), pooling_bn=True),
    "deeplabv3-resnet50": TorchvisionSpec(
        segmentation.deeplabv3_resnet50, **RESNET, score_prefixes=("classifier.4.",), pooling_bn=True),
    "fcn-resnet50": TorchvisionSpec(
        segmentation.fcn_resnet50, **RESNET, score_prefixes=("classifier.4.",), pooling_bn=False),
}


def hub_backbone_path(name: str) -> Path:
    """Where torchvision keeps the ImageNet backbone file of network ``name``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / SPECS[name].backbone_weights.url.rsplit("/", 1)[-1]


def weights_file(name: str, pretrained: str) -> Path:
    """The file ``pretrained`` names (``"imagenet"``: the hub cache's backbone file)."""
    if pretrained.lower() != "imagenet":
        return Path(pretrained)
    path = hub_backbone_path(name)
    if not path.is_file():
        url = SPECS[name].backbone_weights.url
        raise WeightsUnavailable(
            f"{name}: ImageNet backbone weights are not in the torch hub cache ({path} is missing) and this "
            f"machine cannot download them: put {url.rsplit('/', 1)[-1]} (from {url}) there, or pass "
            "pretrained=<path to a torchvision state_dict>; pretrained=None trains from scratch")
    return path


def build(name: str, num_classes: int, width: float = 1.0, pretrained: str | None = None) -> WrappedNet:
    """torchvision's network ``name`` for ``num_classes`` classes, wrapped; with the weights
    of ``pretrained`` when given (the module docstring says which files)."""
    check_fixed_width(name, width)
    if pretrained is not None and not isinstance(pretrained, str):
        raise ValueError(f"{name}: pretrained must be None, 'imagenet' or a path, got {pretrained!r}")
    spec = SPECS[name]
    path = weights_file(name, pretrained) if pretrained is not None else None
    state = read_state_file(path, f"a torchvision {name} or ImageNet backbone state_dict") if path else None
    net = spec.build(weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=False)
    if state is not None:
        load_torchvision_state(name, net, state, str(path))
    model = WrappedNet(net, num_classes, output_stride=spec.output_stride, pad=False, pooling_bn=spec.pooling_bn)
    model.name = name
    return model


def load_torchvision_state(name: str, net: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Load a segmentation state_dict (keys ``backbone.*``) or an ImageNet backbone one into
    torchvision's module ``net``; ValueError naming the first tensor that does not fit."""
    spec = SPECS[name]
    own = net.state_dict()
    if any(k.startswith("backbone.") for k in state):  # the whole segmentation network
        state = {k: v for k, v in state.items() if not k.startswith("aux_classifier.")}
        other_classes = [k for k in own if k.startswith(spec.score_prefixes) and k in state
                         and state[k].shape != own[k].shape]
        if other_classes:
            warnings.warn(f"{name}: {where} is for {state[other_classes[0]].shape[0]} classes, not "
                          f"{own[other_classes[0]].shape[0]}: its score layer keeps a fresh init", stacklevel=3)
            state = {**state, **{k: own[k] for k in other_classes}}
        check_same_keys(own, state, where)
        net.load_state_dict(state)
        return
    mapped = {"backbone." + k.removeprefix(spec.backbone_prefix): v for k, v in state.items()
              if k.startswith(spec.backbone_prefix) and not k.startswith(spec.head_prefix)}
    check_same_keys({k: v for k, v in own.items() if k.startswith("backbone.")}, mapped,
                    f"{where} (read as an ImageNet {spec.backbone_weights.url.rsplit('/', 1)[-1]} backbone file)")
    net.load_state_dict(mapped, strict=False)


def _register(name: str, torchvision_name: str) -> Callable[..., WrappedNet]:
    def builder(num_classes: int, width: float = 1.0, pretrained: str | None = None) -> WrappedNet:
        return build(name, num_classes, width, pretrained)

    builder.__name__ = builder.__qualname__ = torchvision_name
    builder.__doc__ = f"torchvision's ``{torchvision_name}`` (no auxiliary head, weights=None), wrapped."
    return register_model(name)(builder)


lraspp_mobilenet_v3_large = _register("lraspp-mobilenet-v3-large", "lraspp_mobilenet_v3_large")
deeplabv3_mobilenet_v3_large = _register("deeplabv3-mobilenet-v3-large", "deeplabv3_mobilenet_v3_large")
deeplabv3_resnet50 = _register("deeplabv3-resnet50", "deeplabv3_resnet50")
fcn_resnet50 = _register("fcn-resnet50", "fcn_resnet50")
