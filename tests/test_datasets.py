"""Dataset readers: real files in tmp_path, real decoding, every bad-data case named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from bench.datasets import (
    DEFAULT_DATASET, Dataset, DatasetError, DatasetInfo, InMemorySplit, Sample, dataset_class, dataset_names,
    get_dataset, register_dataset,
)
from bench.datasets.decoding import check_label_range, colour_mask_to_index, read_index_mask, read_rgb
from bench.datasets.file_split import resize_pair
from bench.datasets.pairing import pair_files, split_ids
from bench.datasets.palettes import colorize

from conftest import CCP_NAMES, LANDCOVER_COLOURS, make_camvid, rand_image, write_image, write_mat


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


# =========================================================================== io
class TestReadRgb:
    def test_rgb_png_and_jpeg(self, tmp_path):
        a = rand_image(np.random.default_rng(0), 10, 12)
        out = read_rgb(write_image(tmp_path / "a.png", a))
        assert out.dtype == np.uint8 and out.shape == (10, 12, 3)
        np.testing.assert_array_equal(out, a)
        j = read_rgb(write_image(tmp_path / "a.jpg", a, quality=95))
        assert j.shape == (10, 12, 3) and j.dtype == np.uint8

    def test_grey_to_three_channels(self, tmp_path):
        g = np.arange(60, dtype=np.uint8).reshape(6, 10)
        out = read_rgb(write_image(tmp_path / "g.png", g))
        assert out.shape == (6, 10, 3)
        for c in range(3):
            np.testing.assert_array_equal(out[..., c], g)

    def test_rgba_drops_alpha(self, tmp_path):
        a = np.zeros((4, 5, 4), np.uint8)
        a[..., 0], a[..., 1], a[..., 2], a[..., 3] = 10, 20, 30, 7
        out = read_rgb(write_image(tmp_path / "a.png", a))
        assert out.shape == (4, 5, 3)
        assert tuple(out[0, 0]) == (10, 20, 30)

    def test_16bit_scaled_to_8bit(self, tmp_path):
        import cv2

        g = np.array([[0, 257, 65535, 32768]], np.uint16)
        cv2.imwrite(str(tmp_path / "g16.png"), g)
        out = read_rgb(tmp_path / "g16.png")
        assert out.dtype == np.uint8
        assert list(out[0, :, 0]) == [0, 1, 255, 128]
        rgb16 = np.zeros((2, 2, 3), np.uint16)
        rgb16[..., 2] = 65535  # OpenCV writes BGR: this is red
        cv2.imwrite(str(tmp_path / "c16.png"), rgb16)
        out = read_rgb(tmp_path / "c16.png")
        assert out.dtype == np.uint8 and tuple(out[0, 0]) == (255, 0, 0)

    def test_palette_image_expanded(self, tmp_path):
        im = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), mode="P")
        im.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
        im.save(tmp_path / "p.png")
        out = read_rgb(tmp_path / "p.png")
        assert tuple(out[0, 0]) == (255, 0, 0) and tuple(out[0, 1]) == (0, 0, 255)

    @pytest.mark.parametrize("ext", ["png", "jpg"])
    def test_truncated_file_named(self, tmp_path, ext):
        p = write_image(tmp_path / f"cut.{ext}", rand_image(np.random.default_rng(1), 64, 64))
        _truncate(p)
        with pytest.raises(DatasetError, match=f"cut.{ext}"):
            read_rgb(p)

    def test_png_without_iend_is_truncated(self, tmp_path):
        p = write_image(tmp_path / "noend.png", rand_image(np.random.default_rng(1), 16, 16))
        p.write_bytes(p.read_bytes()[:-12])  # drop exactly the IEND chunk
        with pytest.raises(DatasetError, match="noend.png"):
            read_rgb(p)

    def test_garbage_empty_missing_named(self, tmp_path):
        bad = tmp_path / "garbage.png"
        bad.write_bytes(b"this is not an image at all" * 10)
        with pytest.raises(DatasetError, match="garbage.png"):
            read_rgb(bad)
        empty = tmp_path / "empty.jpg"
        empty.write_bytes(b"")
        with pytest.raises(DatasetError, match="empty.jpg"):
            read_rgb(empty)
        with pytest.raises(DatasetError, match="nothere.png"):
            read_rgb(tmp_path / "nothere.png")


class TestMasks:
    def test_index_mask_grey_and_equal_rgb(self, tmp_path):
        m = np.random.default_rng(0).integers(0, 12, (8, 9), dtype=np.uint8)
        out = read_index_mask(write_image(tmp_path / "m.png", m))
        assert out.dtype == np.uint8
        np.testing.assert_array_equal(out, m)
        out3 = read_index_mask(write_image(tmp_path / "m3.png", np.stack([m, m, m], -1)))
        np.testing.assert_array_equal(out3, m)

    def test_index_mask_palette_png_gives_indices(self, tmp_path):
        m = np.array([[0, 3], [2, 1]], np.uint8)
        im = Image.fromarray(m, mode="P")
        im.putpalette([v % 256 for v in range(768)])
        im.save(tmp_path / "voc.png")
        np.testing.assert_array_equal(read_index_mask(tmp_path / "voc.png"), m)

    def test_index_mask_16bit(self, tmp_path):
        import cv2

        m = np.array([[0, 300], [1000, 5]], np.uint16)
        cv2.imwrite(str(tmp_path / "m16.png"), m)
        out = read_index_mask(tmp_path / "m16.png")
        assert out.dtype == np.int32
        np.testing.assert_array_equal(out, m)

    def test_colour_mask_rejected_as_index(self, tmp_path):
        a = np.zeros((4, 4, 3), np.uint8)
        a[1, 2] = (200, 10, 10)
        p = write_image(tmp_path / "colour.png", a)
        with pytest.raises(DatasetError, match=r"colour.png.*x=2, y=1.*\(200, 10, 10\)"):
            read_index_mask(p)

    def test_index_mask_format_from_content_not_suffix(self, tmp_path):
        m = np.random.default_rng(0).integers(0, 12, (8, 9), dtype=np.uint8)
        jpeg = tmp_path / "lossy.png"
        Image.fromarray(m).save(jpeg, format="JPEG", quality=95)
        with pytest.raises(DatasetError, match=r"lossy.png: the file is JPEG"):
            read_index_mask(jpeg)
        bmp = tmp_path / "mask.png"
        Image.fromarray(m).save(bmp, format="BMP")
        np.testing.assert_array_equal(read_index_mask(bmp), m)  # lossless: accepted by default
        with pytest.raises(DatasetError, match=r"mask.png: the file is BMP, not PNG"):
            read_index_mask(bmp, formats=("PNG",))

    def test_colour_to_index_vectorised(self):
        pal = np.array([[10, 20, 30], [0, 255, 0], [255, 255, 255]], np.uint8)
        idx = np.random.default_rng(0).integers(0, 4, (50, 60))
        colours = np.concatenate([pal, [[0, 0, 0]]])
        out = colour_mask_to_index(colours[idx], pal, "x.png", ignore_colours=[[0, 0, 0]], ignore_index=255)
        assert out.dtype == np.uint8
        np.testing.assert_array_equal(out, np.where(idx == 3, 255, idx))

    @settings(max_examples=25, deadline=None)
    @given(st.integers(1, 40), st.integers(0, 2**31 - 1))
    def test_colour_to_index_roundtrip_property(self, k, seed):
        rng = np.random.default_rng(seed)
        codes = rng.choice(2**24, size=k, replace=False)
        pal = np.stack([(codes >> 16) & 255, (codes >> 8) & 255, codes & 255], 1).astype(np.uint8)
        idx = rng.integers(0, k, (7, 9))
        np.testing.assert_array_equal(colour_mask_to_index(pal[idx], pal, "p.png"), idx)

    def test_unknown_colour_names_file_colour_count(self):
        pal = np.array([[10, 20, 30], [0, 255, 0]], np.uint8)
        rgb = np.zeros((5, 5, 3), np.uint8)
        rgb[:] = pal[0]
        rgb[3, 1:4] = (1, 2, 3)
        with pytest.raises(DatasetError, match=r"bad_mask.png: colour RGB \(1, 2, 3\) \(first at x=1, y=3, 3 pixels\)"):
            colour_mask_to_index(rgb, pal, Path("/d/bad_mask.png"))

    def test_check_label_range(self):
        info = DatasetInfo("t", ("a", "b", "c"), np.zeros((3, 3), np.uint8), ignore_index=255)
        check_label_range(np.array([[0, 1, 2, 255]], np.uint8), info, "ok.png")
        with pytest.raises(DatasetError, match=r"lab.png.*7 \(2 px\)"):
            check_label_range(np.array([[0, 7, 7, 255]], np.uint8), info, "lab.png")
        with pytest.raises(DatasetError, match=r"lab32.png.*-1 \(1 px\).*300"):
            check_label_range(np.array([[0, -1, 300]], np.int32), info, "lab32.png")


class TestFolders:
    def test_pair_files_match_and_natural_order(self, tmp_path):
        for n in ("10", "2", "1"):
            (tmp_path / "im").mkdir(exist_ok=True)
            (tmp_path / "ma").mkdir(exist_ok=True)
            (tmp_path / "im" / f"{n}.jpg").write_bytes(b"x")
            (tmp_path / "ma" / f"{n}.png").write_bytes(b"x")
        pairs = pair_files(tmp_path / "im", tmp_path / "ma")
        assert [i for i, _, _ in pairs] == ["1", "2", "10"]
        assert pairs[0][1].name == "1.jpg" and pairs[0][2].name == "1.png"

    def test_unpaired_named(self, tmp_path):
        (tmp_path / "im").mkdir()
        (tmp_path / "ma").mkdir()
        for n in ("a", "b"):
            (tmp_path / "im" / f"{n}.jpg").write_bytes(b"x")
        (tmp_path / "ma" / "a.png").write_bytes(b"x")
        with pytest.raises(DatasetError, match=r"image\(s\) without a mask.*b.jpg"):
            pair_files(tmp_path / "im", tmp_path / "ma")
        (tmp_path / "ma" / "b.png").write_bytes(b"x")
        (tmp_path / "ma" / "c.png").write_bytes(b"x")
        with pytest.raises(DatasetError, match=r"mask\(s\) without an image.*c.png"):
            pair_files(tmp_path / "im", tmp_path / "ma")

    def test_empty_and_missing_folder_named(self, tmp_path):
        (tmp_path / "empty_images").mkdir()
        (tmp_path / "ma").mkdir()
        with pytest.raises(DatasetError, match="empty_images"):
            pair_files(tmp_path / "empty_images", tmp_path / "ma")
        with pytest.raises(DatasetError, match="missing_dir"):
            pair_files(tmp_path / "missing_dir", tmp_path / "ma")

    def test_split_ids_deterministic_partition(self):
        ids = [str(i) for i in range(100)]
        fr = {"train": 0.7, "val": 0.15, "test": 0.15}
        a, b = split_ids(ids, fr, seed=3), split_ids(list(reversed(ids)), fr, seed=3)
        assert a == b
        assert {k: len(v) for k, v in a.items()} == {"train": 70, "val": 15, "test": 15}
        assert sorted(sum(a.values(), []), key=int) == ids
        assert split_ids(ids, fr, seed=4) != a

    def test_resize_pair(self):
        img = np.zeros((40, 60, 3), np.uint8)
        lab = np.zeros((40, 60), np.int32)
        lab[:, 30:] = 7
        i2, l2 = resize_pair(img, lab, 0.5)
        assert i2.shape == (20, 30, 3) and l2.shape == (20, 30) and l2.dtype == np.int32
        assert set(np.unique(l2)) == {0, 7}


# =========================================================================== registry
def test_registry_lists_all_and_rejects_bad_options(fake_camvid):
    assert {"shapes", "ccp", "ccp-mini", "ccp-mini-groups", "camvid", "camvid-holdout", "folder", "landcover", "bsds500", "isbi2012"} <= set(dataset_names())
    with pytest.raises(DatasetError, match="bad options"):
        get_dataset("camvid", fake_camvid, no_such_option=1)
    with pytest.raises(DatasetError, match="needs --data-root"):
        get_dataset("camvid")
    assert DEFAULT_DATASET == "ccp-mini-groups"


def test_every_entry_point_is_a_dataset_named_by_the_registry():
    for name in dataset_names():
        cls = dataset_class(name)
        assert issubclass(cls, Dataset) and cls.name == name


def test_register_dataset_and_import_specs(monkeypatch):
    import bench.datasets

    registry = bench.datasets._REGISTRY
    monkeypatch.setattr(registry, "_classes", dict(registry._classes))  # the test's class is gone afterwards

    @register_dataset("test-tiny")
    class Tiny(Dataset):
        builtin = True
        info = DatasetInfo("test-tiny", ("a",), np.zeros((1, 3), np.uint8))

        def split_names(self):
            return ["train"]

        def split(self, name):
            return InMemorySplit(self.info, name, [Sample(np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2), np.uint8), "0")])

    assert get_dataset("test-tiny").split("train").ids == ["0"] and Tiny.name == "test-tiny"
    assert "test-tiny" in dataset_names()
    with pytest.raises(ValueError, match="camvid' (is already an entry point|registered twice)"):
        register_dataset("camvid")(Tiny)
    assert dataset_class("bench.datasets.camvid:CamVidDataset") is dataset_class("camvid")
    with pytest.raises(DatasetError, match="is not a bench.datasets.Dataset"):
        dataset_class("bench.datasets.types:DatasetInfo")


def test_dataset_info_colorize_is_the_palette_colorize():
    info = DatasetInfo("t", ("a", "b"), np.array([[10, 20, 30], [40, 50, 60]], np.uint8), ignore_index=255)
    lab = np.array([[0, 1], [255, 7]], np.uint8)
    rgb = info.colorize(lab)
    np.testing.assert_array_equal(rgb, colorize(lab, info.palette, 255))
    assert rgb[0, 1].tolist() == [40, 50, 60] and rgb[1].tolist() == [[0, 0, 0], [0, 0, 0]]


#: trees that cannot be opened at all: (dataset, fixture giving the root, damage, what the error names)
BROKEN_TREES = [
    pytest.param("camvid", "tmp_path", lambda root: None, "no CamVid split", id="camvid-empty-root"),
    pytest.param("folder", "fake_folder_colour",
                 lambda root: (root / "classes.yaml").write_text(yaml.safe_dump({"classes": [{"name": "x", "color": [1, 2]}]})),
                 "classes.yaml", id="folder-bad-class-file"),
    pytest.param("folder", "fake_folder_colour",
                 lambda root: write_image(root / "images" / "stray.png", np.zeros((4, 4, 3), np.uint8)),
                 "stray.png", id="folder-mixed-layout"),
    pytest.param("folder", "tmp_path", lambda root: (root / "masks").mkdir(), "images", id="folder-no-images"),
    pytest.param("landcover", "fake_landcover", lambda root: (root / "105_mask.png").unlink(), "105_sat.jpg",
                 id="landcover-image-without-mask"),
    pytest.param("ccp", "fake_ccp", lambda root: (root / "photos" / "0007.jpg").unlink(),
                 "0007.mat: annotation without a photo", id="ccp-annotation-without-photo"),
    pytest.param("ccp", "fake_ccp", lambda root: (root / "label_list.mat").unlink(), "label_list.mat",
                 id="ccp-no-label-list"),
]


@pytest.mark.parametrize("dataset, fixture, damage, match", BROKEN_TREES)
def test_broken_tree_named_on_open(dataset, fixture, damage, match, request):
    root = request.getfixturevalue(fixture)
    damage(root)
    with pytest.raises(DatasetError, match=match):
        get_dataset(dataset, root)


# =========================================================================== shapes
class TestShapes:
    def test_samples_shape_dtype(self, shapes_dataset):
        d = shapes_dataset
        assert d.builtin and d.split_names() == ["train", "val", "test"]
        assert [len(d.split(s)) for s in d.split_names()] == [48, 16, 16]
        s = d.split("val")[3]
        assert s.image.shape == (96, 128, 3) and s.image.dtype == np.uint8
        assert s.label.shape == (96, 128) and s.label.dtype == np.uint8
        assert s.id == "val_0003" and d.split("val").ids[3] == "val_0003"
        assert d.info.num_classes == 6 and d.info.palette.shape == (6, 3)

    def test_deterministic_and_seeded(self):
        a = get_dataset("shapes", seed=0, n_train=4, n_val=2, n_test=2)
        b = get_dataset("shapes", seed=0, n_train=4, n_val=2, n_test=2)
        c = get_dataset("shapes", seed=1, n_train=4, n_val=2, n_test=2)
        ta, tb, tc = a.split("train"), b.split("train"), c.split("train")
        # access in another order: sample i depends only on (seed, split, i)
        for i in (3, 0, 2, 1):
            assert ta[i].image.tobytes() == tb[i].image.tobytes()
            assert ta[i].label.tobytes() == tb[i].label.tobytes()
        assert ta[0].image.tobytes() != tc[0].image.tobytes()
        assert ta[0].image.tobytes() != a.split("val")[0].image.tobytes()
        assert a.split("val")[0].image.tobytes() != a.split("test")[0].image.tobytes()

    def test_options_size_and_counts(self):
        d = get_dataset("shapes", n_train=3, n_val=0, n_test=1, size=(40, 56))
        assert d.split_names() == ["train", "test"]
        assert d.split("train")[2].image.shape == (40, 56, 3)
        with pytest.raises(DatasetError, match="'val' is empty"):
            d.split("val")

    def test_all_classes_present_and_colour_not_enough(self, shapes_dataset):
        train = shapes_dataset.split("train")
        samples = list(train)
        labels = np.stack([s.label for s in samples])
        images = np.stack([s.image for s in samples]).astype(np.float64)
        counts = np.bincount(labels.ravel(), minlength=6)
        assert (counts > 0).all(), counts
        means = np.stack([images[labels == k].mean(0) for k in range(6)])
        # the two stripe classes and the two cool-texture classes share a colour range
        assert np.linalg.norm(means[1] - means[2]) < 25
        assert np.linalg.norm(means[3] - means[4]) < 25
        # ... and a nearest-mean-colour classifier is far from perfect
        d = ((images[..., None, :] - means[None, None, None]) ** 2).sum(-1)
        acc_obj = (d.argmin(-1) == labels)[labels > 0].mean()
        assert acc_obj < 0.75
        # while texture tells the stripes apart: horizontal stripes vary along y
        grey = images.mean(-1)
        gy = np.abs(np.diff(grey, axis=1))[:, :, :-1]
        gx = np.abs(np.diff(grey, axis=2))[:, :-1, :]
        lab = labels[:, :-1, :-1]
        assert gy[lab == 1].mean() > 1.5 * gx[lab == 1].mean()
        assert gx[lab == 2].mean() > 1.5 * gy[lab == 2].mean()

    def test_shapes_vary_in_size(self, shapes_dataset):
        from scipy import ndimage

        sizes = []
        for s in list(shapes_dataset.split("val")):
            for k in range(1, 6):
                lab, n = ndimage.label(s.label == k)
                sizes += list(np.bincount(lab.ravel())[1:])
        sizes = np.array(sizes)
        assert sizes.min() < 100 and sizes.max() > 2000


# =========================================================================== camvid
class TestCamVid:
    def test_loads_fake_tree(self, fake_camvid):
        d = get_dataset("camvid", fake_camvid)
        assert d.split_names() == ["train", "val"]
        assert d.info.num_classes == 11 and d.info.ignore_index == 11
        assert d.info.class_names[0] == "Sky" and d.info.class_names[-1] == "Bicyclist"
        tr = d.split("train")
        assert len(tr) == 3 and tr.ids[0] == "0001TP_train_000"
        s = tr[1]
        assert s.image.shape == (36, 48, 3) and s.image.dtype == np.uint8 and s.label.dtype == np.uint8
        want = np.array(Image.open(fake_camvid / "trainannot" / "0001TP_train_001.png"))
        np.testing.assert_array_equal(s.label, want)
        np.testing.assert_array_equal(s.image, np.array(Image.open(fake_camvid / "train" / "0001TP_train_001.png")))

    def test_scale(self, fake_camvid):
        s = get_dataset("camvid", fake_camvid, scale=0.5).split("val")[0]
        assert s.image.shape == (18, 24, 3) and s.label.shape == (18, 24)
        assert s.label.max() <= 11

    def test_missing_split_named(self, fake_camvid):
        d = get_dataset("camvid", fake_camvid)
        with pytest.raises(DatasetError, match="test"):
            d.split("test")
        with pytest.raises(DatasetError, match="no split 'bogus'"):
            d.split("bogus")

    def test_missing_annot_folder_named(self, fake_camvid):
        import shutil

        shutil.rmtree(fake_camvid / "valannot")
        d = get_dataset("camvid", fake_camvid)
        assert d.split_names() == ["train"]
        with pytest.raises(DatasetError, match="valannot"):
            d.split("val")

    def test_empty_split_folder_named(self, tmp_path):
        (tmp_path / "train").mkdir()
        (tmp_path / "trainannot").mkdir()
        d = get_dataset("camvid", tmp_path)
        with pytest.raises(DatasetError, match=r"train.*no images"):
            d.split("train")

    def test_image_without_mask_named(self, fake_camvid):
        write_image(fake_camvid / "train" / "orphan_0042.png", rand_image(np.random.default_rng(0), 36, 48))
        with pytest.raises(DatasetError, match="orphan_0042.png"):
            get_dataset("camvid", fake_camvid).split("train")

    def test_label_outside_classes_named(self, fake_camvid):
        m = np.zeros((36, 48), np.uint8)
        m[0, :5] = 12
        write_image(fake_camvid / "trainannot" / "0001TP_train_002.png", m)
        tr = get_dataset("camvid", fake_camvid).split("train")
        tr[0]
        with pytest.raises(DatasetError, match=r"0001TP_train_002.png.*12 \(5 px\)"):
            tr[2]

    def test_size_mismatch_named(self, fake_camvid):
        write_image(fake_camvid / "valannot" / "0001TP_val_001.png", np.zeros((30, 48), np.uint8))
        with pytest.raises(DatasetError, match=r"0001TP_val_001.png.*48x30"):
            get_dataset("camvid", fake_camvid).split("val")[1]

    def test_truncated_and_unreadable_image_named(self, fake_camvid):
        _truncate(fake_camvid / "train" / "0001TP_train_000.png")
        (fake_camvid / "val" / "0001TP_val_000.png").write_bytes(b"\x89PNG garbage")
        d = get_dataset("camvid", fake_camvid)
        with pytest.raises(DatasetError, match="0001TP_train_000.png"):
            d.split("train")[0]
        with pytest.raises(DatasetError, match="0001TP_val_000.png"):
            d.split("val")[0]

    def test_colour_annotation_rejected(self, fake_camvid):
        write_image(fake_camvid / "trainannot" / "0001TP_train_000.png", rand_image(np.random.default_rng(0), 36, 48))
        with pytest.raises(DatasetError, match="0001TP_train_000.png.*colour"):
            get_dataset("camvid", fake_camvid).split("train")[0]


# =========================================================================== folder
class TestFolder:
    def test_flat_pool_seeded_split(self, fake_folder):
        d = get_dataset("folder", fake_folder, val_fraction=0.3, seed=1)
        assert d.split_names() == ["train", "val"]
        tr, va = d.split("train"), d.split("val")
        assert len(tr) == 7 and len(va) == 3 and not set(tr.ids) & set(va.ids)
        assert d.info.class_names == ("class0", "class1", "class2")  # inferred from the masks
        s = va[0]
        assert s.image.shape == (20, 30, 3) and s.label.shape == (20, 30)
        np.testing.assert_array_equal(s.label, np.array(Image.open(fake_folder / "masks" / f"{s.id}.png")))
        assert get_dataset("folder", fake_folder, val_fraction=0.3, seed=1).split("val").ids == va.ids
        d3 = get_dataset("folder", fake_folder, val_fraction=0.2, test_fraction=0.2, num_classes=5)
        assert d3.split_names() == ["train", "val", "test"] and d3.info.num_classes == 5

    def test_colour_masks_with_class_file(self, fake_folder_colour):
        d = get_dataset("folder", fake_folder_colour)
        assert d.split_names() == ["train", "val"]
        assert d.info.class_names == ("road", "car", "tree") and d.info.ignore_index == 255
        np.testing.assert_array_equal(d.info.palette[1], [64, 0, 128])
        for split in ("train", "val"):
            for s in d.split(split):
                np.testing.assert_array_equal(s.label, np.load(fake_folder_colour / f"expected_{s.id}.npy"))

    def test_class_file_json_and_index_masks(self, fake_folder):
        (fake_folder / "classes.json").write_text(json.dumps({"classes": ["a", "b", "c"], "ignore_index": 255}))
        d = get_dataset("folder", fake_folder)
        assert d.info.class_names == ("a", "b", "c")
        assert d.split("train")[0].label.max() <= 2

    def test_colour_not_in_palette_named(self, fake_folder_colour):
        p = fake_folder_colour / "masks" / "val" / "val1.png"
        m = np.array(Image.open(p))
        m[2, 3] = (9, 9, 9)
        write_image(p, m)
        d = get_dataset("folder", fake_folder_colour)
        with pytest.raises(DatasetError, match=r"val1.png: colour RGB \(9, 9, 9\)"):
            d.split("val")[1]

    def test_missing_mask_split_folder_named(self, fake_folder_colour):
        import shutil

        shutil.rmtree(fake_folder_colour / "masks" / "val")
        d = get_dataset("folder", fake_folder_colour)
        with pytest.raises(DatasetError, match=r"masks.val"):
            d.split("val")
        with pytest.raises(DatasetError, match="no split 'test'"):
            d.split("test")

    def test_label_outside_classes_named(self, fake_folder):
        m = np.zeros((20, 30), np.uint8)
        m[0, 0] = 9
        write_image(fake_folder / "masks" / "img4.png", m)
        d = get_dataset("folder", fake_folder, num_classes=3, val_fraction=0.0)
        with pytest.raises(DatasetError, match=r"img4.png.*9 \(1 px\)"):
            d.split("train")[4]


# =========================================================================== landcover
class TestLandCover:
    def test_flat_layout_thresholded_colours(self, fake_landcover):
        d = get_dataset("landcover", fake_landcover, val_fraction=0.25, test_fraction=0.25)
        assert d.split_names() == ["train", "val", "test"]
        assert sum(len(d.split(s)) for s in d.split_names()) == 8
        assert d.info.class_names[0] == "urban_land" and d.info.ignore_index == 255
        for name in d.split_names():
            for s in d.split(name):
                assert s.image.shape == (24, 24, 3)
                np.testing.assert_array_equal(s.label, np.load(fake_landcover / f"expected_{s.id}.npy"))

    def test_split_folders_and_unlabelled(self, fake_landcover, tmp_path):
        import shutil

        root = tmp_path / "lc_splits"
        (root / "train").mkdir(parents=True)
        (root / "valid").mkdir()
        for p in fake_landcover.glob("10[0-5]_*"):
            shutil.copy(p, root / "train")
        for p in fake_landcover.glob("10[67]_sat.jpg"):
            shutil.copy(p, root / "valid")  # DeepGlobe's valid/ has no masks
        d = get_dataset("landcover", root, scale=0.5)
        assert d.split_names() == ["train"]
        tr = d.split("train")
        assert len(tr) == 6 and tr[0].image.shape == (12, 12, 3)
        with pytest.raises(DatasetError, match=r"valid.*no \*_mask.png"):
            d.split("val")

    def test_unknown_colour_named(self, fake_landcover):
        m = LANDCOVER_COLOURS[np.zeros((24, 24), int)].copy()
        m[5:7, 5:7] = (250, 10, 20)  # snaps to red: not a DeepGlobe colour
        write_image(fake_landcover / "103_mask.png", m)
        d = get_dataset("landcover", fake_landcover, val_fraction=0, test_fraction=0)
        with pytest.raises(DatasetError, match=r"103_mask.png: colour RGB \(255, 0, 0\).*4 pixels"):
            d.split("train")[3]


# =========================================================================== ccp
class TestCCP:
    def test_loads_fake_tree(self, fake_ccp):
        d = get_dataset("ccp", fake_ccp)
        assert d.info.class_names == tuple(CCP_NAMES) and d.info.num_classes == 59
        assert d.info.ignore_index == 255 and "Co-Parsing" in d.info.citation
        sizes = {k: len(d.split(k)) for k in d.split_names()}
        assert sum(sizes.values()) == 12 and set(sizes) == {"train", "val", "test"}  # 0013/0014 lack annotations
        all_ids = sum((d.split(k).ids for k in d.split_names()), [])
        assert sorted(all_ids) == [f"{j:04d}" for j in range(1, 13)]
        s = d.split("train")[0]
        assert s.image.shape == (30, 20, 3) and s.label.dtype == np.uint8
        import scipy.io

        want = scipy.io.loadmat(str(fake_ccp / "annotations" / "pixel-level" / f"{s.id}.mat"))["groundtruth"]
        np.testing.assert_array_equal(s.label, want)

    def test_seed_changes_split_and_is_repeatable(self, fake_ccp):
        a = get_dataset("ccp", fake_ccp, seed=0).split("train").ids
        assert a == get_dataset("ccp", fake_ccp, seed=0).split("train").ids
        assert a != get_dataset("ccp", fake_ccp, seed=5).split("train").ids

    def test_id_lists(self, fake_ccp, tmp_path):
        f = tmp_path / "val.txt"
        f.write_text("0003\n0004.jpg\n# comment\n")
        d = get_dataset("ccp", fake_ccp, train_ids=["0001", "0002"], val_ids=str(f))
        assert d.split_names() == ["train", "val"]
        assert d.split("val").ids == ["0003", "0004"]
        with pytest.raises(DatasetError, match=r"bad.txt.*0013"):
            (tmp_path / "bad.txt").write_text("0013\n")
            get_dataset("ccp", fake_ccp, train_ids=str(tmp_path / "bad.txt"))

    def test_scale(self, fake_ccp):
        s = get_dataset("ccp", fake_ccp, scale=0.5).split("val")[0]
        assert s.image.shape == (15, 10, 3) and s.label.shape == (15, 10)

    def test_bad_mat_named(self, fake_ccp):
        d = get_dataset("ccp", fake_ccp, train_ids=["0002", "0003"])
        (fake_ccp / "annotations" / "pixel-level" / "0003.mat").write_bytes(b"MATLAB 5.0 nonsense" * 3)
        write_mat(fake_ccp / "annotations" / "pixel-level" / "0002.mat", other=np.zeros((2, 2)))
        with pytest.raises(DatasetError, match=r"0003.mat"):
            d.split("train")[1]
        with pytest.raises(DatasetError, match=r"0002.mat: no variable 'groundtruth'"):
            d.split("train")[0]

    def test_label_outside_classes_named(self, fake_ccp):
        write_mat(fake_ccp / "annotations" / "pixel-level" / "0001.mat", groundtruth=np.full((30, 20), 70, np.uint8))
        d = get_dataset("ccp", fake_ccp, train_ids=["0001"])
        with pytest.raises(DatasetError, match=r"0001.mat.*70"):
            d.split("train")[0]



class TestCCPMini:
    def test_loads_from_package(self):
        from bench.datasets.ccp import MINI_DIR

        d = get_dataset("ccp-mini")
        assert d.builtin and d.info.num_classes == 59 and d.info.class_names[0] == "null"
        assert d.split_names() == ["train", "val"]
        tr, va = d.split("train"), d.split("val")
        assert len(tr) == 32 and len(va) == 16 and not set(tr.ids) & set(va.ids)
        assert all(1 <= int(i) <= 800 for i in tr.ids + va.ids)
        s = va[0]
        assert s.image.dtype == np.uint8 and s.image.ndim == 3 and s.label.shape == s.image.shape[:2]
        assert len(np.unique(s.label)) >= 4
        assert MINI_DIR.is_relative_to(Path(__import__("bench").__file__).parent)

    def test_licence_readme_size(self):
        from bench.datasets.ccp import MINI_DIR

        assert "Apache License" in (MINI_DIR / "LICENSE").read_text()
        readme = (MINI_DIR / "README.md").read_text()
        assert "Clothing Co-Parsing by Joint Image Segmentation and Labeling" in readme and "CVPR" in readme
        assert "scripts/make_ccp_mini.py" in readme
        assert len(json.loads((MINI_DIR / "classes.json").read_text())["classes"]) == 59
        total = sum(p.stat().st_size for p in MINI_DIR.rglob("*") if p.is_file())
        assert total < 3 * 1024 * 1024


# =========================================================================== bsds500
class TestBSDS500:
    def test_loads_fake_tree(self, fake_bsds):
        import scipy.io

        d = get_dataset("bsds500", fake_bsds)
        assert d.split_names() == ["val"] and d.info.class_names == ("non-boundary", "boundary")
        va = d.split("val")
        assert va.ids == ["100075", "100076", "100077"]
        s = va[1]
        assert s.image.shape == (31, 21, 3) and s.label.dtype == np.uint8
        gt = scipy.io.loadmat(str(fake_bsds / "groundTruth" / "val" / "100076.mat"))["groundTruth"]
        bnds = [gt[0, j]["Boundaries"][0, 0].astype(bool) for j in range(gt.shape[1])]
        np.testing.assert_array_equal(s.label, np.logical_or.reduce(bnds).astype(np.uint8))
        got = va.boundaries(1)
        assert len(got) == 4 and all(b.dtype == bool for b in got)
        for g, w in zip(got, bnds):
            np.testing.assert_array_equal(g, w)
        segs = va.segmentations(2)
        assert len(segs) == 5 and segs[0].shape == (21, 31) and segs[0].min() >= 1

    def test_train_and_test_folders_accepted(self, fake_bsds):
        import shutil

        for sub in ("images", "groundTruth"):
            shutil.copytree(fake_bsds / sub / "val", fake_bsds / sub / "train")
            shutil.copytree(fake_bsds / sub / "val", fake_bsds / sub / "test")
        d = get_dataset("bsds500", fake_bsds)
        assert d.split_names() == ["train", "val", "test"]
        assert len(d.split("test")) == 3

    def test_bad_mat_and_missing_split_named(self, fake_bsds):
        p = fake_bsds / "groundTruth" / "val" / "100077.mat"
        write_mat(p, groundTruth=np.zeros((2, 2)))
        d = get_dataset("bsds500", fake_bsds)
        with pytest.raises(DatasetError, match="100077.mat"):
            d.split("val")[2]
        with pytest.raises(DatasetError, match=r"images.train"):
            d.split("train")


# =========================================================================== isbi2012
class TestISBI:
    def test_loads_fake_tree(self, fake_isbi):
        d = get_dataset("isbi2012", fake_isbi)
        assert d.info.class_names == ("membrane", "interior")
        tr, va = d.split("train"), d.split("val")
        assert len(tr) == 9 and len(va) == 3
        assert tr.ids == sorted(tr.ids, key=int)  # numeric order
        s = tr[0]
        assert s.image.shape == (32, 32, 3) and (s.image[..., 0] == s.image[..., 2]).all()
        raw = np.array(Image.open(fake_isbi / "label" / f"{s.id}.png"))
        np.testing.assert_array_equal(s.label, (raw == 255).astype(np.uint8))

    def test_fractions_and_unknown_split_named(self, fake_isbi):
        with pytest.raises(DatasetError, match=r"isbi2012 .*isbi2012: val_fraction=0.6 and test_fraction=0.5"):
            get_dataset("isbi2012", fake_isbi, val_fraction=0.6, test_fraction=0.5)
        d = get_dataset("isbi2012", fake_isbi, val_fraction=0.25, test_fraction=0.25)
        assert d.split_names() == ["train", "val", "test"] and sum(len(d.split(s)) for s in d.split_names()) == 12
        with pytest.raises(DatasetError, match=r"isbi2012: no split 'bogus' \(splits: train, val, test\)"):
            d.split("bogus")

    def test_bad_label_value_named(self, fake_isbi):
        m = np.full((32, 32), 255, np.uint8)
        m[0, 0] = 128
        write_image(fake_isbi / "label" / "10.png", m)
        d = get_dataset("isbi2012", fake_isbi, val_fraction=0.0)
        idx = d.split("train").ids.index("10")
        with pytest.raises(DatasetError, match=r"10.png.*128 \(1 px\)"):
            d.split("train")[idx]


# =========================================================================== real data
def real_root(real_data: Path, name: str) -> Path:
    """The folder of real dataset ``name``; skips the test when it is absent."""
    root = real_data / name
    if not root.is_dir():
        pytest.skip(f"{name} absent")
    return root


@pytest.mark.integration
def test_real_camvid(real_data):
    root = real_root(real_data, "camvid")
    d = get_dataset("camvid", root)
    assert {"train", "val"} <= set(d.split_names()) and d.info.num_classes == 11
    for split in ("train", "val"):
        sp = d.split(split)
        s = sp[0]
        assert s.image.shape == (360, 480, 3) and s.label.shape == (360, 480)
        assert s.label.max() <= 11
    assert len(d.split("train")) == 367 and len(d.split("val")) == 101


@pytest.mark.integration
def test_real_ccp(real_data):
    root = real_root(real_data, "ccp")
    d = get_dataset("ccp", root, scale=0.25)
    assert d.info.num_classes == 59 and d.info.class_names[19] == "hair" and d.info.class_names[41] == "skin"
    assert sum(len(d.split(k)) for k in d.split_names()) == len(list((root / "annotations" / "pixel-level").glob("*.mat")))
    s = d.split("val")[0]
    assert s.image.shape[1] == round(550 * 0.25) and s.label.shape == s.image.shape[:2]


@pytest.mark.integration
def test_real_bsds500(real_data):
    root = real_root(real_data, "bsds500")
    va = get_dataset("bsds500", root).split("val")
    assert len(va) == 100
    s = va[0]
    assert sorted(s.image.shape[:2]) == [321, 481] and set(np.unique(s.label)) <= {0, 1}
    assert len(va.boundaries(0)) >= 3 and len(va.segmentations(0)) == len(va.boundaries(0))


@pytest.mark.integration
def test_real_isbi2012(real_data):
    root = real_root(real_data, "isbi2012")
    d = get_dataset("isbi2012", root)
    assert len(d.split("train")) + len(d.split("val")) == 24
    s = d.split("val")[0]
    assert s.image.shape == (512, 512, 3) and 0.6 < s.label.mean() < 0.95


# =========================================================================== camvid-holdout
class TestCamVidHoldOut:
    @pytest.fixture
    def two_sequences(self, tmp_path) -> Path:
        root = make_camvid(tmp_path / "camvid", {"train": 3, "val": 2})
        rng = np.random.default_rng(1)
        for j in range(2):  # two frames of a second sequence in train
            name = f"0006R0_f{j:05d}.png"
            write_image(root / "train" / name, rand_image(rng, 36, 48))
            write_image(root / "trainannot" / name, rng.integers(0, 12, (36, 48), dtype=np.uint8))
        return root

    def test_sequence_moves_out_of_train(self, two_sequences):
        d = get_dataset("camvid-holdout", two_sequences)
        assert d.split_names() == ["train", "val", "0006R0"] and d.info.name == "camvid-holdout"
        assert d.split("train").ids == ["0001TP_train_000", "0001TP_train_001", "0001TP_train_002"]
        assert d.split("0006R0").ids == ["0006R0_f00000", "0006R0_f00001"]
        assert d.split("val").ids == get_dataset("camvid", two_sequences).split("val").ids
        np.testing.assert_array_equal(d.split("0006R0")[1].label,
                                      get_dataset("camvid", two_sequences).split("train")[4].label)

    def test_bad_sequences_named(self, two_sequences):
        with pytest.raises(DatasetError, match="no train frame of sequence 'Seq05VD'"):
            get_dataset("camvid-holdout", two_sequences, sequence="Seq05VD")
        with pytest.raises(DatasetError, match="nothing would be left"):
            get_dataset("camvid-holdout", two_sequences, sequence="0")
        with pytest.raises(DatasetError, match="no split 'bogus'"):
            get_dataset("camvid-holdout", two_sequences).split("bogus")
