"""Every network of :mod:`deep.models` as a segbench Method, trained by :mod:`deep.engine`.

One class per network (:class:`FCN32s`, :class:`FCN16s`, :class:`FCN8s`, :class:`DeconvNet`,
:class:`UNet`, :class:`SegNet`, :class:`SegNetBasic`, :class:`DilatedNet`), each a
:class:`DeepMethod` naming its network; the package's entry points register them.

``fit(train, val, context)`` trains in ``context.run_dir`` (default: a new temporary folder
under ``results/deep-runs/``): ``history.csv``, ``curves.png``, ``progress.png``, the
checkpoints ``last.pt`` / ``best.pt`` while training (removed after a successful fit unless
``keep_checkpoints``) and the kept weights ``model.pt``. ``val`` gives the per-epoch mIoU,
the progress figure and the best epoch's weights (``keep="best"``); without it the last
epoch's weights are kept. ``context.resume`` continues from the folder's ``last.pt``.

Predictions are made like the trainer's validation: resize by ``scale``, normalise,
forward, bilinear resize of the logits to the image's size, argmax.
"""

from __future__ import annotations

import dataclasses
import tempfile
import warnings
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from bench.datasets.types import Split
from bench.files import write_atomic
from bench.formatting import is_finite_number
from bench.method import Capabilities, Method, MethodError, predict_setting, runtime_setting
from bench.torch_helpers import AMP_TO_PRECISION, check_precision, sync
from deep import models
from deep.engine.checkpoint import (
    CheckpointError,
    check_checkpoint,
    check_state_compatible,
    is_training_checkpoint,
    read_checkpoint,
    save_checkpoint,
    weights_checkpoint,
)
from deep.engine.config import TrainConfig, use_channels_last
from deep.engine.inference import predict_labels
from deep.engine.loop import TrainResult, train
from deep.models.dilated import CONTEXT_MODES
from deep.weights import WeightsUnavailable

#: default parent of run folders when the context names none
DEFAULT_RUNS_DIR = Path("results") / "deep-runs"
#: the weights kept after a successful fit, loadable with ``pretrained=<path>``
WEIGHTS_FILE = "model.pt"


@dataclasses.dataclass
class NetworkSettings(TrainConfig):
    """The training settings of :class:`~deep.engine.config.TrainConfig` and the weights to
    start from: what every trained network's method has (the networks with a channel width
    add it, :class:`DeepSettings`)."""

    #: None (from scratch) | "imagenet" (torchvision's file in the torch hub cache) | a path
    #: (a weights file, or a segbench model.pt)
    pretrained: str | None = None
    from_scratch: bool = False  # with pretrained="imagenet": train from scratch if the weights are missing
    keep: str = "last"  # "last" | "best" (by val mIoU: optimistic when the scored split is the validation split)
    #: after training keep last.pt/best.pt (with optimiser state); default: model.pt only
    keep_checkpoints: bool = runtime_setting(False)
    #: test-time augmentation (predictions only; jobs that differ in it share one fit): also
    #: predict the mirrored image, and predict at these factors of ``scale``; the class
    #: probabilities of the passes are averaged. Each pass costs one more forward pass.
    tta_flip: bool = predict_setting(False)
    tta_scales: tuple = predict_setting((1.0,))

    def __post_init__(self) -> None:
        if isinstance(self.tta_scales, list):
            self.tta_scales = tuple(self.tta_scales)
        try:  # the trainer's own checks (epochs >= 1, optimizer names, ...)
            super().__post_init__()
        except ValueError as e:
            raise MethodError(str(e)) from None
        for ok, message in self._network_checks():
            if not ok:
                raise MethodError(message)

    def _network_checks(self) -> list[tuple[bool, str]]:
        return [
            (self.pretrained is None or isinstance(self.pretrained, str),
             f"pretrained must be None, 'imagenet' or a path, got {self.pretrained!r}"),
            (self.keep in ("best", "last"), f"keep must be 'best' or 'last', got {self.keep!r}"),
            (isinstance(self.tta_scales, tuple) and len(self.tta_scales) >= 1
             and all(is_finite_number(m) and m > 0 for m in self.tta_scales),
             f"tta_scales must be a non-empty list of factors > 0, got {list(self.tta_scales)!r}"),
        ]


@dataclasses.dataclass
class DeepSettings(NetworkSettings):
    """Everything that defines a trained network of :mod:`deep.models` (all of it goes into
    the record): :class:`NetworkSettings` and the channel width."""

    width: float = 0.25  # channel multiplier of the network (1.0 = the paper's widths)

    def _network_checks(self) -> list[tuple[bool, str]]:
        return [(self.width > 0, f"width must be > 0, got {self.width}")] + super()._network_checks()


class DeepMethod(Method):
    """A network of :mod:`deep.models` trained with :func:`deep.engine.loop.train`."""

    kind = "deep"
    Settings = DeepSettings
    capabilities = Capabilities(validation=True, network=True, save=True)
    #: the deep.models name of the network
    network: ClassVar[str] = ""

    def __init__(self, settings: Any = None):
        super().__init__(settings)
        self.model: nn.Module | None = None
        self.result: TrainResult | None = None
        self.pretrained_loaded: bool = False
        self.kept_weights: str | None = None  # "best" or "last" after fit

    def network_options(self) -> dict[str, Any]:
        """The settings that the network's builder takes besides the class count and
        ``pretrained`` (here the width; a subclass with other settings says which)."""
        return {"width": self.settings.width}

    def create_network(self, num_classes: int) -> nn.Module:
        """The untrained network of these settings (no pretrained weights loaded)."""
        try:
            return models.create_model(self.network, num_classes=num_classes, **self.network_options())
        except (ValueError, TypeError) as e:
            raise MethodError(_named(self.name, e)) from None

    # -- fit ----------------------------------------------------------------------------
    def _fit(self, train_split: Split, val: Split | None) -> None:
        s: DeepSettings = self.settings
        device = self._device()
        run_dir = Path(self.context.run_dir) if self.context.run_dir is not None else _new_run_dir(self.name)
        self.context = dataclasses.replace(self.context, run_dir=run_dir)
        num_classes = train_split.info.num_classes

        model = self.initial_network(num_classes, self.context.seed)
        try:
            result = train(model, train_split, val, s, self.context, model_name=self.network)
        except CheckpointError as e:  # resuming from a last.pt of another network or dataset
            raise MethodError(f"{self.name}: {e}") from None
        self.kept_weights = "best" if s.keep == "best" and result.best_state is not None else "last"
        model.load_state_dict(result.best_state if self.kept_weights == "best" else result.final_state)
        model.to(device).eval()
        # the weights live in the model (and in run_dir); drop the copies
        self.result = dataclasses.replace(result, final_state={}, best_state=None)
        self.model = model
        self._save_final_weights(model, num_classes, run_dir)

    def _device(self) -> torch.device:
        """The context's device, checked: it exists here and runs the ``amp`` precision."""
        try:
            device = torch.device(self.context.device)
        except (RuntimeError, TypeError) as e:
            raise MethodError(f"{self.name}: bad device {self.context.device!r} ({e})") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise MethodError(f"{self.name}: device {self.context.device!r} asked for but CUDA is not available")
        try:
            check_precision(AMP_TO_PRECISION[self.settings.amp], device)
        except ValueError as e:
            raise MethodError(f"{self.name}: amp={self.settings.amp!r}: {e}") from None
        return device

    def initial_network(self, num_classes: int, seed: int) -> nn.Module:
        """The network training starts from: from scratch, with ImageNet VGG16 weights, or
        with the weights of a segbench checkpoint (``pretrained``); its random initial
        weights depend on ``seed`` only."""
        s: DeepSettings = self.settings
        checkpoint = self._pretrained_checkpoint(num_classes)
        torch.manual_seed(seed)
        pretrained = None if checkpoint is not None else s.pretrained
        try:
            model = models.create_model(self.network, num_classes=num_classes, pretrained=pretrained,
                                        **self.network_options())
            self.pretrained_loaded = pretrained is not None
        except WeightsUnavailable as e:
            if not s.from_scratch:
                raise MethodError(f"{_named(self.name, e)} (or set from_scratch=true to train without them)") from None
            warnings.warn(f"{self.name}: pretrained weights unavailable, training from scratch: {e}", stacklevel=4)
            torch.manual_seed(seed)
            model = self.create_network(num_classes)
        except (ValueError, TypeError) as e:
            raise MethodError(_named(self.name, e)) from None
        if checkpoint is not None:
            try:
                check_state_compatible(model.state_dict(), checkpoint["model"], str(s.pretrained))
            except CheckpointError as e:
                raise MethodError(f"{self.name}: {e}") from None
            model.load_state_dict(checkpoint["model"])
            self.pretrained_loaded = True
        return model

    def _pretrained_checkpoint(self, num_classes: int) -> dict[str, Any] | None:
        """The segbench checkpoint that ``pretrained`` names, checked against this network
        and class count; None when ``pretrained`` names anything else (ImageNet weights,
        a VGG16 file, a missing file: the network's loader reports those)."""
        pretrained = self.settings.pretrained
        if pretrained is None or pretrained.lower() == "imagenet" or not Path(pretrained).is_file():
            return None
        try:
            obj = read_checkpoint(pretrained)
            if not is_training_checkpoint(obj):
                return None
            return check_checkpoint(obj, pretrained, model_name=self.network, num_classes=num_classes)
        except CheckpointError as e:
            raise MethodError(f"{self.name}: pretrained={pretrained!r}: {e}") from None

    def _save_final_weights(self, model: nn.Module, num_classes: int, run_dir: Path) -> None:
        """Write ``run_dir/model.pt`` (the kept weights only) and, unless ``keep_checkpoints``,
        delete the training checkpoints: they hold the optimiser state too (Adam: twice the
        weights again) and serve only to resume a run that has now finished."""
        assert self.result is not None
        history = self.result.history
        epoch = self.result.best_epoch if self.kept_weights == "best" else (history[-1]["epoch"] if history else 0)
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        save_checkpoint(weights_checkpoint(self.network, num_classes, epoch, state, kept=self.kept_weights,
                                           settings=self.settings_dict()), run_dir / WEIGHTS_FILE)
        if not self.settings.keep_checkpoints:
            for name in ("last.pt", "best.pt"):
                (run_dir / name).unlink(missing_ok=True)

    def _save_state(self, folder: Path) -> None:
        """``model.pt``: fit wrote it into its run folder; saving into another folder copies it."""
        weights = Path(self.context.run_dir) / WEIGHTS_FILE
        if weights.resolve() != (folder / WEIGHTS_FILE).resolve():
            write_atomic(folder / WEIGHTS_FILE, weights.read_bytes())

    def _load_state(self, folder: Path) -> None:
        """The network with the weights of ``folder/model.pt`` (read ``weights_only``: tensors, no code)."""
        path = folder / WEIGHTS_FILE
        num_classes = self.info.num_classes
        model = self.create_network(num_classes)
        try:
            ckpt = check_checkpoint(read_checkpoint(path), path, model_name=self.network, num_classes=num_classes)
            check_state_compatible(model.state_dict(), ckpt["model"], str(path))
        except CheckpointError as e:
            raise MethodError(f"{self.name}: {e}") from None
        model.load_state_dict(ckpt["model"])
        self.model = model.to(self._device()).eval()
        self.kept_weights = ckpt.get("kept")

    # -- predict ------------------------------------------------------------------------
    def predict(self, image: np.ndarray) -> np.ndarray:
        self._require_fitted()
        assert self.model is not None
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise MethodError(f"{self.name}: expected an HxWx3 uint8 RGB image, got {image.dtype} {image.shape}")
        s: DeepSettings = self.settings
        device = torch.device(self.context.device)
        return predict_labels(self.model, image, device, scale=s.scale, amp=s.amp,
                              channels_last=use_channels_last(s.channels_last, device),
                              flip=s.tta_flip, scales=s.tta_scales)

    # -- optional interface -------------------------------------------------------------
    def sync(self) -> None:
        sync(self.context.device)

    def num_parameters(self) -> int | None:
        if self.model is None:
            return None
        return sum(p.numel() for p in self.model.parameters())

    def extra_metrics(self) -> dict[str, Any]:
        if self.result is None:
            return {}
        return {
            "network": self.network,
            **self.result.summary(),
            "kept_weights": self.kept_weights,
            "pretrained_loaded": self.pretrained_loaded,
            "train_time_s": self.result.train_time_s,
            # the layout that ran ("auto" resolved for this machine; the setting is a runtime one)
            "channels_last": use_channels_last(self.settings.channels_last, torch.device(self.context.device)),
        }


def _named(name: str, error: Exception) -> str:
    """The error's message, prefixed with the method name unless it starts with it."""
    message = str(error)
    return message if message.startswith(f"{name}:") else f"{name}: {message}"


def _new_run_dir(name: str) -> Path:
    DEFAULT_RUNS_DIR.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=DEFAULT_RUNS_DIR))


# -- the networks -------------------------------------------------------------------------
@dataclasses.dataclass
class BatchNormSettings(DeepSettings):
    """:class:`DeepSettings` and ``batch_norm``: BatchNorm after every convolution of a
    network whose paper has none (U-Net, the FCNs); it lets a deep net train from scratch at
    a short budget."""

    batch_norm: bool = False


class BatchNormOption(DeepMethod):
    """A network with the ``batch_norm`` setting (:class:`BatchNormSettings`)."""

    Settings = BatchNormSettings

    def network_options(self) -> dict[str, Any]:
        return {**super().network_options(), "batch_norm": self.settings.batch_norm}


class FCN32s(BatchNormOption):
    """FCN-32s (Long, Shelhamer, Darrell 2015): VGG16, scores upsampled 32x."""

    network = "fcn32s"


class FCN16s(BatchNormOption):
    """FCN-16s: FCN-32s with a pool4 skip, upsampled 16x."""

    network = "fcn16s"


class FCN8s(BatchNormOption):
    """FCN-8s: FCN-16s with a pool3 skip, upsampled 8x."""

    network = "fcn8s"


class DeconvNet(DeepMethod):
    """DeconvNet (Noh, Hong, Han 2015): VGG16-BN and its mirrored deconvolution network."""

    network = "deconvnet"
    version = 2  # 2: BatchNorm statistics recomputed after training (precise_bn)


class UNet(BatchNormOption):
    """U-Net (Ronneberger, Fischer, Brox 2015); ``batch_norm=True`` adds BatchNorm (not in the paper)."""

    network = "unet"
    version = 2  # 2: BatchNorm statistics recomputed after training (precise_bn)


class SegNet(DeepMethod):
    """SegNet (Badrinarayanan, Kendall, Cipolla 2017): VGG16-BN, unpooling decoder."""

    network = "segnet"
    version = 2  # 2: BatchNorm statistics recomputed after training (precise_bn)


class SegNetBasic(DeepMethod):
    """SegNet-Basic: four 7x7 encoder and decoder layers."""

    network = "segnet-basic"
    version = 2  # 2: BatchNorm statistics recomputed after training (precise_bn)


@dataclasses.dataclass
class DilatedNetSettings(BatchNormSettings):
    """DilatedNet's settings: :class:`BatchNormSettings`, ``context``: "basic" (the basic
    context module on the front end's scores) or "none" (the front end alone), and
    ``dropout``: the drop rate after fc6 and fc7 (the paper's 0.5)."""

    context: str = "basic"
    dropout: float = 0.5

    def _network_checks(self) -> list[tuple[bool, str]]:
        return [(self.context in CONTEXT_MODES, f"context must be one of {CONTEXT_MODES}, got {self.context!r}"),
                (0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")] \
            + super()._network_checks()


class DilatedNet(BatchNormOption):
    """DilatedNet (Yu, Koltun 2016): dilated VGG16 front end and the basic context module."""

    network = "dilatednet"
    Settings = DilatedNetSettings

    def network_options(self) -> dict[str, Any]:
        return {**super().network_options(), "context": self.settings.context, "dropout": self.settings.dropout}
