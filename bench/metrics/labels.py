"""Input checks shared by the metrics: integer label maps (numpy or torch), shapes, label ranges."""

from __future__ import annotations

import sys
from typing import Any, Sequence

import numpy as np


def torch_module():
    """The torch module if it has been imported (a tensor cannot exist otherwise)."""
    return sys.modules.get("torch")


def is_tensor(x: Any) -> bool:
    torch = torch_module()
    return torch is not None and isinstance(x, torch.Tensor)


def shape_of(x: Any) -> tuple[int, ...]:
    return tuple(x.shape) if hasattr(x, "shape") else np.shape(x)


def check_int_dtype(dtype: Any, name: str) -> None:
    """Refuse float (and complex) label maps: a forgotten ``argmax`` is an error."""
    kind = np.dtype(dtype).kind if not hasattr(dtype, "is_floating_point") else None
    if kind is not None and kind in "biu":
        return
    if kind is None and not (dtype.is_floating_point or dtype.is_complex):
        return
    raise ValueError(
        f"{name} has dtype {dtype}; expected integer class indices "
        f"(floats are refused: take the argmax over the class axis and cast to an integer type)"
    )


def check_args(num_classes: int, ignore_index: int | None) -> tuple[int, int | None]:
    """``num_classes`` a positive integer, ``ignore_index`` an integer or None; as Python ints."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, not {num_classes!r}")
    if ignore_index is not None:
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
            raise ValueError(f"ignore_index must be an integer or None, not {ignore_index!r}")
        ignore_index = int(ignore_index)
    return int(num_classes), ignore_index


def check_shapes(pred_shape: Sequence[int], target_shape: Sequence[int]) -> None:
    if tuple(pred_shape) != tuple(target_shape):
        raise ValueError(
            f"prediction and target sizes differ: pred has shape {tuple(pred_shape)}, "
            f"target has shape {tuple(target_shape)}"
        )


def to_numpy(x: Any, name: str) -> np.ndarray:
    """Integer label array as numpy (torch CPU tensors without a copy); bool -> uint8."""
    if is_tensor(x):
        x = x.detach()
        if x.device.type != "cpu":
            x = x.cpu()
        check_int_dtype(x.dtype, name)
        a = x.numpy()
    else:
        a = np.asarray(x)
        check_int_dtype(a.dtype, name)
    if a.dtype == np.bool_:
        a = a.view(np.uint8)
    return a


def bad_target_message(values: np.ndarray, num_classes: int, ignore_index: int | None) -> str:
    bad = (values < 0) | (values >= num_classes)
    if ignore_index is not None:
        bad &= values != ignore_index
    example = np.unique(values[bad])[:5].tolist()
    if ignore_index is None:
        return (f"target contains label value(s) {example} outside [0, {num_classes}) "
                f"(no ignore index is set)")
    return (f"target contains label value(s) {example} that are neither a class in "
            f"[0, {num_classes}) nor the ignore index {ignore_index}")


def bad_pred_message(values: np.ndarray, num_classes: int, ignore_index: int | None = None) -> str:
    """``values``: the prediction at the scored pixels (those whose target is not ignored)."""
    bad = (values < 0) | (values >= num_classes)
    example = np.unique(values[bad])[:5].tolist()
    if ignore_index is None:
        return f"pred contains class index(es) {example} outside [0, {num_classes})"
    return (f"pred contains class index(es) {example} outside [0, {num_classes}) at pixels whose target is a "
            f"class (any value is accepted only where the target is the ignore index {ignore_index})")


def scored_pred(pred: np.ndarray, target: np.ndarray, num_classes: int, ignore_index: int | None) -> np.ndarray:
    """``pred`` with 0 wherever the target is the ignore index: those pixels are not scored,
    so any value there (e.g. the ignore value itself) is accepted, as MMSegmentation,
    torchmetrics and smp accept it. ValueError when a scored pixel is outside [0, K)."""
    if ignore_index is None:
        if pred.size and ((pred.dtype.kind != "u" and int(pred.min()) < 0) or int(pred.max()) >= num_classes):
            raise ValueError(bad_pred_message(pred, num_classes))
        return pred
    ignored = target == ignore_index
    outside = ((pred < 0) | (pred >= num_classes)) & ~ignored
    if outside.any():
        raise ValueError(bad_pred_message(pred[~ignored], num_classes, ignore_index))
    return np.where(ignored, 0, pred).astype(pred.dtype, copy=False)


def check_labels(pred: np.ndarray, target: np.ndarray, num_classes: int, ignore_index: int | None) -> None:
    """Range checks of a prediction and its target (as the confusion matrix makes them)."""
    if pred.size == 0:
        return
    if (pred.dtype.kind != "u" and int(pred.min()) < 0) or int(pred.max()) >= num_classes:
        scored_pred(pred, target, num_classes, ignore_index)
    bad = (target < 0) | (target >= num_classes)
    if ignore_index is not None:
        bad &= target != ignore_index
    if bad.any():
        raise ValueError(bad_target_message(target, num_classes, ignore_index))
