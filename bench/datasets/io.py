"""File reading and validation shared by every dataset reader.

Every function here raises :class:`~bench.datasets.types.DatasetError` naming the file or
folder at fault; nothing is skipped or repaired silently.

Decoding is done with Pillow, which (with ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` left at
its default ``False``) refuses truncated PNG and JPEG files instead of returning partly
grey pixels the way OpenCV's decoder does. A PNG whose pixel data is complete but whose
``IEND`` chunk is missing is also refused. EXIF orientation is *not* applied: masks are
aligned with the stored pixel grid.
"""

from __future__ import annotations

import io as _io
import json
import re
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from bench.datasets.types import DatasetError, DatasetInfo, FileSplit, Sample

__all__ = [
    "IMAGE_EXTS", "MASK_EXTS",
    "read_rgb", "read_index_mask", "read_colour_mask", "colour_mask_to_index", "check_label_range",
    "read_mat", "list_files", "pair_files", "natural_key", "split_ids", "read_id_list",
    "resize_pair", "ScaledFileSplit", "label_palette", "load_classes_file",
]

#: image extensions recognised when listing folders (lower case)
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
#: mask extensions recognised when listing folders (lower case); lossless formats only
MASK_EXTS = (".png", ".bmp", ".tif", ".tiff", ".pgm")


# --------------------------------------------------------------------------- decoding
def _open_image(path: Path) -> Image.Image:
    """Open and fully decode an image with Pillow; DatasetError naming the file if bad."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except OSError as e:
        raise DatasetError(f"{path}: cannot read file: {e}") from None
    if not data:
        raise DatasetError(f"{path}: file is empty")
    try:
        im = Image.open(_io.BytesIO(data))
        im.load()
    except UnidentifiedImageError:
        raise DatasetError(f"{path}: not a readable image (unknown or corrupt format)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise DatasetError(f"{path}: corrupt or truncated image: {e}") from None
    except Image.DecompressionBombError as e:  # pragma: no cover - huge files only
        raise DatasetError(f"{path}: {e}") from None
    if im.format == "PNG" and data.rfind(b"IEND") == -1:
        raise DatasetError(f"{path}: truncated PNG (no IEND chunk)")
    if ImageFile.LOAD_TRUNCATED_IMAGES and im.format == "JPEG" and data.rfind(b"\xff\xd9") == -1:
        raise DatasetError(f"{path}: truncated JPEG (no end-of-image marker)")
    return im


def _to_uint8(a: np.ndarray, path: Path) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    if a.dtype in (np.uint16, np.dtype(">u2"), np.dtype("<u2")):
        return (a.astype(np.uint16) >> 8).astype(np.uint8)
    if np.issubdtype(a.dtype, np.integer):
        # Pillow's "I" mode: a 16-bit file decoded to int32
        if a.size and (a.min() < 0 or a.max() > 65535):
            raise DatasetError(f"{path}: integer image with values outside 0..65535")
        return (a.astype(np.uint32) >> 8).astype(np.uint8)
    raise DatasetError(f"{path}: unsupported pixel type {a.dtype} for an RGB image")


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image as HxWx3 ``uint8`` RGB.

    Grey images are repeated to 3 channels, alpha is dropped, palette images are
    expanded, 16-bit data is scaled to 8 bit (high byte). An unreadable, empty or
    truncated file raises :class:`DatasetError` naming it.
    """
    path = Path(path)
    im = _open_image(path)
    mode = im.mode
    if mode in ("RGB",):
        a = np.asarray(im)
    elif mode in ("L", "P", "PA", "LA", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV", "1", "La", "RGBa"):
        if mode in ("L", "LA", "La"):
            a = np.asarray(im.convert("L"))
            a = np.repeat(a[:, :, None], 3, axis=2)
        else:
            a = np.asarray(im.convert("RGB"))
    elif mode.startswith("I"):  # I, I;16, I;16B, I;16L ...
        g = _to_uint8(np.asarray(im), path)
        a = np.repeat(g[:, :, None], 3, axis=2)
    else:
        raise DatasetError(f"{path}: unsupported image mode '{mode}'")
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:  # pragma: no cover - defensive
        raise DatasetError(f"{path}: decoded to shape {a.shape} {a.dtype}, expected HxWx3 uint8")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise DatasetError(f"{path}: image has zero size")
    return np.ascontiguousarray(a)


def read_index_mask(path: str | Path) -> np.ndarray:
    """Read a single-channel label PNG as HxW ``uint8`` (8-bit files) or ``int32`` (16-bit).

    Palette ("P") PNGs give their palette indices. A 3-channel mask whose three channels
    are equal everywhere is accepted (its first channel is used); any other colour mask
    is an error: use :func:`colour_mask_to_index` for those.
    """
    path = Path(path)
    im = _open_image(path)
    mode = im.mode
    if mode in ("L", "P"):
        return np.array(im, dtype=np.uint8)
    if mode == "1":
        return np.array(im, dtype=np.uint8)
    if mode in ("LA", "PA"):
        return np.array(im.getchannel(0), dtype=np.uint8)
    if mode.startswith("I"):
        a = np.asarray(im)
        if a.ndim != 2:  # pragma: no cover - defensive
            raise DatasetError(f"{path}: index mask decoded to shape {a.shape}, expected HxW")
        return a.astype(np.int32)
    if mode in ("RGB", "RGBA"):
        a = np.asarray(im)
        r, g, b = a[..., 0], a[..., 1], a[..., 2]
        if np.array_equal(r, g) and np.array_equal(r, b):
            return np.ascontiguousarray(r)
        diff = np.flatnonzero((r != g) | (r != b))
        y, x = divmod(int(diff[0]), a.shape[1])
        raise DatasetError(
            f"{path}: expected a single-channel index mask but it is a colour image "
            f"(pixel x={x}, y={y} is RGB {tuple(int(v) for v in a[y, x, :3])}; {diff.size} pixels "
            "have unequal channels); give a palette (class colours) to read colour masks"
        )
    raise DatasetError(f"{path}: unsupported mask mode '{mode}' (expected a single-channel PNG)")


def read_colour_mask(path: str | Path) -> np.ndarray:
    """Read a colour-coded mask as HxWx3 ``uint8`` RGB (palette PNGs are expanded)."""
    return read_rgb(path)


def _pack(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    return (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2].astype(np.int32)


def colour_mask_to_index(
    rgb: np.ndarray,
    palette: np.ndarray | Sequence[Sequence[int]],
    path: str | Path = "<array>",
    ignore_colours: Iterable[Sequence[int]] = (),
    ignore_index: int | None = 255,
) -> np.ndarray:
    """Map an HxWx3 colour mask to class indices with ``palette`` (K,3): row k -> class k.

    Pixels whose colour is one of ``ignore_colours`` become ``ignore_index``. Vectorised:
    each RGB triple is packed into one int32 and looked up with ``np.searchsorted``.
    A colour in neither list raises :class:`DatasetError` naming ``path``, the first such
    colour (raster order), where it is and how many pixels have it.
    Returns ``uint8`` when every value fits, else ``int32``.
    """
    path = Path(path) if not isinstance(path, Path) else path
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        raise DatasetError(f"{path}: colour mask has shape {rgb.shape}, expected HxWx3")
    pal = np.asarray(palette, dtype=np.int64).reshape(-1, 3)
    ign = np.asarray(list(ignore_colours), dtype=np.int64).reshape(-1, 3)
    if len(ign) and ignore_index is None:
        raise ValueError("ignore_colours given but ignore_index is None")
    codes = _pack(pal)
    values = np.arange(len(pal), dtype=np.int64)
    if len(ign):
        codes = np.concatenate([codes, _pack(ign)])
        values = np.concatenate([values, np.full(len(ign), ignore_index, np.int64)])
    # the same colour twice: the first entry (a class) wins over an ignore colour
    codes_u, first = np.unique(codes, return_index=True)
    values_u = values[first]
    packed = _pack(rgb[..., :3])
    pos = np.searchsorted(codes_u, packed)
    pos_c = np.minimum(pos, len(codes_u) - 1)
    found = codes_u[pos_c] == packed
    if not found.all():
        bad = np.flatnonzero(~found.ravel())
        y, x = divmod(int(bad[0]), rgb.shape[1])
        colour = tuple(int(v) for v in rgb[y, x, :3])
        count = int(np.count_nonzero(packed == packed[y, x]))
        n_colours = np.unique(packed.ravel()[bad]).size
        raise DatasetError(
            f"{path}: colour RGB {colour} (first at x={x}, y={y}, {count} pixels) is not in the "
            f"palette; {bad.size} pixels in {n_colours} unknown colour(s)"
        )
    vmax = int(values_u.max(initial=0))
    dtype = np.uint8 if vmax <= 255 else np.int32
    return values_u.astype(dtype)[pos_c]


def check_label_range(label: np.ndarray, info: DatasetInfo, path: str | Path = "<array>") -> None:
    """Every value must be a class index in ``[0, K)`` or the ignore index, else DatasetError."""
    k = info.num_classes
    ign = info.ignore_index
    label = np.asarray(label)
    if not np.issubdtype(label.dtype, np.integer):
        raise DatasetError(f"{path}: label map has non-integer type {label.dtype}")
    if label.dtype == np.uint8:
        hist = np.bincount(label.ravel(), minlength=256)
        ok = np.zeros(256, bool)
        ok[: min(k, 256)] = True
        if ign is not None and 0 <= ign < 256:
            ok[ign] = True
        bad_vals = np.flatnonzero((hist > 0) & ~ok)
        if bad_vals.size == 0:
            return
        counts = hist[bad_vals]
    else:
        valid = (label >= 0) & (label < k)
        if ign is not None:
            valid |= label == ign
        if valid.all():
            return
        bad_vals, counts = np.unique(label[~valid], return_counts=True)
    shown = ", ".join(f"{int(v)} ({int(c)} px)" for v, c in zip(bad_vals[:10], counts[:10]))
    more = f" and {bad_vals.size - 10} more" if bad_vals.size > 10 else ""
    allowed = f"0..{k - 1}" + (f" or {ign} (ignore)" if ign is not None else "")
    raise DatasetError(f"{path}: label values outside the {k} classes of {info.name}: {shown}{more}; allowed {allowed}")


def read_mat(path: str | Path, key: str) -> object:
    """Load ``key`` from a MATLAB .mat file (v5; v7.3/HDF5 is not supported)."""
    import scipy.io

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    try:
        m = scipy.io.loadmat(str(path))
    except NotImplementedError:
        raise DatasetError(f"{path}: MATLAB v7.3 (HDF5) files are not supported; re-save with -v7") from None
    except Exception as e:  # scipy raises many types for garbage input
        raise DatasetError(f"{path}: not a readable .mat file: {type(e).__name__}: {e}") from None
    if key not in m:
        keys = [k for k in m if not k.startswith("__")]
        raise DatasetError(f"{path}: no variable '{key}' (has: {', '.join(keys) or 'none'})")
    return m[key]


# --------------------------------------------------------------------------- folders and ids
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


# --------------------------------------------------------------------------- resizing
def resize_pair(image: np.ndarray, label: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Resize an image (``cv2.INTER_AREA`` down, ``INTER_LINEAR`` up) and its label map
    (nearest neighbour at pixel centres, any integer dtype) by ``scale``."""
    if scale == 1.0:
        return image, label
    h, w = label.shape
    nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    img = cv2.resize(image, (nw, nh), interpolation=interp)
    rows = np.minimum(((np.arange(nh) + 0.5) * h / nh).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(nw) + 0.5) * w / nw).astype(np.int64), w - 1)
    lab = label[rows[:, None], cols[None, :]]
    return np.ascontiguousarray(img), np.ascontiguousarray(lab)


def check_scale(scale: float, what: str) -> float:
    try:
        scale = float(scale)
    except (TypeError, ValueError):
        raise DatasetError(f"{what}: option scale={scale!r} is not a number") from None
    if not 0 < scale <= 4:
        raise DatasetError(f"{what}: option scale={scale} must be in (0, 4]")
    return scale


class ScaledFileSplit(FileSplit):
    """A :class:`FileSplit` that resizes each validated sample by ``scale`` on load."""

    def __init__(self, info, name, pairs, decode_label, ids=None, scale: float = 1.0):
        super().__init__(info, name, pairs, decode_label, ids=ids)
        self.scale = float(scale)

    def load(self, index: int) -> Sample:
        s = super().load(index)
        if self.scale != 1.0:
            s.image, s.label = resize_pair(s.image, s.label, self.scale)
        return s


# --------------------------------------------------------------------------- palettes / class files
def label_palette(n: int) -> np.ndarray:
    """The PASCAL VOC bit-interleaved palette: ``n`` distinct RGB colours, class 0 black."""
    pal = np.zeros((n, 3), np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[i] = (r, g, b)
    return pal


def load_classes_file(path: str | Path) -> dict:
    """Read a ``classes.yaml``/``classes.json`` file (format: see :mod:`bench.datasets.folder`).

    Returns ``{"names": [...], "colors": (K,3) uint8 or None, "ignore_index": int|None,
    "ignore_colors": [[r,g,b], ...], "masks": "color"|"index"}``.
    """
    path = Path(path)
    try:
        text = path.read_text()
        if path.suffix.lower() == ".json":
            doc = json.loads(text)
        else:
            import yaml

            doc = yaml.safe_load(text)
    except Exception as e:
        raise DatasetError(f"{path}: cannot parse class file: {type(e).__name__}: {e}") from None
    if isinstance(doc, list):
        doc = {"classes": doc}
    if not isinstance(doc, dict) or not isinstance(doc.get("classes"), list) or not doc["classes"]:
        raise DatasetError(f"{path}: expected a mapping with a non-empty 'classes' list")
    names: list[str] = []
    colors: list[list[int]] = []
    for j, c in enumerate(doc["classes"]):
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
    ignore_index = doc.get("ignore_index", 255)
    if ignore_index is not None and (not isinstance(ignore_index, int) or 0 <= ignore_index < len(names)):
        raise DatasetError(f"{path}: ignore_index {ignore_index!r} must be an integer outside 0..{len(names) - 1} or null")
    ign_cols = [_rgb_triple(c, path, "ignore colour") for c in doc.get("ignore_colors", doc.get("ignore_colours", [])) or []]
    masks = doc.get("masks", "color" if colors else "index")
    if masks == "colour":
        masks = "color"
    if masks not in ("color", "index"):
        raise DatasetError(f"{path}: 'masks' must be 'color' or 'index', not {masks!r}")
    if masks == "color" and not colors:
        raise DatasetError(f"{path}: colour masks need a 'color' for every class")
    if masks == "color" and ign_cols and ignore_index is None:
        raise DatasetError(f"{path}: ignore_colors need an ignore_index")
    return {
        "names": names,
        "colors": np.asarray(colors, np.uint8) if colors else None,
        "ignore_index": ignore_index,
        "ignore_colors": ign_cols,
        "masks": masks,
    }


def _rgb_triple(v, path: Path, what: str) -> list[int]:
    if not isinstance(v, (list, tuple)) or len(v) != 3 or not all(isinstance(x, int) and 0 <= x <= 255 for x in v):
        raise DatasetError(f"{path}: {what}: colour {v!r} must be [r, g, b] with integers 0..255")
    return [int(x) for x in v]
