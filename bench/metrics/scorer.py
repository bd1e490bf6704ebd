"""The Scorer: every segbench metric accumulated over a split, one image or batch at a time."""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.metrics.boundary import boundary_f1_unchecked, check_tolerance
from bench.metrics.confusion import ConfusionMatrix
from bench.metrics.labels import check_shapes, shape_of, to_numpy
from bench.metrics.summary import check_convention, image_miou, nanmean, summarize

#: a per-image matrix is kept as uint32 when its pixel count is below this
_UINT32_LIMIT = 1 << 32


class Scorer:
    """Accumulates every segbench metric over a split, one image (or batch) at a time.

    ``update(pred, target)`` takes one HxW image or an NxHxW batch (numpy or torch; each
    image of a batch counts as one image for the per-image mIoU and BF). ``result()``
    returns ``miou`` (of ``convention``), ``iou``, ``pixel_acc``, ``mean_acc``, ``acc``,
    ``fwiou``, ``bf`` (NaN-skipping mean BF over images, None with ``boundary=False``),
    ``miou_convention``, ``miou_by_convention`` (all three), ``n_images`` and
    ``confusion_matrix`` (list of lists). Per-image values are kept in ``image_miou`` and
    ``image_bf``, and each image's own confusion matrix in :meth:`image_matrices` (what the
    image-level bootstrap of :mod:`bench.metrics.bootstrap` resamples).
    """

    def __init__(self, num_classes: int, ignore_index: int | None = None, convention: str = "mmseg",
                 boundary: bool = True, tolerance: float = 0.0075):
        check_tolerance(tolerance)
        self.cm = ConfusionMatrix(num_classes, ignore_index)
        self.num_classes, self.ignore_index = self.cm.num_classes, self.cm.ignore_index
        check_convention(convention, self.num_classes, self.ignore_index)
        self.convention = convention
        self.boundary = bool(boundary)
        self.tolerance = float(tolerance)
        self.image_miou: list[float] = []
        self.image_bf: list[float] = []
        self._matrices: list[np.ndarray] = []

    def update(self, pred: Any, target: Any) -> None:
        tshape = shape_of(target)
        check_shapes(shape_of(pred), tshape)
        if len(tshape) == 2:
            self._update_one(pred, target)
        elif len(tshape) == 3:
            for i in range(tshape[0]):
                self._update_one(pred[i], target[i])
        else:
            raise ValueError(f"Scorer.update takes an HxW image or an NxHxW batch, got shape {tshape}")

    def _update_one(self, pred: Any, target: Any) -> None:
        m = to_numpy(self.cm.update(pred, target), "confusion matrix")  # validates dtypes and ranges
        self.image_miou.append(image_miou(m))
        self._matrices.append(m.astype(np.uint32) if m.sum() < _UINT32_LIMIT else m)
        if self.boundary:
            p = to_numpy(pred, "pred")
            t = to_numpy(target, "target")
            self.image_bf.append(boundary_f1_unchecked(p, t, self.num_classes, self.ignore_index, self.tolerance))

    @property
    def n_images(self) -> int:
        return len(self.image_miou)

    def image_matrices(self) -> np.ndarray:
        """(N, K, K) confusion matrix of each image, in update order (uint32 where the counts
        fit, as they do for any image under 4 gigapixels; else int64)."""
        if not self._matrices:
            return np.zeros((0, self.num_classes, self.num_classes), np.uint32)
        return np.stack(self._matrices)

    def result(self) -> dict:
        matrix = self.cm.matrix
        out = summarize(matrix, self.convention, per_image_miou=self.image_miou, ignore_index=self.ignore_index)
        out["bf"] = nanmean(self.image_bf) if self.boundary else None
        out["n_images"] = self.n_images
        out["confusion_matrix"] = matrix.tolist()
        return out

    def reset(self) -> None:
        self.cm.reset()
        self.image_miou.clear()
        self.image_bf.clear()
        self._matrices.clear()

    def merge(self, other: "Scorer") -> "Scorer":
        """Add another scorer's images (same classes, ignore index and boundary setting)."""
        if self.boundary != other.boundary or self.tolerance != other.tolerance:
            raise ValueError("cannot merge scorers with different boundary settings")
        self.cm.merge(other.cm)
        self.image_miou.extend(other.image_miou)
        self.image_bf.extend(other.image_bf)
        self._matrices.extend(other._matrices)
        return self

    def __iadd__(self, other: "Scorer") -> "Scorer":
        return self.merge(other)
