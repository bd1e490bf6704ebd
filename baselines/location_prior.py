"""The shape floor: predict, at each place of the frame, the class most often found there
in training, whatever the image shows.

On data whose subject always stands in the same place (CCP's centred, upright people, a
road camera's sky above road) this constant map scores far above the majority class, so a
method is only seen to read the image when it beats this row too (TextonBoost's location
potential, Shotton et al. 2006, is the same per-place class histogram). Training labels
are brought to one grid of relative positions (nearest neighbour, so frames of other
sizes and aspects share it), the classes are counted per grid cell, and each prediction
is the grid's argmax resized to the image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from baselines.state_files import load_arrays, save_arrays
from bench.datasets.types import Split
from bench.method import Capabilities, Method, MethodError


class LocationPrior(Method):
    """Per relative position, the most frequent training class (one map for every image)."""

    kind = "classical"
    capabilities = Capabilities(save=True)

    @dataclass
    class Settings:
        #: cells of the relative-position grid (rows, columns); labels are resized to it
        grid: tuple[int, int] = (64, 64)

        def __post_init__(self) -> None:
            self.grid = tuple(int(g) for g in self.grid)
            if len(self.grid) != 2 or min(self.grid) < 1:
                raise ValueError(f"grid must be two positive sizes (rows, columns), got {self.grid}")

    def _fit(self, train: Split, val: Split | None) -> None:
        k = train.info.num_classes
        rows, cols = self.settings.grid
        counts = np.zeros((rows * cols, k), np.int64)
        cell = np.arange(rows * cols, dtype=np.int64)
        for sample in tqdm(train, desc="location-prior: count classes", disable=not self.context.progress,
                           leave=False):
            lab = cv2.resize(sample.label.astype(np.int32), (cols, rows), interpolation=cv2.INTER_NEAREST).ravel()
            ok = (lab >= 0) & (lab < k)
            counts += np.bincount(cell[ok] * k + lab[ok], minlength=rows * cols * k).reshape(rows * cols, k)
        if counts.sum() == 0:
            raise MethodError("location-prior: the training split has no labelled pixel")
        self._set_counts(counts.reshape(rows, cols, k))

    def _set_counts(self, counts: np.ndarray) -> None:
        self.class_counts = counts
        # a cell no training label reached takes the overall majority class
        overall = int(counts.sum(axis=(0, 1)).argmax())
        prior = counts.argmax(axis=2).astype(np.int32)
        prior[counts.sum(axis=2) == 0] = overall
        self.prior = prior

    def predict(self, image: np.ndarray) -> np.ndarray:
        self._require_fitted()
        h, w = image.shape[:2]
        return cv2.resize(self.prior, (w, h), interpolation=cv2.INTER_NEAREST)

    def num_parameters(self) -> int:
        return int(self.prior.size)

    def _save_state(self, folder: Path) -> None:
        save_arrays(folder / "location_prior.npz", class_counts=self.class_counts)

    def _load_state(self, folder: Path) -> None:
        counts = load_arrays(folder / "location_prior.npz", "class_counts")["class_counts"].astype(np.int64)
        if counts.shape[:2] != tuple(self.settings.grid):
            raise MethodError(f"{folder}: counts on a {counts.shape[:2]} grid, settings say {self.settings.grid}")
        self._set_counts(counts)
