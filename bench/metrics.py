"""The one metric implementation of segbench: confusion matrix, IoU family, boundary F1.

Everything is derived from a ``(K, K)`` int64 confusion matrix whose rows are the ground
truth and whose columns are the prediction. Pixels whose target equals ``ignore_index``
are left out of every count. Inputs are integer label maps (numpy arrays or torch
tensors, any integer dtype); floats are refused, so that a forgotten ``argmax`` is an
error and not a silently wrong number.

mIoU conventions (:data:`CONVENTIONS`)
--------------------------------------
Published mIoU figures differ in how they treat a class that is absent from an image or
from the whole split. segbench computes all three and records them all
(``miou_by_convention``); ``miou`` is the one chosen by ``convention``:

``"mmseg"`` (default) -- reproduces MMSegmentation's ``IoUMetric`` / ``mean_iou``.
    Per-class IoU = TP / (TP + FP + FN) on the confusion matrix summed over the whole
    split. A class with TP + FP + FN = 0 (in neither the ground truth nor the prediction
    of any image) has IoU NaN and is left out of the mean (``np.nanmean``). A class that
    is only predicted (FP > 0, no GT) has IoU 0 and counts.
``"smp"`` -- reproduces segmentation_models_pytorch
    ``iou_score(tp, fp, fn, tn, reduction="macro", zero_division=1.0)`` with statistics
    summed over all images: a class absent from both prediction and ground truth of the
    whole split counts as IoU 1.0 in the mean over all K classes.
``"per-image"`` -- Keras ``tf.keras.metrics.MeanIoU`` applied to each image on its own
    and then averaged over images: for one image, IoU is computed from that image's
    matrix, classes whose TP + FP + FN is 0 *in that image* are left out of that image's
    mean (Keras divides by the number of classes with a non-zero denominator), and the
    split's figure is the plain mean of the per-image mIoUs. One documented difference:
    an image with no scored pixel at all (all ignore) has mIoU NaN here and is left out of
    the mean over images; Keras' ``divide_no_nan`` would give it 0. This convention needs
    the per-image matrices, so it is available from :class:`Scorer` (or by passing
    ``per_image_miou`` -- a list of :func:`image_miou` values -- to :func:`summarize`).

Whatever the convention, the per-class list ``iou`` is the mmseg one (NaN for a class
with TP + FP + FN = 0 over the split) and ``acc`` is per-class recall TP / (TP + FN), NaN
for a class with no GT pixel; ``mean_acc`` is its NaN-skipping mean (MMSegmentation's
mAcc), ``pixel_acc`` = trace / total, ``fwiou`` = sum over classes with GT pixels of
(GT pixel frequency x IoU). A matrix with no pixel at all gives NaN for every figure.

Boundary F1 (:func:`boundary_f1`)
---------------------------------
The BF score of Csurka et al., "What is a good evaluation measure for semantic
segmentation?" (BMVC 2013), as used by SegNet. See :func:`boundary_f1` for the exact
definition of boundaries, tolerance, ignore pixels and empty cases.
"""

from __future__ import annotations

import math
import sys
from functools import lru_cache
from typing import Any, Sequence

import cv2
import numpy as np

CONVENTIONS: tuple[str, ...] = ("mmseg", "smp", "per-image")

#: cv2.calcHist counts into float32, exact up to 2**24 per bin: never give it more pixels at once
_CV_CHUNK = 1 << 24
#: below this many pixels np.bincount wins (cv2.calcHist has ~40 us of fixed cost)
_CV_MIN_PIXELS = 1 << 15
_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


# ---------------------------------------------------------------------------------------
# input handling
# ---------------------------------------------------------------------------------------
def _torch():
    """The torch module if it has been imported (a tensor cannot exist otherwise)."""
    return sys.modules.get("torch")


def _is_tensor(x: Any) -> bool:
    torch = _torch()
    return torch is not None and isinstance(x, torch.Tensor)


def _check_int_dtype(dtype: Any, name: str) -> None:
    kind = np.dtype(dtype).kind if not hasattr(dtype, "is_floating_point") else None
    if kind is not None and kind in "biu":
        return
    if kind is None and not (dtype.is_floating_point or dtype.is_complex):
        return
    raise ValueError(
        f"{name} has dtype {dtype}; expected integer class indices "
        f"(floats are refused: take the argmax over the class axis and cast to an integer type)"
    )


def _check_args(num_classes: int, ignore_index: int | None) -> tuple[int, int | None]:
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, not {num_classes!r}")
    if ignore_index is not None:
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
            raise ValueError(f"ignore_index must be an integer or None, not {ignore_index!r}")
        ignore_index = int(ignore_index)
    return int(num_classes), ignore_index


def _check_shapes(pred_shape: Sequence[int], target_shape: Sequence[int]) -> None:
    if tuple(pred_shape) != tuple(target_shape):
        raise ValueError(
            f"prediction and target sizes differ: pred has shape {tuple(pred_shape)}, "
            f"target has shape {tuple(target_shape)}"
        )


def _to_numpy(x: Any, name: str) -> np.ndarray:
    """Integer label array as numpy (torch CPU tensors without a copy); bool -> uint8."""
    if _is_tensor(x):
        x = x.detach()
        if x.device.type != "cpu":
            x = x.cpu()
        _check_int_dtype(x.dtype, name)
        a = x.numpy()
    else:
        a = np.asarray(x)
        _check_int_dtype(a.dtype, name)
    if a.dtype == np.bool_:
        a = a.view(np.uint8)
    return a


def _bad_target_message(values: np.ndarray, num_classes: int, ignore_index: int | None) -> str:
    bad = (values < 0) | (values >= num_classes)
    if ignore_index is not None:
        bad &= values != ignore_index
    example = np.unique(values[bad])[:5].tolist()
    if ignore_index is None:
        return (f"target contains label value(s) {example} outside [0, {num_classes}) "
                f"(no ignore index is set)")
    return (f"target contains label value(s) {example} that are neither a class in "
            f"[0, {num_classes}) nor the ignore index {ignore_index}")


def _bad_pred_message(values: np.ndarray, num_classes: int) -> str:
    bad = (values < 0) | (values >= num_classes)
    example = np.unique(values[bad])[:5].tolist()
    return f"pred contains class index(es) {example} outside [0, {num_classes})"


# ---------------------------------------------------------------------------------------
# confusion matrix
# ---------------------------------------------------------------------------------------
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


def _cm_numpy(pred: np.ndarray, target: np.ndarray, num_classes: int, ignore_index: int | None) -> np.ndarray:
    K = num_classes
    if pred.size == 0:
        return np.zeros((K, K), np.int64)
    pmin = 0 if pred.dtype.kind == "u" else int(pred.min())
    pmax = int(pred.max())
    if pmin < 0 or pmax >= K:
        raise ValueError(_bad_pred_message(pred, K))
    tmin = 0 if target.dtype.kind == "u" else int(target.min())
    tmax = int(target.max())
    ignore_in_range = ignore_index is not None and 0 <= ignore_index < K

    if K <= 256 and tmin >= 0 and tmax <= 255:
        p8 = pred if pred.dtype == np.uint8 else pred.astype(np.uint8)
        t8 = target if target.dtype == np.uint8 else target.astype(np.uint8)
        rows = max(K, tmax + 1)
        counts = _count_u8(t8, p8, rows, K)
        if rows > K:  # target values >= K: allowed only for the ignore index
            extra = np.flatnonzero(counts[K:].any(axis=1)) + K
            if any(v != ignore_index for v in extra.tolist()):
                raise ValueError(_bad_target_message(np.asarray(extra), K, ignore_index))
            counts = counts[:K]
        cm = np.ascontiguousarray(counts, dtype=np.int64)
    else:  # wide labels (K > 256, negative ignore index, int32 values > 255 ...)
        p = pred.astype(np.int64, copy=False)
        t = target.astype(np.int64, copy=False)
        if tmin < 0 or tmax >= K:
            if ignore_index is None:
                raise ValueError(_bad_target_message(target, K, None))
            valid = t != ignore_index
            t, p = t[valid], p[valid]
            if t.size and (int(t.min()) < 0 or int(t.max()) >= K):
                raise ValueError(_bad_target_message(t, K, ignore_index))
        cm = np.bincount((t * K + p).reshape(-1), minlength=K * K).reshape(K, K).astype(np.int64, copy=False)
    if ignore_in_range:
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
    stats = torch.stack([p.min(), p.max(), bad_t.sum()]).tolist()  # one device sync for all checks
    if stats[0] < 0 or stats[1] >= K:
        raise ValueError(_bad_pred_message(p.cpu().numpy(), K))
    if stats[2]:
        raise ValueError(_bad_target_message(t.cpu().numpy(), K, ignore_index))
    idx = torch.where(valid, t * K + p, torch.full_like(t, K * K))  # ignored pixels -> one spare bin
    return torch.bincount(idx, minlength=K * K + 1)[: K * K].reshape(K, K)


def confusion_matrix(pred: Any, target: Any, num_classes: int, ignore_index: int | None = None):
    """``(K, K)`` int64 confusion matrix, rows = ground truth, columns = prediction.

    ``pred`` and ``target`` are integer label maps of the same shape (one image HxW, a
    batch NxHxW, any shape). numpy in -> numpy out; a torch tensor in -> torch int64
    tensor out on the same device (CPU tensors are counted through numpy without a copy).
    Pixels whose target equals ``ignore_index`` are left out (also when the ignore index
    lies in [0, K): its row is then all zero). Raises ValueError for mismatched shapes,
    float inputs, predictions outside [0, K) and targets outside [0, K) that are not the
    ignore index.
    """
    num_classes, ignore_index = _check_args(num_classes, ignore_index)
    _check_shapes(tuple(pred.shape) if hasattr(pred, "shape") else np.shape(pred),
                  tuple(target.shape) if hasattr(target, "shape") else np.shape(target))
    tp, tt = _is_tensor(pred), _is_tensor(target)
    if tp or tt:
        torch = _torch()
        device = pred.device if tp else target.device
        if tp and tt and pred.device != target.device:
            raise ValueError(f"pred is on {pred.device} but target is on {target.device}")
        if device.type != "cpu":
            pred_t = pred if tp else torch.as_tensor(np.asarray(pred), device=device)
            target_t = target if tt else torch.as_tensor(np.asarray(target), device=device)
            _check_int_dtype(pred_t.dtype, "pred")
            _check_int_dtype(target_t.dtype, "target")
            return _cm_torch_native(pred_t, target_t, num_classes, ignore_index)
        cm = _cm_numpy(_to_numpy(pred, "pred"), _to_numpy(target, "target"), num_classes, ignore_index)
        return torch.from_numpy(cm)
    return _cm_numpy(_to_numpy(pred, "pred"), _to_numpy(target, "target"), num_classes, ignore_index)


class ConfusionMatrix:
    """Streaming confusion matrix: ``update`` per image or batch, read ``matrix`` at the end.

    Updates with tensors on an accelerator are summed on that device; they are moved to
    the CPU only when :attr:`matrix` is read.
    """

    def __init__(self, num_classes: int, ignore_index: int | None = None):
        self.num_classes, self.ignore_index = _check_args(num_classes, ignore_index)
        self._host = np.zeros((self.num_classes, self.num_classes), np.int64)
        self._devices: dict[Any, Any] = {}  # torch.device -> int64 tensor

    def update(self, pred: Any, target: Any):
        """Add one image (HxW) or a batch (NxHxW); returns this update's (K, K) matrix."""
        m = confusion_matrix(pred, target, self.num_classes, self.ignore_index)
        if _is_tensor(m):
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
        return f"ConfusionMatrix(num_classes={self.num_classes}, ignore_index={self.ignore_index}, pixels={int(self.matrix.sum())})"


# ---------------------------------------------------------------------------------------
# scores from a matrix
# ---------------------------------------------------------------------------------------
def _nanmean(values: Any) -> float:
    a = np.asarray(values, dtype=np.float64).reshape(-1)
    a = a[~np.isnan(a)]
    return float(a.mean()) if a.size else math.nan


def _as_matrix(matrix: Any) -> np.ndarray:
    if _is_tensor(matrix):
        matrix = matrix.detach().cpu().numpy()
    cm = np.asarray(matrix)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be square (K, K), got shape {cm.shape}")
    return cm.astype(np.float64)


def _iou(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class IoU (NaN where TP+FP+FN = 0) and the union counts."""
    tp = np.diag(cm)
    union = cm.sum(axis=1) + cm.sum(axis=0) - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
    return iou, union


def image_miou(matrix: Any) -> float:
    """Keras-MeanIoU-style mIoU of one image's matrix: mean over classes with TP+FP+FN > 0.

    NaN when the image has no scored pixel (see the module docstring).
    """
    iou, _ = _iou(_as_matrix(matrix))
    return _nanmean(iou)


def summarize(matrix: Any, convention: str = "mmseg", per_image_miou: Sequence[float] | None = None) -> dict:
    """Scores of a (K, K) confusion matrix summed over a split.

    Returns ``miou`` (of ``convention``), ``iou`` (per class, NaN where undefined),
    ``pixel_acc``, ``mean_acc``, ``acc`` (per-class recall, NaN without GT pixels),
    ``fwiou``, ``miou_convention`` and ``miou_by_convention`` (all conventions; the
    ``"per-image"`` entry is None unless ``per_image_miou`` is given). The ``"per-image"``
    convention needs ``per_image_miou``: the :func:`image_miou` of every image's own
    matrix (NaN entries are skipped). All values are Python floats.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown mIoU convention {convention!r}; choose one of {', '.join(CONVENTIONS)}")
    if convention == "per-image" and per_image_miou is None:
        raise ValueError("the per-image mIoU convention needs per_image_miou (one image_miou per image); "
                         "use Scorer, which tracks it")
    cm = _as_matrix(matrix)
    K = cm.shape[0]
    total = cm.sum()
    tp = np.diag(cm)
    gt = cm.sum(axis=1)
    iou, union = _iou(cm)
    with np.errstate(divide="ignore", invalid="ignore"):
        acc = np.where(gt > 0, tp / gt, np.nan)
    if total > 0:
        by = {"mmseg": _nanmean(iou), "smp": float(np.where(union > 0, iou, 1.0).mean())}
        pixel_acc = float(tp.sum() / total)
        has_gt = gt > 0
        fwiou = float(np.sum(gt[has_gt] / total * iou[has_gt]))
    else:
        by = {"mmseg": math.nan, "smp": math.nan}
        pixel_acc = fwiou = math.nan
    by["per-image"] = _nanmean(per_image_miou) if per_image_miou is not None else None
    return {
        "miou": by[convention],
        "iou": [float(v) for v in iou],
        "pixel_acc": pixel_acc,
        "mean_acc": _nanmean(acc),
        "acc": [float(v) for v in acc],
        "fwiou": fwiou,
        "miou_convention": convention,
        "miou_by_convention": by,
        "num_classes": K,
    }


# ---------------------------------------------------------------------------------------
# boundary F1
# ---------------------------------------------------------------------------------------
def _inner_boundary(mask8: np.ndarray, valid8: np.ndarray | None = None) -> np.ndarray:
    """uint8 0/1 mask -> uint8 0/1 one-pixel inner boundary, ``mask & ~erode(mask)``.

    The erosion uses the 3x3 cross (4-neighbours). cv2.erode pads with the maximum, so the
    image frame is not a boundary. With ``valid8`` (0 on ignore pixels) ignore pixels are
    wildcards: they count as inside the mask for the erosion, so a pixel whose only
    foreign neighbours are ignore pixels is no boundary, and no boundary pixel lies on
    an ignore pixel.
    """
    if valid8 is None:
        return mask8 - cv2.erode(mask8, _CROSS)
    eroded = cv2.erode(mask8 | (valid8 ^ 1), _CROSS)
    return mask8 & valid8 & (eroded ^ 1)


#: tolerances below this use a disk dilation, larger ones a distance transform (both exact)
_DILATE_MAX_TOL = 8.5


@lru_cache(maxsize=32)
def _disk(tol: float) -> np.ndarray:
    """Structuring element of all integer offsets (dy, dx) with dy^2 + dx^2 <= tol^2."""
    r = int(math.floor(tol))
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return ((yy * yy + xx * xx) <= tol * tol).astype(np.uint8)


def _matched(src: np.ndarray, dst: np.ndarray, tol: float) -> int:
    """How many pixels of the 0/1 map ``dst`` lie within Euclidean distance ``tol`` of a
    pixel of the 0/1 map ``src``.

    For small tolerances a dilation by the exact Euclidean disk (0.2 ms on 360x480)
    replaces the exact distance transform (4 ms); the two give identical answers, which
    the tests check.
    """
    if tol < _DILATE_MAX_TOL:
        return int(np.count_nonzero(cv2.dilate(src, _disk(tol)) & dst))
    dist = cv2.distanceTransform(src ^ 1, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return int(np.count_nonzero(dist[dst.view(bool)] <= tol))


def _boundary_f1_checked(pred: np.ndarray, target: np.ndarray, num_classes: int,
                         ignore_index: int | None, tolerance: float) -> float:
    H, W = target.shape
    if target.size == 0:
        return math.nan
    tol = tolerance * math.hypot(H, W)
    valid = (target != ignore_index) if ignore_index is not None else None
    if target.dtype == np.uint8:
        present = np.flatnonzero(np.bincount(target.reshape(-1), minlength=256))
    else:
        present = np.unique(target)
    classes = [int(c) for c in present if 0 <= c < num_classes and c != ignore_index]
    if not classes:
        return math.nan
    scores = []
    for c in classes:
        gm = target == c
        pm = pred == c
        both = gm | pm
        rows = np.flatnonzero(both.any(axis=1))
        cols = np.flatnonzero(both.any(axis=0))
        # crop to the two masks' bounding box plus one pixel (so that the erosion sees the
        # outside); every boundary pixel of both lies inside it, so matching is exact there
        r0, r1 = max(rows[0] - 1, 0), min(rows[-1] + 2, H)
        c0, c1 = max(cols[0] - 1, 0), min(cols[-1] + 2, W)
        g8 = np.ascontiguousarray(gm[r0:r1, c0:c1]).view(np.uint8)
        p8 = np.ascontiguousarray(pm[r0:r1, c0:c1]).view(np.uint8)
        if valid is None:
            gb, pb = _inner_boundary(g8), _inner_boundary(p8)
        else:
            v8 = np.ascontiguousarray(valid[r0:r1, c0:c1]).view(np.uint8)
            gb, pb = _inner_boundary(g8, v8), _inner_boundary(p8, v8)
        n_g = int(np.count_nonzero(gb))
        n_p = int(np.count_nonzero(pb))
        if n_g == 0 or n_p == 0:
            scores.append(1.0 if n_g == n_p else 0.0)
            continue
        precision = _matched(gb, pb, tol) / n_p
        recall = _matched(pb, gb, tol) / n_g
        scores.append(2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0)
    return float(np.mean(scores))


def _check_labels(pred: np.ndarray, target: np.ndarray, num_classes: int, ignore_index: int | None) -> None:
    """Range checks of :func:`confusion_matrix` without the counting."""
    if pred.size == 0:
        return
    if (pred.dtype.kind != "u" and int(pred.min()) < 0) or int(pred.max()) >= num_classes:
        raise ValueError(_bad_pred_message(pred, num_classes))
    bad = (target < 0) | (target >= num_classes)
    if ignore_index is not None:
        bad &= target != ignore_index
    if bad.any():
        raise ValueError(_bad_target_message(target, num_classes, ignore_index))


def boundary_f1(pred: Any, target: Any, num_classes: int, ignore_index: int | None = None,
                tolerance: float = 0.0075) -> float:
    """Boundary F1 (BF) score of one HxW image (Csurka et al. 2013, as used by SegNet).

    For each class present in the image's ground truth (ignore pixels aside):

    - boundaries: the one-pixel inner boundary ``mask & ~erode(mask)`` of the class mask
      in the prediction and in the ground truth, eroding with the 3x3 cross (a pixel is a
      boundary pixel when one of its 4 neighbours is not of the class). The image frame is
      not a boundary (outside the image counts as inside the mask).
    - ignore pixels (GT == ``ignore_index``) are excluded from both boundary sets, and
      they are wildcards for the erosion (counted as inside every class mask): an edge
      between a class and an ignored region is not a boundary in either map, since the
      true edge could be anywhere inside the ignored region. So a predicted edge that
      runs through or along an ignored region neither helps nor hurts.
    - matching: ``tol = tolerance * sqrt(H^2 + W^2)`` pixels (0.75 % of the diagonal by
      default); a boundary pixel matches when the Euclidean distance (exact distance
      transform) to the nearest boundary pixel of the other set is <= tol.
    - precision = matched fraction of predicted boundary pixels, recall = matched fraction
      of GT boundary pixels, F1 = 2PR / (P + R) (0 when P + R = 0).
    - empty cases: both boundary sets empty (e.g. the class fills the whole image in both)
      -> 1.0; exactly one empty -> 0.0.

    Returns the mean F1 over those classes, or NaN when the GT has no valid class.
    """
    num_classes, ignore_index = _check_args(num_classes, ignore_index)
    p = _to_numpy(pred, "pred")
    t = _to_numpy(target, "target")
    _check_shapes(p.shape, t.shape)
    if t.ndim != 2:
        raise ValueError(f"boundary_f1 scores one HxW image, got shape {t.shape}")
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0, not {tolerance!r}")
    _check_labels(p, t, num_classes, ignore_index)
    return _boundary_f1_checked(p, t, num_classes, ignore_index, float(tolerance))


# ---------------------------------------------------------------------------------------
# the scorer used by the runner and the evaluate command
# ---------------------------------------------------------------------------------------
class Scorer:
    """Accumulates every segbench metric over a split, one image (or batch) at a time.

    ``update(pred, target)`` takes one HxW image or an NxHxW batch (numpy or torch; each
    image of a batch counts as one image for the per-image mIoU and BF). ``result()``
    returns ``miou`` (of ``convention``), ``iou``, ``pixel_acc``, ``mean_acc``, ``acc``,
    ``fwiou``, ``bf`` (NaN-skipping mean BF over images, None with ``boundary=False``),
    ``miou_convention``, ``miou_by_convention`` (all three), ``n_images`` and
    ``confusion_matrix`` (list of lists). Per-image values are kept in ``image_miou`` and
    ``image_bf``.
    """

    def __init__(self, num_classes: int, ignore_index: int | None = None, convention: str = "mmseg",
                 boundary: bool = True, tolerance: float = 0.0075):
        if convention not in CONVENTIONS:
            raise ValueError(f"unknown mIoU convention {convention!r}; choose one of {', '.join(CONVENTIONS)}")
        if not tolerance >= 0:
            raise ValueError(f"tolerance must be >= 0, not {tolerance!r}")
        self.cm = ConfusionMatrix(num_classes, ignore_index)
        self.num_classes, self.ignore_index = self.cm.num_classes, self.cm.ignore_index
        self.convention = convention
        self.boundary = bool(boundary)
        self.tolerance = float(tolerance)
        self.image_miou: list[float] = []
        self.image_bf: list[float] = []

    def update(self, pred: Any, target: Any) -> None:
        pshape = tuple(pred.shape) if hasattr(pred, "shape") else np.shape(pred)
        tshape = tuple(target.shape) if hasattr(target, "shape") else np.shape(target)
        _check_shapes(pshape, tshape)
        if len(tshape) == 2:
            self._update_one(pred, target)
        elif len(tshape) == 3:
            for i in range(tshape[0]):
                self._update_one(pred[i], target[i])
        else:
            raise ValueError(f"Scorer.update takes an HxW image or an NxHxW batch, got shape {tshape}")

    def _update_one(self, pred: Any, target: Any) -> None:
        m = self.cm.update(pred, target)  # validates dtypes and ranges
        self.image_miou.append(image_miou(m))
        if self.boundary:
            p = _to_numpy(pred, "pred")
            t = _to_numpy(target, "target")
            self.image_bf.append(_boundary_f1_checked(p, t, self.num_classes, self.ignore_index, self.tolerance))

    @property
    def n_images(self) -> int:
        return len(self.image_miou)

    def result(self) -> dict:
        matrix = self.cm.matrix
        out = summarize(matrix, self.convention, per_image_miou=self.image_miou)
        out["bf"] = _nanmean(self.image_bf) if self.boundary else None
        out["n_images"] = self.n_images
        out["confusion_matrix"] = matrix.tolist()
        return out

    def reset(self) -> None:
        self.cm.reset()
        self.image_miou.clear()
        self.image_bf.clear()

    def merge(self, other: "Scorer") -> "Scorer":
        """Add another scorer's images (same classes, ignore index and boundary setting)."""
        if self.boundary != other.boundary or self.tolerance != other.tolerance:
            raise ValueError("cannot merge scorers with different boundary settings")
        self.cm.merge(other.cm)
        self.image_miou.extend(other.image_miou)
        self.image_bf.extend(other.image_bf)
        return self

    def __iadd__(self, other: "Scorer") -> "Scorer":
        return self.merge(other)
