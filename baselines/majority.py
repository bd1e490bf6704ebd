"""The floor every method must clear: predict the most frequent training class everywhere."""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from bench.datasets.types import Split
from bench.method import Method


class MajorityClass(Method):
    """Predicts the most frequent training class everywhere (the floor to beat)."""

    kind = "classical"

    def _fit(self, train: Split, val: Split | None) -> None:
        k = train.info.num_classes
        counts = np.zeros(k, np.int64)
        for sample in tqdm(train, desc="majority: count classes", disable=not self.context.progress, leave=False):
            lab = sample.label.ravel()
            lab = lab[(lab >= 0) & (lab < k)]
            counts += np.bincount(lab, minlength=k)[:k]
        self.class_counts = counts
        self.majority = int(np.argmax(counts))

    def predict(self, image: np.ndarray) -> np.ndarray:
        self._require_fitted()
        return np.full(image.shape[:2], self.majority, dtype=np.int32)

    def num_parameters(self) -> int:
        return 1
