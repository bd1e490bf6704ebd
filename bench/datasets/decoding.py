"""Decoding image, mask and .mat files into arrays, and checking label maps.

Every function here raises :class:`~bench.datasets.types.DatasetError` naming the file at
fault; nothing is skipped or repaired silently.

Decoding is done with Pillow, which (with ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` left at
its default ``False``) refuses truncated PNG and JPEG files instead of returning partly
grey pixels the way OpenCV's decoder does. A PNG whose pixel data is complete but whose
``IEND`` chunk is missing is also refused. EXIF orientation is *not* applied: masks are
aligned with the stored pixel grid. The format of a file is the one its bytes say, never
the one its name suggests.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from bench.datasets.types import DatasetError, DatasetInfo

#: Pillow's names of the lossless formats a mask may be stored in (PPM covers PGM)
MASK_FORMATS = ("PNG", "BMP", "TIFF", "PPM")


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
        im = Image.open(io.BytesIO(data))
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


def read_index_mask(path: str | Path, formats: Sequence[str] = MASK_FORMATS) -> np.ndarray:
    """Read a single-channel label image as HxW ``uint8`` (8-bit files) or ``int32`` (16-bit):
    the one reader of index masks (datasets, ``bench evaluate``).

    The file must be in one of ``formats`` (Pillow's names; default: the lossless ones) by
    its content, whatever its name says: a JPEG named ``.png`` is refused. Palette ("P")
    PNGs give their palette indices. A 3-channel mask whose three channels are equal
    everywhere is accepted (its first channel is used); any other colour mask is an error:
    use :func:`colour_mask_to_index` for those.
    """
    path = Path(path)
    im = _open_image(path)
    if im.format not in formats:
        raise DatasetError(
            f"{path}: the file is {im.format or 'of an unknown format'}, not {' or '.join(formats)} "
            "(an index mask must be stored losslessly)"
        )
    mode = im.mode
    if mode in ("L", "P", "1"):
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
