"""ImageNet VGG16 / VGG16-BN weights for the encoders of the VGG-based networks.

This machine is offline, so nothing is ever downloaded implicitly:

* :func:`load_vgg16_weights` maps a torchvision VGG16 (``features.N.*``,
  ``classifier.0`` / ``classifier.3``) or VGG16-BN state_dict onto a network's VGG encoder
  (13 convs, optional BN, fc6 / fc7 reshaped to 7x7 / 1x1 convolutions). ``source`` is a
  state_dict, a path to a saved one, or ``"imagenet"`` -- torchvision's file in the torch
  hub cache (``torch.hub.get_dir()/checkpoints/vgg16-397923af.pth`` or
  ``vgg16_bn-6c64b313.pth``). A missing file is a :class:`WeightsUnavailable` that says
  where to put it.
* :func:`download_vgg16` fetches the file explicitly (where a network is reachable),
  turning network errors into a :class:`WeightsUnavailable`.
"""

from __future__ import annotations

import http.client
import os
import socket
import urllib.error
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from bench.errors import SegbenchError
from deep.models.vgg import VGGEncoder

VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
VGG16_BN_URL = "https://download.pytorch.org/models/vgg16_bn-6c64b313.pth"

#: index of the 13 convolutions in torchvision's ``features`` Sequential
VGG16_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
VGG16_BN_CONV_INDICES = (0, 3, 7, 10, 14, 17, 20, 24, 27, 30, 34, 37, 40)


class WeightsUnavailable(SegbenchError, RuntimeError):
    """Pretrained weights were asked for but cannot be had (missing file, offline)."""


def vgg16_url(batch_norm: bool) -> str:
    return VGG16_BN_URL if batch_norm else VGG16_URL


def vgg16_filename(batch_norm: bool) -> str:
    return vgg16_url(batch_norm).rsplit("/", 1)[-1]


def hub_checkpoint_path(batch_norm: bool) -> Path:
    """Where torchvision keeps (and ``pretrained="imagenet"`` looks for) the file."""
    return Path(torch.hub.get_dir()) / "checkpoints" / vgg16_filename(batch_norm)


def _where_to_put(batch_norm: bool) -> str:
    return (
        f"put torchvision's {'VGG16-BN' if batch_norm else 'VGG16'} file "
        f"{vgg16_filename(batch_norm)} (from {vgg16_url(batch_norm)}) at "
        f"{hub_checkpoint_path(batch_norm)} and use pretrained='imagenet', or pass "
        "pretrained=<path to the file>; pretrained=None trains from scratch"
    )


def source_path(source: str | os.PathLike, batch_norm: bool) -> Path:
    """The file a ``pretrained`` string names; WeightsUnavailable when it is missing."""
    if isinstance(source, str) and source.lower() == "imagenet":
        path = hub_checkpoint_path(batch_norm)
        if not path.is_file():
            raise WeightsUnavailable(
                f"ImageNet weights are not in the torch hub cache ({path} is missing) and "
                f"this machine cannot download them: {_where_to_put(batch_norm)}"
            )
        return path
    path = Path(source)
    if not path.is_file():
        raise WeightsUnavailable(
            f"pretrained weights file {path} does not exist: {_where_to_put(batch_norm)}"
        )
    return path


def resolve_source(source: str | os.PathLike | Mapping[str, Any], batch_norm: bool) -> dict:
    """A state_dict from a mapping, a file path or ``"imagenet"`` (the hub cache)."""
    if isinstance(source, Mapping):
        return dict(source)
    path = source_path(source, batch_norm)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt / truncated / not a state_dict
        raise WeightsUnavailable(f"cannot read weights file {path}: {e}") from e
    if not isinstance(state, Mapping):
        raise WeightsUnavailable(f"{path} does not hold a state_dict (got {type(state).__name__})")
    return dict(state)


def _layout_has_bn(state: Mapping[str, Any]) -> bool:
    return "features.1.running_mean" in state


def _copy(dst: torch.Tensor, src: torch.Tensor, what: str) -> None:
    if tuple(dst.shape) != tuple(src.shape):
        raise ValueError(
            f"pretrained {what} has shape {tuple(src.shape)}, the network's has "
            f"{tuple(dst.shape)}: ImageNet VGG16 weights need width=1 and in_channels=3"
        )
    with torch.no_grad():
        dst.copy_(src.to(dtype=dst.dtype, device=dst.device))


def vgg_encoder(model: nn.Module) -> VGGEncoder:
    """The VGG16 encoder of a network (or the encoder itself); TypeError when it has none."""
    encoder = model if isinstance(model, VGGEncoder) else getattr(model, "encoder", None)
    if not isinstance(encoder, VGGEncoder):
        raise TypeError(f"{type(model).__name__} has no VGG16 body (no VGGEncoder)")
    return encoder


def load_vgg16_weights(
    model: nn.Module,
    source: str | os.PathLike | Mapping[str, Any],
    batch_norm: bool,
) -> list[str]:
    """Copy torchvision VGG16(-BN) weights into the VGG encoder of ``model``.

    ``model``: a network of :mod:`deep.models` with a :class:`VGGEncoder` (or the encoder).
    ``batch_norm``: whether the body (and so the file) is VGG16-BN.
    fc6 / fc7 are loaded when the body has them (the Linear weights of ``classifier.0`` /
    ``classifier.3`` reshaped to 7x7 / 1x1 convolutions; BN after them, where the network
    has it, keeps its fresh init). Returns the state_dict keys that were used.

    Raises ValueError at ``width != 1``, ``in_channels != 3`` or when the file's layout
    (with / without BN) is not the one asked for, and :class:`WeightsUnavailable` when the
    file is missing or unreadable.
    """
    encoder = vgg_encoder(model)
    name = getattr(model, "name", "") or type(model).__name__
    state = _checked_state(encoder, name, source, batch_norm)
    used: list[str] = []

    def take(key: str) -> torch.Tensor:
        if key not in state:
            raise ValueError(f"VGG16 state_dict lacks {key}")
        used.append(key)
        return state[key]

    indices = VGG16_BN_CONV_INDICES if batch_norm else VGG16_CONV_INDICES
    for block, i in zip(encoder.convs(), indices):
        _copy(block.conv.weight, take(f"features.{i}.weight"), f"features.{i}.weight")
        _copy(block.conv.bias, take(f"features.{i}.bias"), f"features.{i}.bias")
        if batch_norm:
            bn, j = block.bn, i + 1
            for attr in ("weight", "bias", "running_mean", "running_var"):
                _copy(getattr(bn, attr), take(f"features.{j}.{attr}"), f"features.{j}.{attr}")
            if f"features.{j}.num_batches_tracked" in state:
                _copy(bn.num_batches_tracked, take(f"features.{j}.num_batches_tracked"), "num_batches_tracked")
    for fc, key in ((encoder.fc6, "classifier.0"), (encoder.fc7, "classifier.3")):
        if fc is None:
            continue
        w = take(f"{key}.weight")
        conv = fc.conv
        if w.numel() != conv.weight.numel():
            raise ValueError(
                f"pretrained {key}.weight has {w.numel()} values, the network's "
                f"{tuple(conv.weight.shape)} conv has {conv.weight.numel()}: "
                "ImageNet VGG16 weights need width=1"
            )
        _copy(conv.weight, w.reshape(conv.weight.shape), f"{key}.weight")
        _copy(conv.bias, take(f"{key}.bias"), f"{key}.bias")
    return used


def _checked_state(encoder: VGGEncoder, name: str, source: str | os.PathLike | Mapping[str, Any],
                   batch_norm: bool) -> dict:
    """The state_dict of ``source`` once the encoder and the file are known to fit."""
    if encoder.batch_norm != batch_norm:
        raise ValueError(
            f"{name}: its VGG16 body {'has' if encoder.batch_norm else 'has no'} batch norm, "
            f"but batch_norm={batch_norm} was asked for"
        )
    if encoder.width != 1.0:
        raise ValueError(
            f"{name}: ImageNet VGG16 weights exist only at width=1 (got width={encoder.width:g}); "
            "use pretrained=None for a narrower network"
        )
    state = resolve_source(source, batch_norm)
    if "features.0.weight" not in state:
        raise ValueError("not a torchvision VGG16 state_dict (no features.0.weight)")
    has_bn = _layout_has_bn(state)
    if has_bn != batch_norm:
        raise ValueError(
            f"{name}: needs a {'VGG16-BN' if batch_norm else 'VGG16'} state_dict "
            f"({vgg16_filename(batch_norm)}), got a {'VGG16-BN' if has_bn else 'VGG16'} one"
        )
    if len(encoder.convs()) != len(VGG16_CONV_INDICES):
        raise ValueError(f"{name}: expected 13 VGG16 convolutions, found {len(encoder.convs())}")
    return state


def download_vgg16(
    url: str | None = None,
    dest: str | os.PathLike | None = None,
    *,
    batch_norm: bool = False,
) -> Path:
    """Download torchvision's VGG16(-BN) file (default: to the hub cache); returns the path.

    Network failures (no route, refused connection, DNS, HTTP errors) become a
    :class:`WeightsUnavailable` saying where to put the file by hand.
    """
    url = url or vgg16_url(batch_norm)
    dest = Path(dest) if dest is not None else hub_checkpoint_path(batch_norm)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, str(dest), progress=False)
    except (urllib.error.URLError, http.client.HTTPException, socket.timeout, OSError) as e:
        raise WeightsUnavailable(
            f"could not download {url} ({e}). Offline? Fetch {url.rsplit('/', 1)[-1]} on a "
            f"machine with internet and put it at {dest}; pretrained=None trains from scratch"
        ) from e
    return dest


def check_pretrained(name: str, pretrained: str | None, width: float, *, batch_norm: bool) -> None:
    """Fail before building a large network when the weights cannot be loaded anyway."""
    if pretrained is None:
        return
    if not isinstance(pretrained, (str, os.PathLike)):
        raise ValueError(
            f"{name}: pretrained must be None, 'imagenet' or a path, got {pretrained!r}"
        )
    if width != 1:
        raise ValueError(
            f"{name}: ImageNet VGG16 weights exist only at width=1 (got width={width:g}); "
            "use pretrained=None for a narrower network"
        )
    source_path(pretrained, batch_norm)


def load_pretrained(model: nn.Module, pretrained: str | None, *, batch_norm: bool) -> None:
    """Load ImageNet VGG16(-BN) weights into ``model``'s encoder when ``pretrained`` is given."""
    if pretrained is None:
        return
    load_vgg16_weights(model, pretrained, batch_norm=batch_norm)
