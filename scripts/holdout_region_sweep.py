#!/usr/bin/env python
"""Region-labelling choices scored on a CamVid sequence no recipe was chosen on.

    python scripts/holdout_region_sweep.py sobel --data-root ../shared/datasets/camvid \\
        --classifier '{"n_estimators": 100, "learning_rate": 0.1}' \\
        --classifier '{"n_estimators": 60, "learning_rate": 0.15}'
    python scripts/holdout_region_sweep.py mser --settings '{"grid_cells": 12}' --data-root ...

A classical method (with ``--settings``) partitions and describes every frame of
``camvid-holdout`` train (266 frames; sequence 0006R0 left out) once; then for each
``--classifier`` setting a region classifier (scikit-learn's histogram gradient boosting,
31 leaves, as the methods use) is fitted on those regions and scored on the 101 0006R0
frames, region by region (each region's pixels take its predicted class; no CRF). One
thread throughout. Prints one JSON line per classifier setting: mIoU and pixel accuracy
(%, the suite's metric code), the partition's ceiling (oracle mIoU: each region takes its
majority class), regions an image, and median ms an image for the features and for the
classifier. Used for docs/BENCHMARKS.md ("Both routes were measured") and the mser grid
choice in docs/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from baselines.features import region_label_histogram  # noqa: E402
from baselines.region_classifier import RegionClassifier  # noqa: E402
from bench.datasets import get_dataset  # noqa: E402
from bench.method import FitContext, create_method  # noqa: E402
from bench.metrics.summary import summarize  # noqa: E402


def confusion(predicted: list[np.ndarray], histograms: list[np.ndarray], k: int) -> np.ndarray:
    """(k, k) pixel confusion (true, predicted) of region labels against region class counts."""
    cm = np.zeros((k, k))
    for pred, hist in zip(predicted, histograms):
        np.add.at(cm.T, pred, hist)  # cm[:, pred[r]] += hist[r]
    return cm


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("method", help="a classical region method: sobel, laplacian, log, region-growing, mser, ...")
    p.add_argument("--data-root", required=True, help="the CamVid folder (SegNet layout)")
    p.add_argument("--settings", default="{}", help="the method's settings, a JSON object")
    p.add_argument("--classifier", action="append", default=[],
                   help='classifier settings, a JSON object with n_estimators, learning_rate (repeatable; '
                        'default: the method\'s own)')
    args = p.parse_args()
    cv2.setNumThreads(1)
    threadpool_limits(1)
    data = get_dataset("camvid-holdout", args.data_root)
    k = data.split("train").info.num_classes
    settings = json.loads(args.settings)
    method = create_method(args.method, settings)
    method.context = FitContext(seed=0, progress=False)
    x, y, w = method.sample_regions(method.collect(data.split("train")))
    test = data.split("0006R0")
    features, histograms, feature_s = [], [], []
    for i in range(len(test)):
        sample = test[i]
        rgb, regions = method._partition(sample.image)
        t0 = time.perf_counter()
        f, _ = method.describe(rgb, regions)
        feature_s.append(time.perf_counter() - t0)
        features.append(f)
        histograms.append(region_label_histogram(regions, sample.label, k))
    oracle = summarize(confusion([h.argmax(1) for h in histograms], histograms, k))["miou"]
    own = {"n_estimators": method.settings.n_estimators, "learning_rate": method.settings.learning_rate}
    for spec in args.classifier or [json.dumps(own)]:
        cfg = {**own, **json.loads(spec)}
        t0 = time.perf_counter()
        clf = RegionClassifier("hgb", k, cfg["n_estimators"], 0, cfg["learning_rate"]).fit(x, y, w)
        fit_s = time.perf_counter() - t0
        predicted, clf_s = [], []
        for f in features:
            t0 = time.perf_counter()
            predicted.append(clf.predict(f))
            clf_s.append(time.perf_counter() - t0)
        r = summarize(confusion(predicted, histograms, k))
        print(json.dumps({
            "method": args.method, **settings, **cfg,
            "miou": round(100 * r["miou"], 2), "pixel_acc": round(100 * r["pixel_acc"], 2),
            "oracle_miou": round(100 * oracle, 2), "regions": round(float(np.mean([len(h) for h in histograms])), 1),
            "features_ms": round(1e3 * statistics.median(feature_s), 1),
            "classifier_ms": round(1e3 * statistics.median(clf_s), 1), "fit_s": round(fit_s, 1),
        }), flush=True)


if __name__ == "__main__":
    main()
