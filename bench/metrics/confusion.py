"""The (K, K) confusion matrix of integer label maps, one call or streamed over a split.

Rows are the ground truth, columns the prediction; pixels whose target equals
``ignore_index`` are left out of every count. numpy in -> numpy out; torch tensors are
counted on their device.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from bench.metrics.labels import (
    bad_pred_message, bad_target_message, check_args, check_int_dtype, check_shapes, is_tensor, scored_pred,
    shape_of, to_numpy, torch_module,
)

#: cv2.calcHist counts into float32, exact up to 2**24 per bin: never give it more pixels at once
_CV_CHUNK = 1 << 24
#: below this many pixels np.bincount wins (cv2.calcHist has ~40 us of fixed cost)
_CV_MIN_PIXELS = 1 << 15


# Hand-written because no library does a streaming numpy+torch confusion matrix at this speed.
def _count_u8(target: np.ndarray, pred: np.ndarray, rows: int, num_classes: int) -> np.ndarray:
    """(rows, K) int64 joint histogram of two uint8 arrays with pred < K and target < rows.

    Measured with timeit on 8x360x480, K=12, one core: cv2.calcHist ~1.1-1.3 Gpx/s,
    np.bincount of a uint16 ``target * K + pred`` ~0.7 Gpx/s, the same in int64 with a
    mask ~0.2-0.35 Gpx/s, torch.bincount ~0.6 Gpx/s. calcHist has ~40 us of fixed cost,
    so small inputs take the bincount.
    """
    n = target.size
    if n >= _CV_MIN_PIXELS:
        t = target.reshape(-1) if target.flags.c_contiguous else np.ascontiguousarray(target).reshape(-1)
        p = pred.reshape(-1) if pred.flags.c_contiguous else np.ascontiguousarray(pred).reshape(-1)
        out = np.zeros((rows, num_classes), np.int64)
        for s in range(0, n, _CV_CHUNK):
            tc = t[s:s + _CV_CHUNK].reshape(1, -1)
            pc = p[s:s + _CV_CHUNK].reshape(1, -1)
            h = cv2.calcHist([tc, pc], [0, 1], None, [rows, num_classes], [0, rows, 0, num_classes])
            out += h.astype(np.int64)
        return out
    idx = target.astype(np.uint16)  # rows * K <= 256 * 256: the combined index fits uint16
    idx *= num_classes
    idx += pred
    return np.bincount(idx.reshape(-1), minlength=rows * num_classes)[: rows * num_classes].reshape(rows, num_classes)


def _cm_wide(pred: np.ndarray, target: np.ndarray, num_classes: int, ignore_index: int | None,
             in_range: bool) -> np.ndarray:
    """Counting for labels that do not fit uint8 (K > 256, a negative ignore index, values > 255)."""
    K = num_classes
    p = pred.astype(np.int64, copy=False)
    t = target.astype(np.int64, copy=False)
    if not in_range:
        if ignore_index is None:
            raise ValueError(bad_target_message(target, K, None))
        valid = t != ignore_index
        t, p = t[valid], p[valid]
        if t.size and (int(t.min()) < 0 or int(t.max()) >= K):
            raise ValueError(bad_target_message(t, K, ignore_index))
    return np.bincount((t * K + p).reshape(-1), minlength=K * K).reshape(K, K).astype(np.int64, copy=False)


def _cm_numpy(pred: np.ndarray, target: np.ndarray, num_classes: int, ignore_index: int | None) -> np.ndarray:
    K = num_classes
    if pred.size == 0:
        return np.zeros((K, K), np.int64)
    pmin = 0 if pred.dtype.kind == "u" else int(pred.min())
    pmax = int(pred.max())
    if pmin < 0 or pmax >= K:  # allowed where the target is ignored (not scored); cleared to 0 there
        pred = scored_pred(pred, target, K, ignore_index)
    tmin = 0 if target.dtype.kind == "u" else int(target.min())
    tmax = int(target.max())

    if K <= 256 and tmin >= 0 and tmax <= 255:
        p8 = pred if pred.dtype == np.uint8 else pred.astype(np.uint8)
        t8 = target if target.dtype == np.uint8 else target.astype(np.uint8)
        rows = max(K, tmax + 1)
        counts = _count_u8(t8, p8, rows, K)
        if rows > K:  # target values >= K: allowed only for the ignore index
            extra = np.flatnonzero(counts[K:].any(axis=1)) + K
            if any(v != ignore_index for v in extra.tolist()):
                raise ValueError(bad_target_message(np.asarray(extra), K, ignore_index))
            counts = counts[:K]
        cm = np.ascontiguousarray(counts, dtype=np.int64)
    else:
        cm = _cm_wide(pred, target, K, ignore_index, in_range=tmin >= 0 and tmax < K)
    if ignore_index is not None and 0 <= ignore_index < K:
        cm = cm.copy() if not cm.flags.writeable else cm
        cm[ignore_index] = 0
    return cm


def _cm_torch_native(pred, target, num_classes: int, ignore_index: int | None):
    """Confusion matrix computed with torch on the tensors' device (used for CUDA & co.)."""
    import torch

    K = num_classes
    if pred.numel() == 0:
        return torch.zeros((K, K), dtype=torch.int64, device=pred.device)
    p = pred.reshape(-1).long()
    t = target.reshape(-1).long()
    valid = t != ignore_index if ignore_index is not None else torch.ones_like(t, dtype=torch.bool)
    bad_t = valid & ((t < 0) | (t >= K))
    bad_p = valid & ((p < 0) | (p >= K))  # where the target is ignored, any prediction is accepted
    stats = torch.stack([bad_p.sum(), bad_t.sum()]).tolist()  # one device sync for all checks
    if stats[0]:
        raise ValueError(bad_pred_message(p[valid].cpu().numpy(), K, ignore_index))
    if stats[1]:
        raise ValueError(bad_target_message(t.cpu().numpy(), K, ignore_index))
    idx = torch.where(valid, t * K + p, torch.full_like(t, K * K))  # ignored pixels -> one spare bin
    return torch.bincount(idx, minlength=K * K + 1)[: K * K].reshape(K, K)


def confusion_matrix(pred: Any, target: Any, num_classes: int, ignore_index: int | None = None):
    """``(K, K)`` int64 confusion matrix, rows = ground truth, columns = prediction.

    ``pred`` and ``target`` are integer label maps of the same shape (one image HxW, a
    batch NxHxW, any shape). numpy in -> numpy out; a torch tensor in -> torch int64
    tensor out on the same device (CPU tensors are counted through numpy without a copy).
    Pixels whose target equals ``ignore_index`` are left out (also when the ignore index
    lies in [0, K): its row is then all zero), whatever the prediction holds there (the
    ignore value included). Raises ValueError for mismatched shapes, float inputs,
    predictions outside [0, K) at scored pixels and targets outside [0, K) that are not
    the ignore index.
    """
    num_classes, ignore_index = check_args(num_classes, ignore_index)
    check_shapes(shape_of(pred), shape_of(target))
    tp, tt = is_tensor(pred), is_tensor(target)
    if not (tp or tt):
        return _cm_numpy(to_numpy(pred, "pred"), to_numpy(target, "target"), num_classes, ignore_index)
    torch = torch_module()
    device = pred.device if tp else target.device
    if tp and tt and pred.device != target.device:
        raise ValueError(f"pred is on {pred.device} but target is on {target.device}")
    if device.type != "cpu":
        pred_t = pred if tp else torch.as_tensor(np.asarray(pred), device=device)
        target_t = target if tt else torch.as_tensor(np.asarray(target), device=device)
        check_int_dtype(pred_t.dtype, "pred")
        check_int_dtype(target_t.dtype, "target")
        return _cm_torch_native(pred_t, target_t, num_classes, ignore_index)
    cm = _cm_numpy(to_numpy(pred, "pred"), to_numpy(target, "target"), num_classes, ignore_index)
    return torch.from_numpy(cm)


class ConfusionMatrix:
    """Streaming confusion matrix: ``update`` per image or batch, read ``matrix`` at the end.

    Updates with tensors on an accelerator are summed on that device; they are moved to
    the CPU only when :attr:`matrix` is read.
    """

    def __init__(self, num_classes: int, ignore_index: int | None = None):
        self.num_classes, self.ignore_index = check_args(num_classes, ignore_index)
        self._host = np.zeros((self.num_classes, self.num_classes), np.int64)
        self._devices: dict[Any, Any] = {}  # torch.device -> int64 tensor

    def update(self, pred: Any, target: Any):
        """Add one image (HxW) or a batch (NxHxW); returns this update's (K, K) matrix."""
        m = confusion_matrix(pred, target, self.num_classes, self.ignore_index)
        if is_tensor(m):
            if m.device.type == "cpu":
                self._host += m.numpy()
            elif m.device in self._devices:
                self._devices[m.device] += m
            else:
                self._devices[m.device] = m.clone()
        else:
            self._host += m
        return m

    @property
    def matrix(self) -> np.ndarray:
        """The (K, K) int64 sum over every update (a copy)."""
        out = self._host.copy()
        for acc in self._devices.values():
            out += acc.cpu().numpy()
        return out

    def reset(self) -> None:
        self._host[:] = 0
        self._devices.clear()

    def merge(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        """Add another accumulator's counts into this one (same K and ignore index)."""
        if not isinstance(other, ConfusionMatrix):
            raise TypeError(f"cannot merge {type(other).__name__} into ConfusionMatrix")
        if (other.num_classes, other.ignore_index) != (self.num_classes, self.ignore_index):
            raise ValueError(
                f"cannot merge confusion matrices with (num_classes, ignore_index) "
                f"{(other.num_classes, other.ignore_index)} and {(self.num_classes, self.ignore_index)}"
            )
        self._host += other._host
        for dev, acc in other._devices.items():
            if dev in self._devices:
                self._devices[dev] += acc
            else:
                self._devices[dev] = acc.clone()
        return self

    def __iadd__(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        return self.merge(other)

    def __repr__(self) -> str:
        return (f"ConfusionMatrix(num_classes={self.num_classes}, ignore_index={self.ignore_index}, "
                f"pixels={int(self.matrix.sum())})")
