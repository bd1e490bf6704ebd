"""Stage (b) shared by the classical methods: label the regions of a partition.

A :class:`RegionLabeller` is a :class:`~bench.method.Method` whose subclasses only say how
to cut an image into regions (:meth:`RegionLabeller.partition`). Everything else is here:

* ``fit`` learns a texton dictionary (:mod:`baselines.textons`) from a seeded subset of the
  training images, partitions (a capped, seeded subset of) the training images, describes every
  region with :func:`baselines.features.region_features`, takes each region's majority
  ground-truth class as its target (regions whose pixels are all ignored are skipped),
  caps the number of training regions by seeded sampling and trains a scikit-learn
  classifier (:class:`baselines.region_classifier.RegionClassifier`), with sample weights proportional to region area by default so that the
  classifier optimises pixels, as the metrics do, and classes balanced by pixel mass
  (mIoU weighs every class alike); with ``context`` (the default) each region's features
  are followed by the boundary-weighted mean features of its neighbours;
* ``predict`` = partition -> features -> classifier -> paint each region with its class;
  :meth:`RegionLabeller.predict_with_stages` also returns the seconds each stage took
  (what ``bench speed --method`` reports next to the whole ``predict``);
* :meth:`RegionLabeller.partition_oracle` gives the best labelling the partition allows
  (each region takes its majority ground-truth class): the runner scores it with the
  metric code to separate partition errors from classifier errors;
* :meth:`RegionLabeller.extra_metrics` reports the mean number of regions per predicted image.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from abc import abstractmethod
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from tqdm.auto import tqdm

from baselines.features import context_features, region_adjacency, region_features, region_majority_labels
from baselines.preprocess import as_rgb, relabel_contiguous
from baselines.region_classifier import RegionClassifier
from baselines.state_files import load_arrays, save_arrays
from baselines.textons import TextonDictionary, sample_responses
from bench.datasets.types import DatasetInfo, Split
from bench.method import Capabilities, Method, MethodError

CLASSIFIERS = ("et", "rf", "hgb", "logreg")
SAMPLE_WEIGHTS = ("area", "sqrt_area", "none")
CLASS_WEIGHTS = ("none", "balanced")
#: the texton dictionary is learned from the filter responses of this many random pixels of
#: each of at most TEXTON_IMAGES training images (a seeded subset of those fitted on)
TEXTON_IMAGES = 60
TEXTON_PIXELS_PER_IMAGE = 2000


@dataclasses.dataclass
class RegionSettings:
    """Knobs of stage (b), shared by every region labeller."""

    #: "hgb" (histogram gradient boosting, the most accurate), "et" (extremely randomised
    #: trees: fits twice as fast), "rf" (random forest) or "logreg" (standardised logistic
    #: regression); all run on one thread
    classifier: str = "hgb"
    #: at most this many training images are partitioned (a seeded random subset; the
    #: default takes every training image of CamVid and CCP)
    max_train_images: int = 1000
    #: at most this many training regions reach the classifier (seeded random sample); the
    #: default takes every region of CamVid train (at most about 125,000), as the 40,000 of
    #: releases before session 10 did not (docs/RESULTS.md: +3.7 mIoU for superpixel-crf on val)
    max_train_regions: int = 150000
    #: boosting iterations (trees per class) / number of trees
    n_estimators: int = 100
    #: "hgb" shrinkage (fewer iterations with a larger rate predict faster: scikit-learn
    #: spends about 25-40 us per tree and class on a call, whatever the number of regions)
    learning_rate: float = 0.1
    #: weight of a training region: "area" (pixels, matches pixel metrics), "sqrt_area" or "none"
    sample_weight: str = "area"
    #: "balanced" reweights classes by inverse pixel frequency (helps rare classes in mIoU)
    class_weight: str = "balanced"
    #: append the mean features of each region's neighbours (boundary-weighted) as context
    context: bool = True
    #: textons (k-means words of the TextonBoost filter bank) whose per-region histogram is a
    #: feature; 0: none
    textons: int = 64

    def __post_init__(self) -> None:
        if self.classifier not in CLASSIFIERS:
            raise ValueError(f"classifier must be one of {CLASSIFIERS}, not {self.classifier!r}")
        if self.sample_weight not in SAMPLE_WEIGHTS:
            raise ValueError(f"sample_weight must be one of {SAMPLE_WEIGHTS}, not {self.sample_weight!r}")
        if self.class_weight not in CLASS_WEIGHTS:
            raise ValueError(f"class_weight must be one of {CLASS_WEIGHTS}, not {self.class_weight!r}")
        if self.textons < 0:
            raise ValueError(f"textons must be >= 0, not {self.textons}")
        for name in ("max_train_images", "max_train_regions", "n_estimators"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, not {getattr(self, name)}")
        if not 0.0 < self.learning_rate <= 1.0:
            raise ValueError(f"learning_rate must be in (0, 1], not {self.learning_rate}")


@dataclasses.dataclass
class WorkingCopySettings(RegionSettings):
    """Knobs of partitions computed on a downscaled, smoothed Lab copy of the image
    (:func:`baselines.preprocess.working_lab`), whose regions are scaled back."""

    #: the partition is computed on a copy whose longer side is at most this (pixels)
    work_size: int = 160
    #: Gaussian smoothing of the working Lab image (working pixels)
    smooth_sigma: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.work_size < 8:
            raise ValueError(f"work_size must be >= 8, not {self.work_size}")
        if self.smooth_sigma < 0:
            raise ValueError(f"smooth_sigma must be >= 0, not {self.smooth_sigma}")


@dataclasses.dataclass
class RegionData:
    """Everything ``fit`` keeps about one training image's partition."""

    features: np.ndarray  # (n, d) float32
    targets: np.ndarray  # (n,) majority class, -1 when all ignore
    area: np.ndarray  # (n,) pixels
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


class RegionLabeller(Method):
    """Two-stage method: :meth:`partition` (subclass) then a region classifier (here)."""

    kind = "classical"
    Settings = RegionSettings
    capabilities = Capabilities(partition_oracle=True, stages=True, save=True)

    def __init__(self, settings: Any = None):
        super().__init__(settings)
        self.classifier: RegionClassifier | None = None
        self.textons: TextonDictionary | None = None
        self._regions_seen: list[int] = []
        self.train_regions_per_image: float | None = None
        self._stage_seconds: dict[str, float] | None = None  # set only inside predict_with_stages

    # -- stage timing ---------------------------------------------------------------------
    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the block as stage ``name`` when :meth:`predict_with_stages` runs; else nothing."""
        if self._stage_seconds is None:
            yield
            return
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._stage_seconds[name] = self._stage_seconds.get(name, 0.0) + time.perf_counter() - t0

    def predict_with_stages(self, image: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
        """``predict`` plus the seconds of each stage, ``{"partition": ..., "features": ...,
        "classifier": ..., "total": ...}`` (a stage may hold a named sub-stage, e.g. the edge
        map inside ``partition``; ``total`` is the whole ``predict``)."""
        self._stage_seconds = {}
        try:
            t0 = time.perf_counter()
            labels = self.predict(image)
            total = time.perf_counter() - t0
            seconds = self._stage_seconds
        finally:
            self._stage_seconds = None
        return labels, {**seconds, "total": total}

    # -- stage (a) ----------------------------------------------------------------------
    @abstractmethod
    def partition(self, image: np.ndarray) -> np.ndarray:
        """RGB uint8 HxWx3 -> HxW int32 region ids 0..n-1 (every id used, every pixel covered)."""

    def _partition(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rgb = as_rgb(image)
        with self.stage("partition"):
            regions = np.asarray(self.partition(rgb))
        if regions.shape != rgb.shape[:2]:
            raise RuntimeError(f"{self.name}: partition has shape {regions.shape}, image {rgb.shape[:2]}")
        return rgb, relabel_contiguous(regions)

    # -- features, overridable (superpixel CRF adds the graph) ---------------------------
    def describe(self, rgb: np.ndarray, regions: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        """Region features (own, then neighbours' with ``context``) and the region graph.

        The second value holds what later stages may need: ``features`` (own features only),
        ``edges`` (m, 2) adjacent pairs and ``length`` (m,) shared boundary lengths.
        """
        feats = region_features(rgb, regions, textons=self.textons)
        edges, length = region_adjacency(regions)
        extra = {"features": feats, "edges": edges, "length": length}
        if self.settings.context:
            feats = np.concatenate([feats, context_features(feats, edges, length)], axis=1)
        return feats, extra

    # -- fit ----------------------------------------------------------------------------
    def training_indices(self, n: int, cap: int | None = None) -> np.ndarray:
        cap = self.settings.max_train_images if cap is None else cap
        if n <= cap:
            return np.arange(n)
        return np.sort(np.random.default_rng(self.context.seed).choice(n, cap, replace=False))

    def fit_textons(self, images: list[np.ndarray]) -> TextonDictionary:
        """A dictionary of ``settings.textons`` words learned from the filter responses of
        random pixels of ``images``."""
        k = self.settings.textons
        responses = sample_responses(images, per_image=TEXTON_PIXELS_PER_IMAGE, seed=self.context.seed)
        if len(responses) < k:
            raise ValueError(f"{len(responses)} training pixels cannot make {k} textons (lower textons)")
        return TextonDictionary.fit(responses, k, seed=self.context.seed)

    def collect(self, train: Split) -> list[RegionData]:
        """Learn the textons (from a seeded subset of at most TEXTON_IMAGES of the images fitted
        on, kept in memory so that every image is loaded once), then partition and describe
        the (capped) training images."""
        info = train.info
        idx = self.training_indices(len(train))
        kept: dict[int, Any] = {}
        if self.settings.textons:
            sub = idx
            if len(idx) > TEXTON_IMAGES:
                sub = np.random.default_rng(self.context.seed + 3).choice(idx, TEXTON_IMAGES, replace=False)
            kept = {int(i): train[int(i)] for i in sub}
            self.textons = self.fit_textons([s.image for s in kept.values()])
        data = []
        for i in tqdm(idx, desc=f"{self.name}: partition train", disable=not self.context.progress, leave=False):
            sample = kept.pop(int(i)) if int(i) in kept else train[int(i)]
            rgb, regions = self._partition(sample.image)
            if sample.label.shape != rgb.shape[:2]:
                raise ValueError(f"sample {sample.id}: label {sample.label.shape} vs image {rgb.shape[:2]}")
            feats, extra = self.describe(rgb, regions)
            targets = region_majority_labels(regions, sample.label, info.num_classes)
            area = np.bincount(regions.ravel(), minlength=len(feats)).astype(np.float64)
            data.append(RegionData(feats, targets, area, extra))
        return data

    def sample_regions(self, data: list[RegionData]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Stack labelled regions, cap them by seeded sampling; return X, y, sample weights."""
        X = np.concatenate([d.features for d in data])
        y = np.concatenate([d.targets for d in data])
        area = np.concatenate([d.area for d in data])
        keep = np.flatnonzero(y >= 0)
        cap = self.settings.max_train_regions
        if len(keep) > cap:
            keep = np.sort(np.random.default_rng(self.context.seed + 1).choice(keep, cap, replace=False))
        X, y, area = X[keep], y[keep], area[keep]
        return X, y, self.sample_weights(y, area)

    def sample_weights(self, y: np.ndarray, area: np.ndarray) -> np.ndarray:
        s = self.settings
        w = {"area": area, "sqrt_area": np.sqrt(area), "none": np.ones_like(area)}[s.sample_weight].astype(np.float64)
        if s.class_weight == "balanced" and len(y):
            mass = np.bincount(y, weights=w)
            present = mass > 0
            cw = np.zeros_like(mass)
            cw[present] = mass[present].sum() / (present.sum() * mass[present])
            w = w * cw[y]
        return w

    def fit_classifier(self, X: np.ndarray, y: np.ndarray, w: np.ndarray, num_classes: int) -> RegionClassifier:
        s = self.settings
        clf = RegionClassifier(s.classifier, num_classes, s.n_estimators, self.context.seed, s.learning_rate)
        return clf.fit(X, y, w)

    def _fit(self, train: Split, val: Split | None) -> None:
        self.textons = None
        data = self.collect(train)
        X, y, w = self.sample_regions(data)
        self.classifier = self.fit_classifier(X, y, w, train.info.num_classes)
        self.train_regions_per_image = float(np.mean([len(d.targets) for d in data]))
        self.fit_extra(data, train.info)
        self._regions_seen = []

    def fit_extra(self, data: list[RegionData], info: DatasetInfo) -> None:
        """Hook for learning more after the classifier (the CRF weights)."""

    # -- the fitted state -----------------------------------------------------------------
    def _save_state(self, folder: Path) -> None:
        self.classifier.save(folder)
        save_arrays(folder / "regions.npz", train_regions_per_image=self.train_regions_per_image)
        if self.textons is not None:
            t = self.textons
            save_arrays(folder / "textons.npz", centres=t.centres, mean=t.mean, scale=t.scale)

    def _load_state(self, folder: Path) -> None:
        s = self.settings
        self.classifier = RegionClassifier.load(folder, s.classifier, self.info.num_classes, s.n_estimators)
        arrays = load_arrays(folder / "regions.npz", "train_regions_per_image")
        self.train_regions_per_image = float(arrays["train_regions_per_image"])
        self.textons = None
        if s.textons:
            t = load_arrays(folder / "textons.npz", "centres", "mean", "scale")
            if len(t["centres"]) != s.textons:
                raise MethodError(f"{folder / 'textons.npz'}: {len(t['centres'])} textons, settings say {s.textons}")
            try:
                self.textons = TextonDictionary(t["centres"], t["mean"], t["scale"])
            except ValueError as e:
                raise MethodError(f"{folder / 'textons.npz'}: {e}") from None

    # -- predict --------------------------------------------------------------------------
    def label_regions(self, rgb: np.ndarray, regions: np.ndarray) -> np.ndarray:
        """Per-region class for one partitioned image."""
        with self.stage("features"):
            feats, _ = self.describe(rgb, regions)
        with self.stage("classifier"):
            return self.classifier.predict(feats)

    def predict(self, image: np.ndarray) -> np.ndarray:
        self._require_fitted()
        rgb, regions = self._partition(image)
        region_labels = self.label_regions(rgb, regions)
        self._regions_seen.append(int(regions.max()) + 1)
        return region_labels.astype(np.int32)[regions]

    # -- oracle and reporting -----------------------------------------------------------
    def partition_oracle(self, image: np.ndarray, label: np.ndarray) -> np.ndarray:
        """Best labelling this partition allows: every region takes its majority GT class.

        Regions whose pixels are all ignored get the ignore index (0 when there is none).
        Needs ``fit`` only for the dataset's class count.
        """
        info = self._require_fitted()
        rgb, regions = self._partition(image)
        label = np.asarray(label)
        if label.shape != rgb.shape[:2]:
            raise ValueError(f"label map {label.shape} and image {rgb.shape[:2]} differ in size")
        empty = info.ignore_index if info.ignore_index is not None else 0
        return region_majority_labels(regions, label, info.num_classes, empty)[regions]

    def extra_metrics(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self._regions_seen:
            out["regions_per_image"] = float(np.mean(self._regions_seen))
        if self.train_regions_per_image is not None:
            out["train_regions_per_image"] = self.train_regions_per_image
        return out

    def num_parameters(self) -> int | None:
        return None if self.classifier is None else self.classifier.num_parameters()
