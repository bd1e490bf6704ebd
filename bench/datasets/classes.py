"""Class files (``classes.yaml`` / ``classes.json``): class names, colours, ignore label.

A dataset that brings its own classes describes them in one (format: see
:mod:`bench.datasets.folder`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from bench.datasets.types import DatasetError


@dataclass(frozen=True)
class ClassFile:
    """What a class file says."""

    names: list[str]  # in index order: entry k is class k
    colors: np.ndarray | None  # (K, 3) uint8, one row a class; None when no class has a colour
    ignore_index: int | None  # label of ignored pixels
    ignore_colors: list[list[int]]  # mask colours mapped to ignore_index
    masks: str  # "color": colour masks mapped through ``colors``; "index": index masks


def load_classes_file(path: str | Path) -> ClassFile:
    """Read and check a ``classes.yaml``/``classes.json`` file; DatasetError naming it when bad."""
    path = Path(path)
    doc = _read_document(path)
    names, colors = _classes(doc["classes"], path)
    ignore_index = doc.get("ignore_index", 255)
    if ignore_index is not None and (not isinstance(ignore_index, int) or 0 <= ignore_index < len(names)):
        raise DatasetError(
            f"{path}: ignore_index {ignore_index!r} must be an integer outside 0..{len(names) - 1} or null"
        )
    ignore_colours = doc.get("ignore_colors", doc.get("ignore_colours", [])) or []
    ign_cols = [_rgb_triple(c, path, "ignore colour") for c in ignore_colours]
    masks = doc.get("masks", "color" if colors else "index")
    if masks == "colour":
        masks = "color"
    if masks not in ("color", "index"):
        raise DatasetError(f"{path}: 'masks' must be 'color' or 'index', not {masks!r}")
    if masks == "color" and not colors:
        raise DatasetError(f"{path}: colour masks need a 'color' for every class")
    if masks == "color" and ign_cols and ignore_index is None:
        raise DatasetError(f"{path}: ignore_colors need an ignore_index")
    return ClassFile(names, np.asarray(colors, np.uint8) if colors else None, ignore_index, ign_cols, masks)


def _read_document(path: Path) -> dict:
    """The parsed file as a mapping with a non-empty ``classes`` list (a bare list is one)."""
    try:
        text = path.read_text()
        doc = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise DatasetError(f"{path}: cannot parse class file: {type(e).__name__}: {e}") from None
    if isinstance(doc, list):
        doc = {"classes": doc}
    if not isinstance(doc, dict) or not isinstance(doc.get("classes"), list) or not doc["classes"]:
        raise DatasetError(f"{path}: expected a mapping with a non-empty 'classes' list")
    return doc


def _classes(entries: list, path: Path) -> tuple[list[str], list[list[int]]]:
    """Class names and colours (empty when no class has one) of the ``classes`` entries."""
    names: list[str] = []
    colors: list[list[int]] = []
    for j, c in enumerate(entries):
        if isinstance(c, str):
            names.append(c)
            continue
        if not isinstance(c, dict) or "name" not in c:
            raise DatasetError(f"{path}: class entry {j} must be a name or a mapping with 'name' (and 'color')")
        names.append(str(c["name"]))
        col = c.get("color", c.get("colour"))
        if col is not None:
            colors.append(_rgb_triple(col, path, f"class '{c['name']}'"))
    if len(set(names)) != len(names):
        raise DatasetError(f"{path}: duplicate class names")
    if colors and len(colors) != len(names):
        raise DatasetError(f"{path}: either every class or no class must have a 'color'")
    if colors and len({tuple(c) for c in colors}) != len(colors):
        raise DatasetError(f"{path}: two classes share one colour")
    return names, colors


def _rgb_triple(v, path: Path, what: str) -> list[int]:
    if not isinstance(v, (list, tuple)) or len(v) != 3 or not all(isinstance(x, int) and 0 <= x <= 255 for x in v):
        raise DatasetError(f"{path}: {what}: colour {v!r} must be [r, g, b] with integers 0..255")
    return [int(x) for x in v]
