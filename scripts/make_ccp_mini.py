#!/usr/bin/env python
"""Build ``ccp-mini``: a small, downscaled, attributed sample of Clothing Co-Parsing.

    python scripts/make_ccp_mini.py --src ../shared/datasets/ccp --out bench/datasets/data/ccp_mini

Selection (deterministic for a given ``--seed``): among CCP ids 0001-0800 only (the
later ids are kept aside for measuring), keep the images in which at least
``--min-classes`` classes each cover at least 0.5% of the pixels, shuffle them with
``numpy.random.default_rng(seed)`` and take the first ``--n-train + --n-val``; the first
``--n-train`` form ``train`` and the rest ``val``. ``--exclude SPLITS_JSON`` leaves out
every id of such a file first: a set of photos that ccp-mini does not hold, for checking
results on photos nothing was chosen on (scripts/unseen_check.py):

    python scripts/make_ccp_mini.py --src ../shared/datasets/ccp --out /tmp/ccp-unseen --seed 1 \
        --n-train 0 --n-val 200 --exclude bench/datasets/data/ccp_mini/splits.json

Each photo is centre-cropped to a 2:3 (width:height) aspect ratio (at most a few
pixels per side for CCP's 550x820-850 photos), then resized to ``--width`` x
``1.5 * --width`` with ``cv2.INTER_AREA`` and saved as JPEG (quality ``--quality``); the
label map gets the same crop, is resized by nearest neighbour at pixel centres and is
saved as a single-channel PNG. The output folder is replaced.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.datasets.ccp import decode_ccp_mat, read_label_list  # noqa: E402
from bench.datasets.decoding import read_rgb  # noqa: E402
from bench.datasets.file_split import resize_label  # noqa: E402

MAX_ID = 800


def crop_23(a: np.ndarray) -> np.ndarray:
    """Centre crop to width:height = 2:3."""
    h, w = a.shape[:2]
    if h * 2 > w * 3:  # too tall
        nh = int(round(w * 1.5))
        top = (h - nh) // 2
        return a[top : top + nh]
    nw = int(round(h / 1.5))
    left = (w - nw) // 2
    return a[:, left : left + nw]


def read_excluded(path: Path, ap: argparse.ArgumentParser) -> set[str]:
    """The ids of a splits.json (``{"split": ["0001", ...]}``); a parser error otherwise."""
    try:
        splits = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        ap.error(f"--exclude {path}: not a readable splits.json ({type(e).__name__}: {e})")
    if not isinstance(splits, dict) or not all(
            isinstance(ids, list) and all(isinstance(i, str) and len(i) == 4 and i.isdigit() for i in ids)
            for ids in splits.values()):
        ap.error(f"--exclude {path}: not a splits.json (an object of lists of four-digit id strings)")
    return {i for ids in splits.values() for i in ids}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", type=Path, required=True, help="CCP folder (photos/, annotations/pixel-level/, label_list.mat)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-train", type=int, default=32)
    ap.add_argument("--n-val", type=int, default=16)
    ap.add_argument("--width", type=int, default=160)
    ap.add_argument("--quality", type=int, default=90)
    ap.add_argument("--min-classes", type=int, default=7)
    ap.add_argument("--exclude", type=Path, help="a splits.json whose ids are never chosen")
    args = ap.parse_args(argv)
    excluded = read_excluded(args.exclude, ap) if args.exclude else set()

    src: Path = args.src
    names = read_label_list(src / "label_list.mat")
    ann = src / "annotations" / "pixel-level"
    candidates = []
    for i in range(1, MAX_ID + 1):
        sid = f"{i:04d}"
        if sid in excluded:
            continue
        photo, mat = src / "photos" / f"{sid}.jpg", ann / f"{sid}.mat"
        if not (photo.is_file() and mat.is_file()):
            continue
        lab = decode_ccp_mat(mat)
        frac = np.bincount(lab.ravel(), minlength=len(names)) / lab.size
        if int((frac >= 0.005).sum()) >= args.min_classes:
            candidates.append(sid)
    n = args.n_train + args.n_val
    if len(candidates) < n:
        ap.error(f"only {len(candidates)} images with >= {args.min_classes} classes; need {n}")
    rng = np.random.default_rng(args.seed)
    chosen = [candidates[j] for j in rng.permutation(len(candidates))[:n]]
    splits = {"train": sorted(chosen[: args.n_train]), "val": sorted(chosen[args.n_train :])}

    out: Path = args.out
    if out.exists():
        shutil.rmtree(out)
    (out / "images").mkdir(parents=True)
    (out / "masks").mkdir()
    w, h = args.width, int(round(args.width * 1.5))
    for sid in chosen:
        img = read_rgb(src / "photos" / f"{sid}.jpg")
        lab = decode_ccp_mat(ann / f"{sid}.mat")
        if img.shape[:2] != lab.shape:
            raise SystemExit(f"{sid}: photo {img.shape[:2]} and annotation {lab.shape} differ in size")
        img_s = cv2.resize(crop_23(img), (w, h), interpolation=cv2.INTER_AREA)
        lab_s = resize_label(crop_23(lab), (h, w))
        Image.fromarray(img_s).save(out / "images" / f"{sid}.jpg", quality=args.quality, optimize=True)
        Image.fromarray(lab_s.astype(np.uint8), mode="L").save(out / "masks" / f"{sid}.png", optimize=True)

    (out / "classes.json").write_text(json.dumps({"classes": names, "ignore_index": 255}, indent=1) + "\n")
    (out / "splits.json").write_text(json.dumps(splits, indent=1) + "\n")
    shutil.copyfile(src / "LICENSE", out / "LICENSE")
    cmd = (
        f"python scripts/make_ccp_mini.py --src ../shared/datasets/ccp --out {args.out}"
        + (f" --seed {args.seed}" if args.seed != 0 else "")
        + (f" --n-train {args.n_train}" if args.n_train != 32 else "")
        + (f" --n-val {args.n_val}" if args.n_val != 16 else "")
        + (f" --width {args.width}" if args.width != 160 else "")
        + (f" --quality {args.quality}" if args.quality != 90 else "")
        + (f" --min-classes {args.min_classes}" if args.min_classes != 7 else "")
        + (f" --exclude {args.exclude}" if args.exclude else "")
    )
    (out / "README.md").write_text(README.format(
        n=n, n_train=args.n_train, n_val=args.n_val, w=w, h=h, q=args.quality, seed=args.seed,
        min_classes=args.min_classes, n_cand=len(candidates), cmd=cmd, k=len(names), kmax=len(names) - 1,
    ))
    print(f"wrote {n} pairs ({args.n_train} train, {args.n_val} val) of {w}x{h} to {out}")
    return 0


README = """\
# ccp-mini: a small sample of Clothing Co-Parsing (CCP)

{n} photo/label pairs ({n_train} `train`, {n_val} `val`) from the pixel-level part of the
Clothing Co-Parsing data set, downscaled to {w}x{h} (width x height), shipped with segbench
as its built-in default dataset (`--dataset ccp-mini`, no `--data-root` needed).

**Source.** https://github.com/bearpaw/clothing-co-parsing

**Citation** (please cite when you publish results on this data):

> W. Yang, P. Luo, L. Lin, "Clothing Co-Parsing by Joint Image Segmentation and Labeling", IEEE Conference on Computer Vision and Pattern Recognition (CVPR), 2014.

**Licence.** Apache License 2.0: see `LICENSE` beside this file (copied unchanged from the
data set). Modifications: the photos and labels were cropped and downscaled as described
below; nothing else was changed.

## Layout

| path | what |
| --- | --- |
| images/NNNN.jpg | RGB photo, {w}x{h}, JPEG quality {q} |
| masks/NNNN.png | single-channel PNG, one class index (0-{kmax}) a pixel; 0 = `null` (background) |
| classes.json | the {k} class names from CCP's `label_list.mat`, in index order; `ignore_index` 255 (unused) |
| splits.json | ids of the `train` and `val` splits |

NNNN is the original CCP id. Many of the {k} classes do not occur in this sample.

## How it was made

    {cmd}

1. Only CCP ids 0001-0800 are considered (later ids are kept aside for measuring).
2. Candidates: the {n_cand} images in which at least {min_classes} classes each cover at least
   0.5% of the pixels (more varied than the background/skin/hair-dominated average).
3. `numpy.random.default_rng({seed}).permutation` over the candidates; the first {n_train}
   become `train`, the next {n_val} `val`.
4. Each photo and its label map are centre-cropped to a 2:3 (width:height) aspect ratio
   (a few pixels per side), then resized to {w}x{h}: `cv2.INTER_AREA` for the photo,
   nearest neighbour at pixel centres for the labels.
"""

if __name__ == "__main__":
    sys.exit(main())
