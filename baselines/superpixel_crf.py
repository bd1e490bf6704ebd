"""``superpixel-crf`` and ``superpixel-unary``: SLIC superpixels, a region classifier for the
unaries and (for the CRF) contrast-sensitive Potts smoothing learned by a structural SVM.

In the literature's words: a superpixel CRF - SLIC superpixels (Achanta et al. 2012, the
SLICO variant), unary potentials from a region classifier, a pairwise contrast-sensitive
Potts model (Boykov & Jolly 2001) over the superpixel adjacency graph, MAP inference by
alpha-expansion (Boykov, Veksler & Zabih 2001), and the CRF weights learned by an n-slack
structural SVM with margin rescaling (Tsochantaridis et al. 2005; as in Nowozin & Lampert
2011 and Lucchi et al. 2011), optimised by projected subgradient descent (Ratliff et al.
2007). Deliberately left out: higher-order (P^n) potentials, class-pair-dependent pairwise
terms, pixel-level (dense) CRFs, joint learning of the features and the CRF, and
1-slack cutting-plane solvers (the weights are few: a unary scale, class biases, two
Potts weights).

Pipeline for one image:

1. SLIC superpixels (OpenCV contrib's ``ximgproc`` SLIC, SLICO variant by default),
   ``n_segments`` of them, but none smaller on average than ``min_segment_area`` pixels
   (small images get fewer), computed on a working copy whose longer side is at most
   ``work_size`` (240) and scaled back (:func:`superpixel_partition`).
2. Region features (:meth:`baselines.labelling.RegionLabeller.describe`) -> classifier
   ``predict_proba`` -> unary costs U_i(k) = -log p_i(k) (probabilities smoothed with a
   small floor so that no cost is infinite).
3. Region adjacency graph (:func:`baselines.features.region_adjacency`): horizontally or
   vertically adjacent pixel pairs with different superpixel ids (``np.unique`` on the
   pair codes, whose counts are the shared boundary lengths l_ij). Two edge features,
   both in units of a superpixel's side (l_ij / sqrt(mean area)): the contrast-weighted length
   l_ij * exp(-||mu_i - mu_j||^2 / (2 sigma^2)) with mu the mean Lab colour and
   2 sigma^2 = the image's mean squared colour difference over edges (Boykov-Jolly), and
   the plain length.
4. Inference: alpha-expansion (gco-wrapper) on the energy of :class:`baselines.ssvm.PottsCRF`
   with weights w = (unary scale, per-class bias, two Potts weights).

Learning. The classifier is trained on all (capped) training regions, as in every region
labeller. The CRF weights are learned by the structural SVM of :mod:`baselines.ssvm` on
*out-of-fold* unaries: the training images are split into ``unary_folds`` groups, and the
unaries of each group's images come from a classifier trained on the other groups only, so
that the SSVM sees unaries as (over)confident as they will be on unseen images (unaries of
the training images themselves would be near-perfect and teach the CRF to ignore the
Potts term). With a single training image the in-sample unaries are used.

``superpixel-unary`` is the same pipeline without the Potts term (the SSVM learns only the
unary scale and the class biases), so that a leaderboard shows what the smoothing adds.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm.auto import tqdm

from baselines.labelling import RegionData, RegionLabeller, RegionSettings
from baselines.preprocess import gaussian_blur, rgb_to_lab, upscale_labels
from baselines.ssvm import CRFGraph, PottsCRF, train_ssvm
from baselines.state_files import load_arrays, save_arrays
from bench.datasets.types import DatasetInfo
from bench.method import MethodError


def superpixel_partition(
    image: np.ndarray,
    n_segments: int = 350,
    compactness: float = 10.0,
    min_segment_area: int = 48,
    sigma: float = 1.0,
    slic_zero: bool = True,
    work_size: int | None = 240,
    iterations: int = 10,
) -> np.ndarray:
    """SLIC superpixels of an RGB uint8 image -> HxW int32 ids 0..n-1.

    OpenCV contrib's SLIC (``cv2.ximgproc.createSuperpixelSLIC``) on the image smoothed by a
    Gaussian (on its uint8 RGB) and converted to float Lab (L in 0..100, the space
    scikit-image's ``slic`` clusters in), seeds on a
    grid of step sqrt(area / n), ``iterations`` k-means iterations, then connectivity
    enforced (fragments under half a superpixel's mean area join a neighbour, as
    scikit-image's ``min_size_factor`` 0.5). SLICO (``slic_zero``, adaptive compactness) by
    default: plain SLIC with a fixed compactness fragments strongly textured areas, whose
    fragments the connectivity step then merges into a few huge superpixels.
    SLIC runs on a copy whose longer side is at most ``work_size`` (area interpolation,
    ``sigma`` scaled along; None: full size) and its superpixels are scaled back with
    nearest neighbour: at 480x360 -> 240x180 superpixels of about 11x11 working pixels
    whose boundaries move by at most one working pixel (2 image pixels).
    Why OpenCV and not scikit-image's ``slic``: 27 against 46 ms on the 240x180 copy (one
    core; docs/BENCHMARKS.md); at 350 superpixels its partitions' ceiling (oracle mIoU on
    CamVid train) is at least scikit-image's at 300.
    """
    h, w = image.shape[:2]
    n = int(max(1, min(n_segments, (h * w) // max(min_segment_area, 1))))
    scale = 1.0 if work_size is None else min(1.0, work_size / max(h, w))
    small = image
    if scale < 1.0:
        size = (max(int(round(w * scale)), 1), max(int(round(h * scale)), 1))
        small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    if n <= 1 or min(small.shape[:2]) < 2:
        return np.zeros((h, w), np.int32)
    lab = rgb_to_lab(gaussian_blur(small, sigma * scale))
    step = max(int(round(np.sqrt(small.shape[0] * small.shape[1] / n))), 2)
    ximgproc = _ximgproc()
    algorithm = ximgproc.SLICO if slic_zero else ximgproc.SLIC
    slic = ximgproc.createSuperpixelSLIC(lab, algorithm=algorithm, region_size=step, ruler=float(compactness))
    slic.iterate(iterations)
    slic.enforceLabelConnectivity(50)  # percent of the mean superpixel area
    return upscale_labels(slic.getLabels(), (h, w))


def _ximgproc():
    """OpenCV contrib's ``cv2.ximgproc``, or a MethodError that says how to get it."""
    if not hasattr(cv2, "ximgproc"):
        raise MethodError(
            "SLIC superpixels need OpenCV's contrib modules (cv2.ximgproc), which this cv2 lacks: "
            "pip uninstall -y opencv-python opencv-python-headless opencv-contrib-python-headless && "
            "pip install opencv-contrib-python-headless"
        )
    return cv2.ximgproc


def edge_features(lab_means: np.ndarray, edges: np.ndarray, length: np.ndarray, mean_area: float) -> np.ndarray:
    """(m, 2): contrast-weighted and plain shared boundary length, in superpixel sides."""
    if len(edges) == 0:
        return np.zeros((0, 2))
    side = np.sqrt(max(mean_area, 1.0))
    d2 = ((lab_means[edges[:, 0]] - lab_means[edges[:, 1]]) ** 2).sum(axis=1)
    beta = 1.0 / max(2.0 * d2.mean(), 1e-6)  # 1 / (2 sigma^2), sigma^2 = mean squared contrast
    l = length / side
    return np.stack([l * np.exp(-beta * d2), l], axis=1)


def unary_costs(proba: np.ndarray, floor: float = 1e-3) -> np.ndarray:
    """-log of probabilities mixed with a uniform floor (costs stay finite)."""
    k = proba.shape[1]
    p = (1.0 - floor * k) * proba + floor if floor * k < 1 else np.full_like(proba, 1.0 / k)
    return -np.log(p)


@dataclasses.dataclass
class SuperpixelSettings(RegionSettings):
    #: SLIC superpixels per image (fewer when the image is small, see min_segment_area); 350:
    #: the fewest with OpenCV's SLIC whose partition ceiling (oracle mIoU on CamVid *train*,
    #: every 4th image) is not below that of scikit-image's SLIC at 300 (68.1 vs 67.3; 300: 66.5)
    n_segments: int = 350
    #: SLIC compactness (Lab units; higher: squarer superpixels); SLICO's starting value
    compactness: float = 10.0
    #: SLICO: compactness adapted per superpixel (robust to texture)
    slic_zero: bool = True
    #: mean superpixel area never below this (pixels)
    min_segment_area: int = 48
    #: SLIC Gaussian pre-smoothing (pixels)
    slic_sigma: float = 1.0
    #: SLIC runs on a copy whose longer side is at most this (pixels), its superpixels
    #: scaled back (nearest neighbour)
    work_size: int = 240
    #: image groups for the out-of-fold unaries the SSVM learns from (>= 2)
    unary_folds: int = 3
    #: at most this many training images train the SSVM (seeded subset of the fitted ones)
    max_ssvm_images: int = 100
    #: SSVM: full-batch subgradient epochs, regularisation towards unaries alone, step size
    ssvm_epochs: int = 60
    ssvm_reg: float = 1e-3
    ssvm_lr: float = 0.5
    #: learn a per-class bias on the unaries (else only the unary scale and Potts weights)
    class_bias: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_segments < 1:
            raise ValueError(f"n_segments must be >= 1, not {self.n_segments}")
        if self.compactness <= 0:
            raise ValueError(f"compactness must be > 0, not {self.compactness}")
        if self.min_segment_area < 1:
            raise ValueError(f"min_segment_area must be >= 1, not {self.min_segment_area}")
        if self.slic_sigma < 0:
            raise ValueError(f"slic_sigma must be >= 0, not {self.slic_sigma}")
        if self.work_size < 8:
            raise ValueError(f"work_size must be >= 8, not {self.work_size}")
        if self.unary_folds < 2:
            raise ValueError(f"unary_folds must be >= 2, not {self.unary_folds}")
        if self.max_ssvm_images < 1 or self.ssvm_epochs < 1:
            raise ValueError("max_ssvm_images and ssvm_epochs must be >= 1")
        if self.ssvm_reg < 0 or self.ssvm_lr <= 0:
            raise ValueError("ssvm_reg must be >= 0 and ssvm_lr > 0")


class SuperpixelCRF(RegionLabeller):
    Settings = SuperpixelSettings
    #: 2: SLIC runs on a working copy (``work_size``); 3: TextonBoost-style features
    #: (textons, colour and orientation histograms) with context; 4: OpenCV's SLIC, 350 superpixels;
    #: 5: every training region reaches the classifier (max_train_regions 150,000)
    version = 5
    #: False for the unaries-only variant
    pairwise = True

    def __init__(self, settings: Any = None):
        super().__init__(settings)
        self.crf: PottsCRF | None = None
        self.weights: np.ndarray | None = None
        self.ssvm_objective: tuple[float, float] | None = None

    def partition(self, image: np.ndarray) -> np.ndarray:
        s = self.settings
        return superpixel_partition(
            image, s.n_segments, s.compactness, s.min_segment_area, s.slic_sigma, s.slic_zero, s.work_size
        )

    def describe(self, rgb: np.ndarray, regions: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        feats, extra = super().describe(rgb, regions)
        own = extra.pop("features")
        area = np.bincount(regions.ravel(), minlength=len(feats)).astype(np.float64)
        edges = extra["edges"]
        extra["edge_features"] = edge_features(own[:, :3].astype(np.float64), edges, extra.pop("length"), area.mean())
        extra["node_weight"] = area / area.mean()
        return feats, extra

    def _graph(self, unary: np.ndarray, extra: dict[str, Any], label: np.ndarray | None = None) -> CRFGraph:
        ef = extra["edge_features"] if self.pairwise else np.zeros((len(extra["edges"]), 0))
        return CRFGraph(unary, extra["node_weight"], extra["edges"], ef, label)

    # -- learning the CRF weights ---------------------------------------------------------
    def fit_extra(self, data: list[RegionData], info: DatasetInfo) -> None:
        s = self.settings
        k = info.num_classes
        self.crf = self._new_crf(k)
        rng = np.random.default_rng(self.context.seed + 2)
        n_img = len(data)
        ssvm_idx = np.sort(rng.permutation(n_img)[: s.max_ssvm_images])
        proba: dict[int, np.ndarray] = {}
        if n_img >= 2:
            folds = rng.permutation(n_img) % min(s.unary_folds, n_img)
            for f in tqdm(range(int(folds.max()) + 1), desc=f"{self.name}: out-of-fold unaries",
                          disable=not self.context.progress, leave=False):
                held = [i for i in ssvm_idx if folds[i] == f]
                if not held:
                    continue
                rest = [data[i] for i in range(n_img) if folds[i] != f]
                X, y, w = self.sample_regions(rest)
                if len(y) == 0:
                    clf = self.classifier
                else:
                    clf = self.fit_classifier(X, y, w, k)
                for i in held:
                    proba[i] = clf.predict_proba(data[i].features)
        else:
            proba = {int(i): self.classifier.predict_proba(data[i].features) for i in ssvm_idx}
        graphs = [self._graph(unary_costs(proba[int(i)]), data[i].extra, data[i].targets) for i in ssvm_idx]
        bar = tqdm(total=s.ssvm_epochs, desc=f"{self.name}: SSVM", disable=not self.context.progress, leave=False)
        result = train_ssvm(
            self.crf, graphs, epochs=s.ssvm_epochs, reg=s.ssvm_reg, lr=s.ssvm_lr,
            progress=lambda t, obj: (bar.update(1), bar.set_postfix(objective=f"{obj:.4f}")),
        )
        bar.close()
        self.weights = result.weights
        self.ssvm_objective = (result.initial_objective, result.best_objective)

    def _new_crf(self, num_classes: int) -> PottsCRF:
        return PottsCRF(num_classes, 2 if self.pairwise else 0, class_bias=self.settings.class_bias)

    # -- the fitted state -----------------------------------------------------------------
    def _save_state(self, folder: Path) -> None:
        super()._save_state(folder)
        save_arrays(folder / "crf.npz", weights=self.weights, ssvm_objective=self.ssvm_objective)

    def _load_state(self, folder: Path) -> None:
        super()._load_state(folder)
        arrays = load_arrays(folder / "crf.npz", "weights", "ssvm_objective")
        self.crf = self._new_crf(self.info.num_classes)
        if arrays["weights"].shape != (self.crf.size,):
            raise MethodError(f"{folder / 'crf.npz'}: {arrays['weights'].shape} CRF weights, "
                              f"this CRF has {self.crf.size}")
        self.weights = arrays["weights"].astype(np.float64)
        self.ssvm_objective = tuple(float(x) for x in arrays["ssvm_objective"])

    # -- inference ------------------------------------------------------------------------
    def label_regions(self, rgb: np.ndarray, regions: np.ndarray) -> np.ndarray:
        with self.stage("features"):
            feats, extra = self.describe(rgb, regions)
        with self.stage("classifier"):
            unary = unary_costs(self.classifier.predict_proba(feats))
        with self.stage("crf inference"):
            return self.crf.inference(self._graph(unary, extra), self.weights)

    def extra_metrics(self) -> dict[str, Any]:
        out = super().extra_metrics()
        if self.weights is not None:
            wu, b, v = self.crf.split(self.weights)
            out["crf_unary_weight"] = wu
            out["crf_class_bias"] = [float(x) for x in b]
            if self.pairwise:
                out["crf_potts_contrast_weight"] = float(v[0])
                out["crf_potts_length_weight"] = float(v[1])
            out["ssvm_objective_initial"], out["ssvm_objective_final"] = self.ssvm_objective
        return out

    def num_parameters(self) -> int | None:
        n = super().num_parameters()
        return None if n is None else n + (0 if self.crf is None else self.crf.size)


class SuperpixelUnary(SuperpixelCRF):
    """The same pipeline without the Potts term: unaries (scaled, class-biased) alone."""

    pairwise = False
