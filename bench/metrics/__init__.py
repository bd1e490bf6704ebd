"""The one metric implementation of segbench: confusion matrix, IoU family, boundary scores.

Everything per pixel is derived from a ``(K, K)`` int64 confusion matrix whose rows are
the ground truth and whose columns are the prediction (:mod:`.confusion`). Pixels whose
target equals ``ignore_index`` are left out of every count. Inputs are integer label maps
(numpy arrays or torch tensors, any integer dtype); floats are refused, so that a
forgotten ``argmax`` is an error and not a silently wrong number (:mod:`.labels`).
:mod:`.summary` turns a matrix into scores (the three mIoU conventions are documented
there), :mod:`.boundary` is the boundary F1 of a label map, :mod:`.scorer` accumulates all
of them over a split, and :mod:`.boundary_matching` / :mod:`.boundary_pr` are the
BSDS500 boundary precision/recall (ODS, OIS, AP) of an edge-strength map.
"""

from bench.metrics.boundary import boundary_f1
from bench.metrics.confusion import ConfusionMatrix, confusion_matrix
from bench.metrics.scorer import Scorer
from bench.metrics.summary import CONVENTIONS, image_miou, summarize

__all__ = ["CONVENTIONS", "ConfusionMatrix", "Scorer", "boundary_f1", "confusion_matrix", "image_miou", "summarize"]
