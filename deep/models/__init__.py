"""Registry of the deep segmentation networks.

Usage::

    from deep.models import create_model, model_names
    net = create_model("unet", num_classes=2, width=0.25)         # from scratch
    net = create_model("fcn8s", 21, pretrained="imagenet")        # VGG16 from the hub cache
    logits = net(x)        # x: N x C x H x W, any H, W >= net.min_input_size
                           # logits: N x num_classes x H x W (same H, W)

A builder is a function ``build(num_classes, width=1.0, pretrained=None, *, <options>)``
decorated with ``@register_model("name")``; it returns a
:class:`deep.models.base.SegmentationNet`, whose attributes ``output_stride``,
``min_input_size``, ``paper_params`` and ``paper_num_classes`` describe it.
:func:`create_model` checks the options against the builder's signature, so a
misspelt or unknown option is a TypeError at once.

Adding a network is one module in this package that registers a builder (found by import).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any, Callable

from torch import nn

from deep.models.base import SegmentationNet, check_settings

__all__ = [
    "SegmentationNet",
    "create_model",
    "model_names",
    "model_options",
    "register_model",
]

Builder = Callable[..., nn.Module]
_REGISTRY: dict[str, Builder] = {}
_loaded = False


def register_model(name: str) -> Callable[[Builder], Builder]:
    """Decorator: register ``build(num_classes, width=1.0, pretrained=None, **options)``."""

    def deco(fn: Builder) -> Builder:
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = fn
        fn.model_name = name  # type: ignore[attr-defined]
        return fn

    return deco


def _load_all() -> None:
    global _loaded
    if not _loaded:
        for mod in pkgutil.iter_modules(__path__):  # every model file of this package registers itself
            importlib.import_module(f"deep.models.{mod.name}")
        _loaded = True


def model_names() -> list[str]:
    """Registered network names, sorted."""
    _load_all()
    return sorted(_REGISTRY)


def _builder(name: str) -> Builder:
    _load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}; known models: {', '.join(_REGISTRY)}"
        ) from None


def model_options(name: str) -> dict[str, Any]:
    """The extra keyword options of a network and their defaults."""
    sig = inspect.signature(_builder(name))
    return {
        p.name: p.default
        for p in sig.parameters.values()
        if p.name not in ("num_classes", "width", "pretrained")
        and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }


def create_model(
    name: str,
    num_classes: int,
    width: float = 1.0,
    pretrained: str | None = None,
    **kw: Any,
) -> SegmentationNet:
    """Build the registered network ``name``.

    ``pretrained``: None (train from scratch), ``"imagenet"`` (torchvision's VGG16 /
    VGG16-BN file in the torch hub cache) or a path to such a state_dict file; only the
    VGG-based networks accept it. Unknown options raise a TypeError naming the accepted
    ones; bad values (``width <= 0``, ``num_classes < 2``) raise a ValueError.
    """
    fn = _builder(name)
    opts = model_options(name)
    unknown = sorted(set(kw) - set(opts))
    if unknown:
        accepted = ", ".join(f"{k}={v!r}" for k, v in opts.items()) or "none"
        raise TypeError(
            f"{name}: unknown option(s) {', '.join(unknown)}; accepted options: {accepted}"
        )
    check_settings(name, num_classes, width, kw.get("in_channels", 3))
    model = fn(num_classes, width=width, pretrained=pretrained, **kw)
    model.name = name
    return model
