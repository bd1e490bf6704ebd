"""The Scorer: every segbench metric accumulated over a split, one image or batch at a time."""

from __future__ import annotations

from typing import Any

from bench.metrics.boundary import boundary_f1_unchecked, check_tolerance
from bench.metrics.confusion import ConfusionMatrix
from bench.metrics.labels import check_shapes, shape_of, to_numpy
from bench.metrics.summary import check_convention, image_miou, nanmean, summarize


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
        check_convention(convention)
        check_tolerance(tolerance)
        self.cm = ConfusionMatrix(num_classes, ignore_index)
        self.num_classes, self.ignore_index = self.cm.num_classes, self.cm.ignore_index
        self.convention = convention
        self.boundary = bool(boundary)
        self.tolerance = float(tolerance)
        self.image_miou: list[float] = []
        self.image_bf: list[float] = []

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
        m = self.cm.update(pred, target)  # validates dtypes and ranges
        self.image_miou.append(image_miou(m))
        if self.boundary:
            p = to_numpy(pred, "pred")
            t = to_numpy(target, "target")
            self.image_bf.append(boundary_f1_unchecked(p, t, self.num_classes, self.ignore_index, self.tolerance))

    @property
    def n_images(self) -> int:
        return len(self.image_miou)

    def result(self) -> dict:
        matrix = self.cm.matrix
        out = summarize(matrix, self.convention, per_image_miou=self.image_miou)
        out["bf"] = nanmean(self.image_bf) if self.boundary else None
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
