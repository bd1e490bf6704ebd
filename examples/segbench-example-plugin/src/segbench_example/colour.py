"""``NearestColour``: a classical method that no entry point registers (example plugin).

It is run by its import spec: ``python -m bench run --method
segbench_example.colour:NearestColour --dataset stripes`` or ``method:
segbench_example.colour:NearestColour`` in a suite file.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from bench.datasets import Split
from bench.method import Method


@dataclasses.dataclass
class NearestColourSettings:
    max_train_images: int = 16  # mean colours are taken from the first N training images


class NearestColour(Method):
    """Each pixel gets the class whose mean training colour is nearest (example plugin)."""

    kind = "classical"
    Settings = NearestColourSettings

    def _fit(self, train: Split, val: Split | None) -> None:
        k = train.info.num_classes
        sums, counts = np.zeros((k, 3)), np.zeros(k)
        for i in range(min(len(train), self.settings.max_train_images)):
            sample = train[i]
            keep = sample.label.reshape(-1) < k  # the ignore index aside
            labels = sample.label.reshape(-1)[keep]
            sums += np.stack([np.bincount(labels, sample.image.reshape(-1, 3)[keep, c], k) for c in range(3)], 1)
            counts += np.bincount(labels, minlength=k)
        self.means = sums / np.maximum(counts, 1)[:, None]

    def predict(self, image: np.ndarray) -> np.ndarray:
        self._require_fitted()
        d = ((image[:, :, None, :].astype(np.float32) - self.means[None, None]) ** 2).sum(-1)
        return d.argmin(-1).astype(np.uint8)
