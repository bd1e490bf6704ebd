"""Property-based tests of the dataset readers (hypothesis).

Random sizes, image modes (RGB, RGBA, L, LA, P, 16-bit grey, 1-bit, JPEG), label encodings
(8-bit grey, palette, 16-bit, grey-as-RGB), label values (classes, the void index, values
outside the classes) and damaged files are written with Pillow / scipy into the on-disk
layout of each reader. Every sample must either load as an HxWx3 uint8 image and an HxW
integer label map of the same size holding exactly the values written, or raise
DatasetError naming the file at fault -- never anything else.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import write_bsds_gt, write_label_list, write_mat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from bench.datasets import DatasetError, get_dataset
from bench.datasets.decoding import read_index_mask, read_rgb

SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: image modes written as PNG, and those also written as JPEG
PNG_IMAGE_MODES = ("RGB", "RGBA", "L", "LA", "P", "I;16", "1")
JPEG_IMAGE_MODES = ("RGB", "L", "CMYK")
#: how a label map is stored; "colour" is an RGB mask with unequal channels (not an index mask)
LABEL_ENCODINGS = ("L", "P", "I;16", "RGB", "RGBA", "LA")


# --------------------------------------------------------------------------- writers
def _pil(array: np.ndarray, mode: str) -> Image.Image:
    h, w = array.shape[:2]
    if mode == "I;16":
        return Image.frombytes("I;16", (w, h), np.ascontiguousarray(array, dtype="<u2").tobytes())
    if mode == "1":
        return Image.fromarray(np.asarray(array, bool))
    return Image.frombytes(mode, (w, h), np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_test_image(path: Path, mode: str, fmt: str, rng: np.random.Generator, h: int, w: int) -> np.ndarray | None:
    """Write an image in ``mode``; return the RGB pixels a reader must return (None: lossy)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode in ("RGB", "CMYK"):
        a = rng.integers(0, 256, (h, w, 3 if mode == "RGB" else 4), dtype=np.uint8)
        im, expect = _pil(a, mode), (a if mode == "RGB" else None)
    elif mode == "RGBA":
        a = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
        im, expect = _pil(a, mode), a[..., :3]
    elif mode == "L":
        g = rng.integers(0, 256, (h, w), dtype=np.uint8)
        im, expect = _pil(g, mode), np.repeat(g[..., None], 3, 2)
    elif mode == "LA":
        a = rng.integers(0, 256, (h, w, 2), dtype=np.uint8)
        im, expect = _pil(a, mode), np.repeat(a[..., :1], 3, 2)
    elif mode == "P":
        idx = rng.integers(0, 256, (h, w), dtype=np.uint8)
        pal = rng.integers(0, 256, (256, 3), dtype=np.uint8)
        im = _pil(idx, "P")
        im.putpalette(pal.ravel().tolist())
        expect = pal[idx]
    elif mode == "I;16":
        g = rng.integers(0, 65536, (h, w), dtype=np.uint16)
        im, expect = _pil(g, mode), np.repeat((g >> 8).astype(np.uint8)[..., None], 3, 2)
    elif mode == "1":
        b = rng.random((h, w)) < 0.5
        im, expect = _pil(b, mode), np.repeat((b * 255).astype(np.uint8)[..., None], 3, 2)
    else:  # pragma: no cover
        raise AssertionError(mode)
    if fmt == "jpg":
        im.save(path, format="JPEG", quality=90)
        return None
    im.save(path, format="PNG")
    return expect


def write_label(path: Path, label: np.ndarray, encoding: str, rng: np.random.Generator) -> None:
    """Store an HxW label map (values must fit the encoding: < 256 unless I;16)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if encoding == "I;16":
        im = _pil(label.astype(np.uint16), "I;16")
    elif encoding == "L":
        im = _pil(label.astype(np.uint8), "L")
    elif encoding == "P":
        im = _pil(label.astype(np.uint8), "P")
        im.putpalette(rng.integers(0, 256, 768, dtype=np.uint8).tolist())
    elif encoding == "RGB":
        im = _pil(np.repeat(label.astype(np.uint8)[..., None], 3, 2), "RGB")
    elif encoding == "RGBA":
        a = np.concatenate([np.repeat(label.astype(np.uint8)[..., None], 3, 2),
                            rng.integers(0, 256, label.shape + (1,), dtype=np.uint8)], axis=2)
        im = _pil(a, "RGBA")
    elif encoding == "LA":
        a = np.stack([label.astype(np.uint8), rng.integers(0, 256, label.shape, dtype=np.uint8)], axis=2)
        im = _pil(a, "LA")
    else:  # pragma: no cover
        raise AssertionError(encoding)
    im.save(path, format="PNG")


def corrupt(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: max(1, len(data) // 2)])
    elif how == "garbage":
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 2)
    elif how == "empty":
        path.write_bytes(b"")
    else:  # pragma: no cover
        raise AssertionError(how)


# --------------------------------------------------------------------------- sample specs
@dataclass
class Spec:
    h: int
    w: int
    image_mode: str
    image_fmt: str
    encoding: str
    seed: int
    bad_value: int | None  # a value outside the classes written into the label (None: all valid)
    mask_size_delta: int  # != 0: the mask has another height than the image
    damage: str | None  # "image:<how>" / "mask:<how>" / None


@st.composite
def specs(draw, bad_values: st.SearchStrategy, encodings=LABEL_ENCODINGS, damage=True, max_side=20) -> Spec:
    h = draw(st.integers(1, max_side))
    w = draw(st.integers(1, max_side))
    fmt = draw(st.sampled_from(("png", "png", "png", "jpg")))
    mode = draw(st.sampled_from(PNG_IMAGE_MODES if fmt == "png" else JPEG_IMAGE_MODES))
    enc = draw(st.sampled_from(encodings))
    bad = draw(st.one_of(st.none(), st.none(), bad_values))
    if bad is not None and bad > 255 and enc != "I;16":
        bad = None
    delta = draw(st.sampled_from((0, 0, 0, 0, 0, 1)))
    dmg = None
    if damage:
        dmg = draw(st.sampled_from((None,) * 8 + ("image:truncate", "image:garbage", "mask:truncate", "mask:empty")))
    return Spec(h, w, mode, fmt, enc, draw(st.integers(0, 2**32 - 1)), bad, delta, dmg)


def label_for(spec: Spec, valid: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A label map of the spec's size from ``valid`` values, plus the bad value if any."""
    lab = rng.choice(valid, size=(spec.h + spec.mask_size_delta, spec.w)).astype(np.int64)
    if spec.bad_value is not None:
        lab.flat[rng.integers(0, lab.size)] = spec.bad_value
    return lab


def expected_error_file(spec: Spec, image: Path, mask: Path) -> Path | None:
    """Which file a reader must name, in the order FileSplit.load checks things."""
    if spec.damage and spec.damage.startswith("image:"):
        return image
    if spec.damage and spec.damage.startswith("mask:"):
        return mask
    if spec.mask_size_delta or spec.bad_value is not None:
        return mask
    return None


def check_sample(split, index: int, spec: Spec, image: Path, mask: Path, expect_rgb, expect_label) -> None:
    bad_file = expected_error_file(spec, image, mask)
    if bad_file is not None:
        with pytest.raises(DatasetError) as ei:
            split[index]
        assert str(bad_file) in str(ei.value), (spec, str(ei.value))
        return
    s = split[index]
    assert s.image.dtype == np.uint8 and s.image.shape == (spec.h, spec.w, 3), (spec, s.image.shape)
    assert np.issubdtype(s.label.dtype, np.integer) and s.label.shape == (spec.h, spec.w), (spec, s.label.dtype)
    if expect_rgb is not None:
        np.testing.assert_array_equal(s.image, expect_rgb, err_msg=str(spec))
    if expect_label is not None:
        np.testing.assert_array_equal(s.label.astype(np.int64), expect_label, err_msg=str(spec))


def check_split(split, written: dict) -> None:
    """:func:`check_sample` for every sample of ``split``; ``written`` maps its ids to what was written."""
    for i, sid in enumerate(split.ids):
        check_sample(split, i, *written[sid])


def _write_pair(spec: Spec, image: Path, mask: Path, valid: np.ndarray, encode_label=None):
    rng = np.random.default_rng(spec.seed)
    expect_rgb = write_test_image(image, spec.image_mode, spec.image_fmt, rng, spec.h, spec.w)
    lab = label_for(spec, valid, rng)
    (encode_label or (lambda p, l: write_label(p, l, spec.encoding, rng)))(mask, lab)
    if spec.damage:
        which, how = spec.damage.split(":")
        corrupt(image if which == "image" else mask, how)
    return expect_rgb, lab


# --------------------------------------------------------------------------- low level
@SETTINGS
@given(mode=st.sampled_from(PNG_IMAGE_MODES), h=st.integers(1, 30), w=st.integers(1, 30), seed=st.integers(0, 2**32 - 1))
def test_read_rgb_gives_exact_hxwx3_uint8(mode, h, w, seed):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "x.png"
        expect = write_test_image(p, mode, "png", np.random.default_rng(seed), h, w)
        got = read_rgb(p)
        assert got.dtype == np.uint8 and got.shape == (h, w, 3) and got.flags.c_contiguous
        np.testing.assert_array_equal(got, expect)


@SETTINGS
@given(enc=st.sampled_from(LABEL_ENCODINGS), h=st.integers(1, 30), w=st.integers(1, 30), seed=st.integers(0, 2**32 - 1),
       top=st.sampled_from((2, 12, 256, 65536)))
def test_read_index_mask_round_trips_every_encoding(enc, h, w, seed, top):
    rng = np.random.default_rng(seed)
    if enc != "I;16":
        top = min(top, 256)
    lab = rng.integers(0, top, (h, w))
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m.png"
        write_label(p, lab, enc, rng)
        got = read_index_mask(p)
        assert got.shape == (h, w) and np.issubdtype(got.dtype, np.integer)
        np.testing.assert_array_equal(got.astype(np.int64), lab)


@SETTINGS
@given(h=st.integers(1, 20), w=st.integers(1, 20), seed=st.integers(0, 2**32 - 1),
       damage=st.sampled_from(("truncate", "garbage", "empty")), reader=st.sampled_from(("rgb", "mask")))
def test_damaged_files_raise_dataset_error_naming_them(h, w, seed, damage, reader):
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "bad file.png"
        write_test_image(p, "RGB", "png", rng, h, w) if reader == "rgb" else write_label(p, rng.integers(0, 5, (h, w)), "L", rng)
        corrupt(p, damage)
        with pytest.raises(DatasetError, match=re.escape(str(p))):
            (read_rgb if reader == "rgb" else read_index_mask)(p)


@SETTINGS
@given(h=st.integers(1, 20), w=st.integers(1, 20), seed=st.integers(0, 2**32 - 1))
def test_a_colour_mask_is_not_an_index_mask(h, w, seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    a[0, 0] = (1, 2, 3)  # at least one pixel with unequal channels
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "colour.png"
        _pil(a, "RGB").save(p)
        with pytest.raises(DatasetError, match="colour image"):
            read_index_mask(p)


# --------------------------------------------------------------------------- readers
CAMVID_K, CAMVID_VOID = 11, 11


@SETTINGS
@given(samples=st.lists(specs(st.integers(CAMVID_VOID + 1, 65535)), min_size=1, max_size=3),
       scale=st.sampled_from((1.0, 1.0, 0.5, 0.3, 2.0)))
def test_camvid_reader(samples, scale):
    valid = np.arange(CAMVID_K + 1)  # classes 0..10 and void 11
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "camvid"
        written = {}
        for j, spec in enumerate(samples):
            name = f"0001TP_{j:03d}"
            image = root / "train" / f"{name}.{spec.image_fmt}"
            mask = root / "trainannot" / f"{name}.png"
            written[name] = (spec, image, mask, *_write_pair(spec, image, mask, valid))
        split = get_dataset("camvid", root, scale=scale).split("train")
        assert split.ids == sorted(written)
        for i, name in enumerate(split.ids):
            spec, image, mask, _, expect_label = written[name]
            if scale == 1.0:
                check_sample(split, i, *written[name])
            elif expected_error_file(spec, image, mask) is not None:
                with pytest.raises(DatasetError, match=re.escape(str(expected_error_file(spec, image, mask)))):
                    split[i]
            else:  # resized: sizes follow the scale, labels keep only values that were there
                s = split[i]
                size = (max(1, round(spec.h * scale)), max(1, round(spec.w * scale)))
                assert s.image.shape == size + (3,) and s.image.dtype == np.uint8
                assert s.label.shape == size and np.issubdtype(s.label.dtype, np.integer)
                assert set(np.unique(s.label)) <= set(np.unique(expect_label))


COLOUR_CLASSES = [[128, 64, 128], [64, 0, 128], [0, 128, 0], [200, 200, 200]]


@SETTINGS
@given(samples=st.lists(specs(st.none(), encodings=("RGB", "RGBA", "P")), min_size=1, max_size=3),
       unknown=st.booleans())
def test_folder_reader_with_colour_masks(samples, unknown):
    """Colour masks through a classes.yaml palette (ignore colour black -> 255); a colour in
    neither list is an error naming the mask."""
    import yaml

    colours = np.array(COLOUR_CLASSES + [[0, 0, 0]], np.uint8)
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "folder"
        root.mkdir()
        (root / "classes.yaml").write_text(yaml.safe_dump({
            "classes": [{"name": f"c{i}", "color": c} for i, c in enumerate(COLOUR_CLASSES)],
            "ignore_index": 255, "ignore_colors": [[0, 0, 0]]}))
        written = {}
        for j, spec in enumerate(samples):
            spec.bad_value = 1 if unknown and j == len(samples) - 1 else None  # marks the one with an odd colour
            enc = spec.encoding

            def encode(path, lab, enc=enc, odd=spec.bad_value is not None):
                idx = lab.astype(np.uint8)  # 0..3 classes, 4 the ignore colour
                pal = np.zeros((256, 3), np.uint8)
                pal[: len(colours)] = colours
                pal[10] = (1, 2, 3)  # a colour in neither list
                if odd:
                    idx.flat[0] = 10
                if enc == "P":
                    im = _pil(idx, "P")
                    im.putpalette(pal.ravel().tolist())
                elif enc == "RGBA":
                    im = _pil(np.concatenate([pal[idx], np.full(idx.shape + (1,), 77, np.uint8)], axis=2), "RGBA")
                else:
                    im = _pil(pal[idx], "RGB")
                path.parent.mkdir(parents=True, exist_ok=True)
                im.save(path, format="PNG")

            name = f"img{j}"
            image = root / "images" / "train" / f"{name}.{spec.image_fmt}"
            mask = root / "masks" / "train" / f"{name}.png"
            expect_rgb, lab = _write_pair(spec, image, mask, np.arange(len(colours)), encode)
            lab = np.where(lab == len(colours) - 1, 255, lab)
            written[name] = (spec, image, mask, expect_rgb, lab)
        split = get_dataset("folder", root).split("train")
        check_split(split, written)


@SETTINGS
@given(samples=st.lists(specs(st.integers(0, 65535)), min_size=1, max_size=3),
       k=st.integers(1, 300), ignore_kind=st.sampled_from(("255", "none", "above")))
def test_folder_reader_with_index_masks(samples, k, ignore_kind):
    ignore = {"none": None, "255": 255 if k <= 255 else None, "above": k + 5}[ignore_kind]
    valid = np.arange(k) if ignore is None else np.append(np.arange(k), ignore)
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "folder"
        written = {}
        for j, spec in enumerate(samples):
            if valid.max() > 255:
                spec.encoding = "I;16"  # the only encoding that holds such values
            if spec.bad_value is not None and (spec.bad_value < k or spec.bad_value == ignore):
                spec.bad_value = None  # a legal value after all
            name = f"img{j}"
            image = root / "images" / "train" / f"{name}.{spec.image_fmt}"
            mask = root / "masks" / "train" / f"{name}.png"
            written[name] = (spec, image, mask, *_write_pair(spec, image, mask, valid))
        ds = get_dataset("folder", root, num_classes=k, ignore_index=ignore)
        assert ds.info.num_classes == k and ds.info.ignore_index == ignore
        split = ds.split("train")
        assert sorted(split.ids) == sorted(written)
        check_split(split, written)


@SETTINGS
@given(samples=st.lists(specs(st.integers(0, 65535), encodings=("L",)), min_size=1, max_size=3),
       k=st.integers(2, 12), dtype=st.sampled_from(("uint8", "uint16", "int32", "int64", "int8", "float64", "bool")),
       negative=st.booleans())
def test_ccp_reader_with_mat_annotations(samples, k, dtype, negative):
    names = ["null"] + [f"cls{i}" for i in range(1, k)]
    valid = np.arange(k) if dtype == "int8" else np.append(np.arange(k), 255)  # + the ignore index, where it fits
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "ccp"
        write_label_list(root / "label_list.mat", names)
        written = {}
        for j, spec in enumerate(samples):
            sid = f"{j + 1:04d}"
            image = root / "photos" / f"{sid}.{spec.image_fmt}"
            mask = root / "annotations" / "pixel-level" / f"{sid}.mat"
            if dtype == "bool" or (spec.bad_value is not None and (spec.bad_value < k or spec.bad_value == 255)):
                spec.bad_value = None  # bool holds no bad value; a class or 255 is not one
            if negative and dtype in ("int8", "int32", "int64"):
                spec.bad_value = -1
            if spec.bad_value is not None:
                spec.bad_value = int(np.array(spec.bad_value).astype(dtype))  # what the dtype can hold
                if 0 <= spec.bad_value < k or spec.bad_value == 255:
                    spec.bad_value = None

            def encode(path, lab, dtype=dtype):
                arr = lab.astype(dtype) if dtype != "bool" else (lab % 2).astype(bool)
                write_mat(path, groundtruth=arr)

            expect_rgb, lab = _write_pair(spec, image, mask, valid if dtype != "bool" else np.arange(2), encode)
            if dtype == "bool":
                lab = lab % 2
            if dtype == "float64":  # not an integer array: always an error naming the .mat file
                spec.bad_value = spec.bad_value if spec.bad_value is not None else 0.5
            written[sid] = (spec, image, mask, expect_rgb, lab)
        ds = get_dataset("ccp", root, train_ids=sorted(written))
        split = ds.split("train")
        assert split.ids == sorted(written)
        check_split(split, written)


@SETTINGS
@given(samples=st.lists(specs(st.sampled_from((1, 2, 128, 254, 256, 65535)), encodings=("L", "P", "I;16", "RGB")),
                        min_size=2, max_size=4))
def test_isbi2012_reader(samples):
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "isbi2012"
        written = {}
        for j, spec in enumerate(samples):
            image = root / "image" / f"{j}.{spec.image_fmt}"
            mask = root / "label" / f"{j}.png"
            expect_rgb, lab = _write_pair(spec, image, mask, np.array([0, 255]))
            written[str(j)] = (spec, image, mask, expect_rgb, (lab == 255).astype(np.int64))
        ds = get_dataset("isbi2012", root, val_fraction=0.5)
        for name in ds.split_names():
            split = ds.split(name)
            check_split(split, written)


@SETTINGS
@given(samples=st.lists(specs(st.none(), encodings=("L",)), min_size=1, max_size=3),
       annotators=st.integers(1, 3), bnd_dtype=st.sampled_from(("uint8", "bool")), disagree=st.booleans())
def test_bsds500_reader(samples, annotators, bnd_dtype, disagree):
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "bsds500"
        written = {}
        for j, spec in enumerate(samples):
            sid = str(100075 + j)
            image = root / "images" / "val" / f"{sid}.{spec.image_fmt}"
            mask = root / "groundTruth" / "val" / f"{sid}.mat"
            if spec.damage and spec.damage.startswith("mask:"):
                spec.damage = "mask:garbage"
            # annotators whose maps disagree in size: an error naming the .mat file
            bad_shape = disagree and annotators > 1 and j == 0
            boundary = {}

            def encode(path, lab, bad_shape=bad_shape, boundary=boundary):
                rng = np.random.default_rng(lab.size)
                annots, bnds = [], []
                for a in range(annotators):
                    shape = (lab.shape[0] + 1, lab.shape[1]) if bad_shape and a == annotators - 1 else lab.shape
                    seg = rng.integers(1, 4, shape).astype(np.uint16)
                    bnd = rng.random(shape) < 0.2
                    bnds.append(bnd)
                    annots.append((seg, bnd.astype(bnd_dtype)))
                write_bsds_gt(path, annots)
                if not bad_shape:
                    boundary["label"] = np.logical_or.reduce(bnds).astype(np.int64)

            expect_rgb, _ = _write_pair(spec, image, mask, np.arange(2), encode)
            if bad_shape:
                spec.bad_value = -1  # marks the sample as bad (the .mat file)
            written[sid] = (spec, image, mask, expect_rgb, boundary.get("label"))
        split = get_dataset("bsds500", root).split("val")
        check_split(split, written)


@SETTINGS
@given(masks=st.lists(st.tuples(st.integers(1, 8), st.integers(1, 8), st.sampled_from((3, 12, 256, 400)),
                                st.sampled_from(("L", "P", "I;16")), st.sampled_from((None,) * 6 + ("truncate",)),
                                st.integers(0, 2**32 - 1)), min_size=1, max_size=4),
       ignore=st.sampled_from((255, None)))
def test_folder_counts_classes_from_the_masks_or_names_the_bad_one(masks, ignore):
    """Without num_classes the folder reader scans every mask: K = largest value (not the
    ignore index) + 1; an unreadable mask, or a value above the ignore index (which would
    make the ignore index a class), is an error naming that mask."""
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "folder"
        top, first_bad = -1, None
        for j, (h, w, hi, enc, damage, seed) in enumerate(masks):
            rng = np.random.default_rng(seed)
            hi = hi if enc == "I;16" else min(hi, 256)
            lab = rng.integers(0, hi, (h, w))
            write_test_image(root / "images" / "train" / f"m{j}.png", "RGB", "png", rng, h, w)
            mask = root / "masks" / "train" / f"m{j}.png"
            write_label(mask, lab, enc, rng)
            vals = lab[lab != ignore] if ignore is not None else lab
            if first_bad is None:
                if damage:
                    corrupt(mask, damage)
                    first_bad = mask
                elif vals.size and ignore is not None and max(top, int(vals.max())) > ignore:
                    first_bad = mask
            if vals.size:
                top = max(top, int(vals.max()))
        if first_bad is not None:
            with pytest.raises(DatasetError, match=re.escape(str(first_bad))):
                get_dataset("folder", root, ignore_index=ignore)
        elif top < 0:
            with pytest.raises(DatasetError, match="every mask is entirely ignore_index"):
                get_dataset("folder", root, ignore_index=ignore)
        else:
            ds = get_dataset("folder", root, ignore_index=ignore)
            assert ds.info.num_classes == top + 1 and ds.info.ignore_index == ignore
            split = ds.split("train")
            for i in range(len(split)):
                s = split[i]
                assert s.image.shape[:2] == s.label.shape and s.image.dtype == np.uint8
