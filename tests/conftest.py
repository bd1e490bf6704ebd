"""Shared fixtures: the built-in ``shapes`` dataset and small fake dataset trees.

Each ``fake_*`` fixture writes a tiny tree in the real on-disk layout of one dataset
family under ``tmp_path`` and returns its root; tests may damage the files freely.
The ``write_*`` and ``make_*`` helpers are plain functions (``from conftest import ...``) so
that other tests can build their own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


# --------------------------------------------------------------------------- writers
def write_image(path: Path, array: np.ndarray, **save_kw) -> Path:
    """Save an HxW or HxWx3 uint8 array; the format follows the extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array)).save(path, **save_kw)
    return path


def rand_image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def write_mat(path: Path, **variables) -> Path:
    import scipy.io

    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(path), variables)
    return path


def cell(items) -> np.ndarray:
    """A 1xN MATLAB cell array for scipy.io.savemat."""
    c = np.empty((1, len(items)), dtype=object)
    for j, v in enumerate(items):
        c[0, j] = v
    return c


def write_label_list(path: Path, names) -> Path:
    """CCP's ``label_list.mat``: the class names as a 1xK cell of strings."""
    return write_mat(path, label_list=cell([np.array([n]) for n in names]))


def write_bsds_gt(path: Path, annotators) -> Path:
    """A BSDS ``groundTruth`` .mat: one (Segmentation, Boundaries) struct per annotator."""
    return write_mat(path, groundTruth=cell([{"Segmentation": s, "Boundaries": b} for s, b in annotators]))


def make_camvid(root: Path, splits=None, size=(36, 48), seed=0) -> Path:
    """SegNet-layout CamVid: <split>/NAME.png + <split>annot/NAME.png (labels 0..11)."""
    splits = splits or {"train": 3, "val": 2}
    rng = np.random.default_rng(seed)
    h, w = size
    for split, n in splits.items():
        for j in range(n):
            name = f"0001TP_{split}_{j:03d}.png"
            write_image(root / split / name, rand_image(rng, h, w))
            write_image(root / f"{split}annot" / name, rng.integers(0, 12, (h, w), dtype=np.uint8))
    return root


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def shapes_dataset():
    """The built-in synthetic dataset with its defaults (seed 0, 48/16/16, 96x128)."""
    from bench.datasets import get_dataset

    return get_dataset("shapes")


@pytest.fixture
def fake_camvid(tmp_path) -> Path:
    return make_camvid(tmp_path / "camvid")


@pytest.fixture
def fake_folder(tmp_path) -> Path:
    """Flat folder dataset: images/NAME.jpg + masks/NAME.png index masks (3 classes), 10 pairs."""
    root = tmp_path / "folder"
    rng = np.random.default_rng(1)
    for j in range(10):
        write_image(root / "images" / f"img{j}.jpg", rand_image(rng, 20, 30), quality=90)
        write_image(root / "masks" / f"img{j}.png", rng.integers(0, 3, (20, 30), dtype=np.uint8))
    return root


FOLDER_CLASSES = {
    "classes": [
        {"name": "road", "color": [128, 64, 128]},
        {"name": "car", "color": [64, 0, 128]},
        {"name": "tree", "color": [0, 128, 0]},
    ],
    "ignore_index": 255,
    "ignore_colors": [[0, 0, 0]],
}


@pytest.fixture
def fake_folder_colour(tmp_path) -> Path:
    """Folder dataset with split sub-folders, colour masks and a classes.yaml palette."""
    import yaml

    root = tmp_path / "folder_colour"
    rng = np.random.default_rng(2)
    colours = np.array([c["color"] for c in FOLDER_CLASSES["classes"]] + [[0, 0, 0]], np.uint8)
    for split, n in (("train", 3), ("val", 2)):
        for j in range(n):
            idx = rng.integers(0, 4, (16, 24))
            write_image(root / "images" / split / f"{split}{j}.png", rand_image(rng, 16, 24))
            write_image(root / "masks" / split / f"{split}{j}.png", colours[idx])
            np.save(root / f"expected_{split}{j}.npy", np.where(idx == 3, 255, idx).astype(np.uint8))
    (root / "classes.yaml").write_text(yaml.safe_dump(FOLDER_CLASSES))
    return root


LANDCOVER_COLOURS = np.array(
    [[0, 255, 255], [255, 255, 0], [255, 0, 255], [0, 255, 0], [0, 0, 255], [255, 255, 255], [0, 0, 0]], np.uint8
)


@pytest.fixture
def fake_landcover(tmp_path) -> Path:
    """Flat DeepGlobe layout: NNNN_sat.jpg + NNNN_mask.png, 8 pairs, colours slightly off."""
    root = tmp_path / "landcover"
    rng = np.random.default_rng(3)
    for j in range(8):
        idx = rng.integers(0, 7, (24, 24))
        mask = LANDCOVER_COLOURS[idx].astype(np.int16)
        # lossy-looking colours: 0 -> up to 40, 255 -> down to 215
        mask = np.where(mask > 0, mask - rng.integers(0, 41, mask.shape), mask + rng.integers(0, 41, mask.shape))
        write_image(root / f"{100 + j}_sat.jpg", rand_image(rng, 24, 24), quality=90)
        write_image(root / f"{100 + j}_mask.png", mask.astype(np.uint8))
        np.save(root / f"expected_{100 + j}.npy", np.where(idx == 6, 255, idx).astype(np.uint8))
    return root


CCP_NAMES = ["null"] + [f"cls{k:02d}" for k in range(1, 59)]


@pytest.fixture
def fake_ccp(tmp_path) -> Path:
    """CCP layout with 12 annotated photos (ids 0001-0012) and 2 photos without annotation."""
    root = tmp_path / "ccp"
    rng = np.random.default_rng(4)
    write_label_list(root / "label_list.mat", CCP_NAMES)
    for j in range(1, 15):
        sid = f"{j:04d}"
        write_image(root / "photos" / f"{sid}.jpg", rand_image(rng, 30, 20), quality=90)
        if j <= 12:
            write_mat(root / "annotations" / "pixel-level" / f"{sid}.mat", groundtruth=rng.integers(0, 59, (30, 20)).astype(np.uint8))
    return root


@pytest.fixture
def fake_bsds(tmp_path) -> Path:
    """BSDS layout, val split: 3 images (2 landscape, 1 portrait), 3-5 annotators each."""
    root = tmp_path / "bsds500"
    rng = np.random.default_rng(5)
    for j, (h, w) in enumerate([(21, 31), (31, 21), (21, 31)]):
        sid = str(100075 + j)
        write_image(root / "images" / "val" / f"{sid}.jpg", rand_image(rng, h, w), quality=90)
        annotators = [(rng.integers(1, 4, (h, w)).astype(np.uint16), (rng.random((h, w)) < 0.1).astype(np.uint8))
                      for _ in range(3 + j)]
        write_bsds_gt(root / "groundTruth" / "val" / f"{sid}.mat", annotators)
    return root


@pytest.fixture
def fake_isbi(tmp_path) -> Path:
    """ISBI 2012 layout: image/N.png grey + label/N.png in {0, 255}, N = 0..11."""
    root = tmp_path / "isbi2012"
    rng = np.random.default_rng(6)
    for j in range(12):
        write_image(root / "image" / f"{j}.png", rng.integers(0, 256, (32, 32), dtype=np.uint8))
        write_image(root / "label" / f"{j}.png", (rng.random((32, 32)) < 0.78).astype(np.uint8) * 255)
    return root


@pytest.fixture
def real_data() -> Path:
    """The shared real data folder; skips the test when it is absent."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"real data not found at {REAL_DATA}")
    return REAL_DATA


def read_records(out_dir) -> list[dict]:
    """Every record of a results folder as plain dicts (oldest first), read through the store."""
    from bench.store import RecordStore

    return [r.to_dict() for r in RecordStore(out_dir).records()]
