"""Scores of a confusion matrix: the three mIoU conventions, per-class IoU, pixel/mean accuracy, fwIoU.

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
    whole split counts as IoU 1.0 in the mean over all K classes. With an ignore index
    inside [0, K) it is undefined: smp's ``get_stats`` refuses such an ignore index
    (ValueError), and counting the never-predicted void class as 1.0 is what no library
    does. So this convention is refused when chosen, and its ``miou_by_convention`` entry
    is None, when :func:`summarize` is told such an ``ignore_index``.
``"per-image"`` -- Keras ``tf.keras.metrics.MeanIoU`` applied to each image on its own
    and then averaged over images: for one image, IoU is computed from that image's
    matrix, classes whose TP + FP + FN is 0 *in that image* are left out of that image's
    mean (Keras divides by the number of classes with a non-zero denominator), and the
    split's figure is the plain mean of the per-image mIoUs. One documented difference:
    an image with no scored pixel at all (all ignore) has mIoU NaN here and is left out of
    the mean over images; Keras' ``divide_no_nan`` would give it 0. This convention needs
    the per-image matrices, so it is available from :class:`~bench.metrics.Scorer` (or by
    passing ``per_image_miou`` -- a list of :func:`image_miou` values -- to :func:`summarize`).

Whatever the convention, the per-class list ``iou`` is the mmseg one (NaN for a class
with TP + FP + FN = 0 over the split) and ``acc`` is per-class recall TP / (TP + FN), NaN
for a class with no GT pixel; ``mean_acc`` is its NaN-skipping mean (MMSegmentation's
mAcc), ``pixel_acc`` = trace / total, ``fwiou`` = sum over classes with GT pixels of
(GT pixel frequency x IoU). A matrix with no pixel at all gives NaN for every figure.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from bench.metrics.labels import is_tensor

CONVENTIONS: tuple[str, ...] = ("mmseg", "smp", "per-image")


def check_convention(convention: str, num_classes: int | None = None, ignore_index: int | None = None) -> None:
    """A known convention, and not ``smp`` with an ignore index inside [0, ``num_classes``)."""
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown mIoU convention {convention!r}; choose one of {', '.join(CONVENTIONS)}")
    if convention == "smp" and _ignore_is_class(num_classes, ignore_index):
        raise ValueError(f"the smp mIoU convention is undefined with the ignore index {ignore_index} inside the "
                         f"class range [0, {num_classes}) (segmentation_models_pytorch refuses it too); "
                         "use the mmseg convention or an ignore index outside the classes")


def _ignore_is_class(num_classes: int | None, ignore_index: int | None) -> bool:
    return num_classes is not None and ignore_index is not None and 0 <= ignore_index < num_classes


def nanmean(values: Any) -> float:
    """Mean of the non-NaN values as a Python float; NaN when there is none."""
    a = np.asarray(values, dtype=np.float64).reshape(-1)
    a = a[~np.isnan(a)]
    return float(a.mean()) if a.size else math.nan


def _as_matrix(matrix: Any) -> np.ndarray:
    if is_tensor(matrix):
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
    return nanmean(iou)


def summarize(matrix: Any, convention: str = "mmseg", per_image_miou: Sequence[float] | None = None,
              ignore_index: int | None = None) -> dict:
    """Scores of a (K, K) confusion matrix summed over a split.

    Returns ``miou`` (of ``convention``), ``iou`` (per class, NaN where undefined),
    ``pixel_acc``, ``mean_acc``, ``acc`` (per-class recall, NaN without GT pixels),
    ``fwiou``, ``miou_convention`` and ``miou_by_convention`` (all conventions; the
    ``"per-image"`` entry is None unless ``per_image_miou`` is given). The ``"per-image"``
    convention needs ``per_image_miou``: the :func:`image_miou` of every image's own
    matrix (NaN entries are skipped). All values are Python floats. ``ignore_index`` (the
    one the matrix was counted with) matters only inside [0, K): the ``smp`` convention is
    then refused, and its entry is None.
    """
    cm = _as_matrix(matrix)
    check_convention(convention, cm.shape[0], ignore_index)
    if convention == "per-image" and per_image_miou is None:
        raise ValueError("the per-image mIoU convention needs per_image_miou (one image_miou per image); "
                         "use Scorer, which tracks it")
    total = cm.sum()
    tp = np.diag(cm)
    gt = cm.sum(axis=1)
    iou, union = _iou(cm)
    with np.errstate(divide="ignore", invalid="ignore"):
        acc = np.where(gt > 0, tp / gt, np.nan)
    if total > 0:
        by = {"mmseg": nanmean(iou), "smp": float(np.where(union > 0, iou, 1.0).mean())}
        pixel_acc = float(tp.sum() / total)
        has_gt = gt > 0
        fwiou = float(np.sum(gt[has_gt] / total * iou[has_gt]))
    else:
        by = {"mmseg": math.nan, "smp": math.nan}
        pixel_acc = fwiou = math.nan
    if _ignore_is_class(cm.shape[0], ignore_index):
        by["smp"] = None
    by["per-image"] = nanmean(per_image_miou) if per_image_miou is not None else None
    return {
        "miou": by[convention],
        "iou": [float(v) for v in iou],
        "pixel_acc": pixel_acc,
        "mean_acc": nanmean(acc),
        "acc": [float(v) for v in acc],
        "fwiou": fwiou,
        "miou_convention": convention,
        "miou_by_convention": by,
        "num_classes": cm.shape[0],
    }
