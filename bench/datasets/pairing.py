"""Listing and pairing image/mask files by id, and partitioning ids into named splits.

Every function here raises :class:`~bench.datasets.types.DatasetError` naming the folder or
file at fault.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from bench.datasets.types import DatasetError

#: image extensions recognised when listing folders (lower case)
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
#: mask extensions recognised when listing folders (lower case); lossless formats only
MASK_EXTS = (".png", ".bmp", ".tif", ".tiff", ".pgm")



def natural_key(s: str) -> tuple:
    """Sort key that orders '2' before '10' (digit runs compared as numbers)."""
    return tuple((0, int(t), t) if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", s) if t != "")


def list_files(folder: str | Path, exts: Iterable[str], suffix: str = "", what: str = "files") -> dict[str, Path]:
    """Map id -> path for files in ``folder`` with one of ``exts`` whose stem ends in ``suffix``.

    The id is the stem without ``suffix``. Hidden files are skipped. A missing folder, an
    empty result or two files with the same id raise DatasetError naming the folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: folder not found")
    exts = tuple(e.lower() for e in exts)
    out: dict[str, Path] = {}
    for p in folder.iterdir():
        if p.name.startswith(".") or not p.is_file() or p.suffix.lower() not in exts:
            continue
        stem = p.stem
        if suffix:
            if not stem.endswith(suffix):
                continue
            stem = stem[: -len(suffix)]
        if stem in out:
            raise DatasetError(f"{folder}: two {what} for id '{stem}': {out[stem].name} and {p.name}")
        out[stem] = p
    if not out:
        want = "/".join(exts) + (f" named *{suffix}.*" if suffix else "")
        raise DatasetError(f"{folder}: no {what} ({want}) in folder")
    return dict(sorted(out.items(), key=lambda kv: natural_key(kv[0])))


def _names(ids: list[str], files: dict[str, Path], n: int = 5) -> str:
    shown = ", ".join(files[i].name for i in ids[:n])
    return shown + (f" and {len(ids) - n} more" if len(ids) > n else "")


def pair_files(
    image_dir: str | Path,
    mask_dir: str | Path,
    *,
    image_exts: Iterable[str] = IMAGE_EXTS,
    mask_exts: Iterable[str] = MASK_EXTS,
    image_suffix: str = "",
    mask_suffix: str = "",
    allow_unpaired: bool = False,
) -> list[tuple[str, Path, Path]]:
    """Match images and masks by stem; return ``[(id, image_path, mask_path)]`` in natural order.

    ``image_suffix``/``mask_suffix`` are stripped from the stems before matching (e.g.
    ``_sat``/``_mask``). An image without a mask or a mask without an image is an error
    naming the files, unless ``allow_unpaired`` (then only complete pairs are returned).
    A missing or empty folder is an error naming it.
    """
    images = list_files(image_dir, image_exts, image_suffix, "images")
    masks = list_files(mask_dir, mask_exts, mask_suffix, "masks")
    if not allow_unpaired:
        no_mask = [i for i in images if i not in masks]
        if no_mask:
            raise DatasetError(
                f"{image_dir}: {len(no_mask)} image(s) without a mask in {mask_dir}: {_names(no_mask, images)}"
            )
        no_image = [i for i in masks if i not in images]
        if no_image:
            raise DatasetError(
                f"{mask_dir}: {len(no_image)} mask(s) without an image in {image_dir}: {_names(no_image, masks)}"
            )
    pairs = [(i, images[i], masks[i]) for i in images if i in masks]
    if not pairs:
        raise DatasetError(f"{image_dir}: no image has a mask in {mask_dir}")
    return pairs


def split_ids(
    ids: Sequence[str], fractions: dict[str, float], seed: int = 0, what: str = "dataset"
) -> dict[str, list[str]]:
    """Deterministically partition ``ids`` by a seeded shuffle into named fractions.

    ``fractions`` maps split name -> fraction (summing to at most 1; the first split takes
    the rounding remainder). Splits with fraction 0 are left out; every split with a
    positive fraction gets at least one id when there are enough ids. Each returned list is
    in natural order. The same ids and seed always give the same splits.
    """
    ids = sorted(ids, key=natural_key)
    names = [n for n, f in fractions.items() if f > 0]
    if any(f < 0 for f in fractions.values()) or sum(fractions.values()) > 1 + 1e-9:
        raise DatasetError(f"{what}: split fractions {fractions} must be >= 0 and sum to at most 1")
    if len(ids) < len(names):
        raise DatasetError(f"{what}: {len(ids)} samples cannot fill the splits {names}")
    n = len(ids)
    perm = np.random.default_rng(seed).permutation(n)
    counts = {k: max(1, int(round(fractions[k] * n))) for k in names[1:]}
    if abs(sum(fractions.values()) - 1) < 1e-9:  # the first split takes the remainder
        counts = {names[0]: n - sum(counts.values()), **counts}
    else:
        counts = {names[0]: max(1, int(round(fractions[names[0]] * n))), **counts}
    if counts[names[0]] < 1 or sum(counts.values()) > n:
        raise DatasetError(f"{what}: {n} samples cannot fill the splits {fractions}")
    out: dict[str, list[str]] = {}
    start = 0
    for k in names:
        chosen = [ids[j] for j in perm[start : start + counts[k]]]
        out[k] = sorted(chosen, key=natural_key)
        start += counts[k]
    return out


def read_id_list(spec: str | Path | Sequence[str], what: str = "id list") -> list[str]:
    """Ids from a list, or from a text file with one id per line ('#' comments, blank lines
    and file extensions are dropped)."""
    if isinstance(spec, (str, Path)):
        p = Path(spec)
        if not p.is_file():
            raise DatasetError(f"{p}: {what} file not found")
        lines = [ln.split("#", 1)[0].strip() for ln in p.read_text().splitlines()]
        ids = [Path(ln).stem if "." in ln else ln for ln in lines if ln]
        if not ids:
            raise DatasetError(f"{p}: {what} file is empty")
        return ids
    return [str(s) for s in spec]


def holdout_splits(
    ids: Sequence[str], val_fraction: float, test_fraction: float, seed: int, what: str
) -> dict[str, list[str]]:
    """``train``/``val``/``test`` by :func:`split_ids`: ``val`` and ``test`` take their fractions
    of ``ids`` (0 leaves the split out) and ``train`` the rest."""
    val, test = float(val_fraction), float(test_fraction)
    fractions = {"train": 1.0 - val - test, "val": val, "test": test}
    if fractions["train"] <= 0 or val < 0 or test < 0:
        raise DatasetError(
            f"{what}: val_fraction={val_fraction} and test_fraction={test_fraction} must be >= 0 and leave "
            "a train split"
        )
    return split_ids(ids, fractions, seed, what)
