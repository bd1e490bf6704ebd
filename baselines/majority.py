"""The floor every method must clear: predict the most frequent training class everywhere."""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from bench.datasets.types import Split
from bench.methods import Method, register_method


@register_method("majority")
class MajorityClass(Method):
    """Predicts the most frequent training class everywhere (the floor to beat)."""

    kind = "classical"

    def fit(self, train: Split) -> None:
        info = train.info
        counts = np.zeros(info.num_classes, np.int64)
        for sample in tqdm(train, desc="majority: count classes", disable=not self.progress, leave=False):
            lab = sample.label.ravel()
            lab = lab[(lab >= 0) & (lab < info.num_classes)]
            counts += np.bincount(lab, minlength=info.num_classes)[: info.num_classes]
        self.class_counts = counts
        self.majority = int(np.argmax(counts))
        self.info = info

    def predict(self, image: np.ndarray) -> np.ndarray:
        self._require_fitted()
        return np.full(image.shape[:2], self.majority, dtype=np.int32)

    def num_parameters(self) -> int:
        return 1
