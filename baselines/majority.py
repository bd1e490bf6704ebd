"""The floor every method must clear: predict the most frequent training class everywhere."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from baselines.state_files import load_arrays, save_arrays
from bench.datasets.types import Split
from bench.method import Capabilities, Method


class MajorityClass(Method):
    """Predicts the most frequent training class everywhere (the floor to beat)."""

    kind = "classical"
    capabilities = Capabilities(save=True)

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

    def _save_state(self, folder: Path) -> None:
        save_arrays(folder / "majority.npz", class_counts=self.class_counts)

    def _load_state(self, folder: Path) -> None:
        self.class_counts = load_arrays(folder / "majority.npz", "class_counts")["class_counts"].astype(np.int64)
        self.majority = int(np.argmax(self.class_counts))
