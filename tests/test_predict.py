"""Saving and loading fitted methods (identical predictions, no code run when loading) and
`bench predict` end to end: a tiny suite run, then masks and overlays for a folder of images."""

from __future__ import annotations

import dataclasses
import json
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from baselines.state_files import TRUSTED_TYPES, load_estimator, save_estimator
from bench.cli import main
from bench.datasets import get_dataset
from bench.method import FITTED_FILE, FitContext, MethodError, create_method, method_class
from bench.predict import PredictError, find_job, predict_folder
from bench.store import RecordStore

torch.set_num_threads(1)

#: extra trees fit fastest; every other classifier is tested once below
SMALL = {"max_train_images": 4, "n_estimators": 10, "classifier": "et"}
SUPERPIXEL = {**SMALL, "n_segments": 60, "ssvm_epochs": 3}
#: every classical method, and each region classifier once
CLASSICAL = [
    ("majority", {}), ("location-prior", {"grid": [16, 8]}), ("sobel", SMALL), ("laplacian", SMALL), ("log", SMALL), ("canny", SMALL),
    ("region-growing", SMALL), ("mser", SMALL), ("superpixel-unary", SUPERPIXEL), ("superpixel-crf", SUPERPIXEL),
    ("sobel", {**SMALL, "classifier": "hgb"}), ("sobel", {**SMALL, "classifier": "rf"}),
    ("sobel", {**SMALL, "classifier": "logreg"}),
]
NETWORK = {"width": 0.125, "scale": 0.25, "epochs": 1, "batch_size": 4, "num_workers": 0}


@pytest.fixture(scope="module")
def shapes():
    return get_dataset("shapes", n_train=4, n_val=2, n_test=0, size=(48, 64))


@pytest.fixture(scope="module")
def images(shapes):
    """Images to compare predictions on: the val split and one of another size."""
    rng = np.random.default_rng(0)
    return [s.image for s in shapes.split("val")] + [rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)]


def fit(name, settings, train, run_dir=None):
    method = create_method(name, settings)
    method.fit(train, None, FitContext(run_dir=run_dir, progress=False))
    return method


# ------------------------------------------------------------------ save and load
def test_every_method_of_segbench_declares_save():
    names = [e.name for e in entry_points(group="segbench.methods") if e.value.startswith(("baselines.", "deep."))]
    assert "majority" in names and "unet" in names
    for name in names:
        assert method_class(name).capabilities.save, name


@pytest.mark.parametrize("name, settings", CLASSICAL, ids=[f"{n}-{s.get('classifier', '')}" for n, s in CLASSICAL])
def test_a_loaded_classical_method_predicts_identically(name, settings, shapes, images, tmp_path):
    method = fit(name, settings, shapes.split("train"))
    method.save(tmp_path)
    loaded = method_class(name).load(tmp_path)
    assert loaded.settings == method.settings and loaded.info == method.info
    for image in images:
        expected = method.predict(image)
        np.testing.assert_array_equal(loaded.predict(image), expected)
    assert loaded.num_parameters() == method.num_parameters()
    saved = sorted(p.name for p in tmp_path.iterdir())
    assert FITTED_FILE in saved and not [n for n in saved if n.endswith((".pkl", ".pickle", ".joblib"))]


def test_a_loaded_network_predicts_identically(shapes, images, tmp_path):
    train, val = shapes.split("train"), shapes.split("val")
    method = create_method("unet", NETWORK)
    method.fit(train, val, FitContext(run_dir=tmp_path / "run", progress=False))
    method.save(tmp_path / "run")  # as the runner does: model.pt is already there
    method.save(tmp_path / "copy")  # another folder gets its own model.pt
    assert (tmp_path / "copy" / "model.pt").read_bytes() == (tmp_path / "run" / "model.pt").read_bytes()
    for folder in ("run", "copy"):
        loaded = method_class("unet").load(tmp_path / folder, method.settings)
        assert loaded.num_parameters() == method.num_parameters()
        for image in images:
            np.testing.assert_array_equal(loaded.predict(image), method.predict(image))


def test_loading_checks_what_it_reads(shapes, tmp_path):
    method = fit("sobel", SMALL, shapes.split("train"))
    sobel = method_class("sobel")
    with pytest.raises(MethodError, match="no saved fitted state"):
        sobel.load(tmp_path)
    method.save(tmp_path)
    with pytest.raises(MethodError, match="not 'laplacian'"):
        method_class("laplacian").load(tmp_path)
    other = dataclasses.replace(method.settings, n_estimators=11)
    with pytest.raises(MethodError, match="other settings"):
        sobel.load(tmp_path, other)
    assert sobel.load(tmp_path, method.settings).info == method.info
    fitted = tmp_path / FITTED_FILE
    meta = json.loads(fitted.read_text())
    assert meta["version"] == sobel.version
    fitted.write_text(json.dumps({**meta, "version": sobel.version - 1}))  # an older algorithm's state
    with pytest.raises(MethodError, match=f"saved by version {sobel.version - 1} of sobel.*fit it again"):
        sobel.load(tmp_path)
    del meta["version"]  # a state saved before versions were written: loaded as it is
    fitted.write_text(json.dumps(meta))
    assert sobel.load(tmp_path).info == method.info
    (tmp_path / "regions.npz").write_bytes(b"not an npz")
    with pytest.raises(MethodError, match="regions.npz: not a readable array file"):
        sobel.load(tmp_path)
    (tmp_path / "classifier.skops").unlink()
    with pytest.raises(MethodError, match="classifier.skops: missing"):
        sobel.load(tmp_path)
    with pytest.raises(MethodError, match="before fit"):
        create_method("majority").save(tmp_path / "nothing")


class Trap:
    """A type no list trusts: building it from a file would run its code."""

    built = False

    def __setstate__(self, state):
        Trap.built = True
        self.__dict__.update(state)


def test_a_skops_file_with_an_untrusted_type_is_refused_unbuilt(tmp_path):
    from sklearn.preprocessing import FunctionTransformer

    path = save_estimator(tmp_path / "classifier.skops", FunctionTransformer(func=print, kw_args={"x": Trap()}))
    with pytest.raises(MethodError, match="not trusted: .*builtins.print") as err:
        load_estimator(path)
    assert "Trap" in str(err.value) and not Trap.built
    assert TRUSTED_TYPES == {"sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
                             "sklearn.tree._tree.Tree"}


# ------------------------------------------------------------------ bench predict end to end
PALETTE = [[0, 0, 0], [230, 25, 75], [245, 130, 48], [0, 130, 200], [60, 180, 75], [145, 30, 180]]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A tiny suite (majority, sobel, unet) run by the CLI on a folder dataset with a palette."""
    tmp = tmp_path_factory.mktemp("predict-run")
    data = tmp / "data"
    source = get_dataset("shapes", n_train=6, n_val=2, n_test=0, size=(48, 64))
    for split in ("train", "val"):
        for s in source.split(split):
            for kind, array in (("images", s.image), ("masks", s.label)):
                (data / kind / split).mkdir(parents=True, exist_ok=True)
                Image.fromarray(array).save(data / kind / split / f"{s.id}.png")
    names = ["background", "hstripes", "vstripes", "checker", "dots", "gradient"]
    (data / "classes.yaml").write_text(yaml.safe_dump(
        {"classes": [{"name": n, "color": c} for n, c in zip(names, PALETTE)], "masks": "index"}))
    suite = tmp / "tiny.yaml"
    suite.write_text(yaml.safe_dump({"description": "predict test", "jobs": [
        {"method": "majority"}, {"method": "sobel", "settings": SMALL},
        {"method": "unet", "settings": {**NETWORK, "batch_size": 8}}]}))
    out = tmp / "results"
    assert main(["run", "--suite", str(suite), "--dataset", "folder", "--data-root", str(data), "--out", str(out),
                 "--no-progress"]) == 0
    return out


@pytest.fixture
def user_images(tmp_path):
    """Three images of the user's: PNG, JPEG, and an odd size."""
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(1)
    shapes = get_dataset("shapes", n_train=0, n_val=0, n_test=2, size=(48, 64)).split("test")
    Image.fromarray(shapes[0].image).save(folder / "street.png")
    Image.fromarray(shapes[1].image).save(folder / "field.jpg", quality=90)
    Image.fromarray(rng.integers(0, 256, (30, 41, 3), dtype=np.uint8)).save(folder / "odd.jpeg")
    (folder / "notes.txt").write_text("not an image")
    return folder


def one_line_error(capsys) -> str:
    lines = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
    assert lines and lines[-1].startswith("segbench: error:"), lines
    return lines[-1]


@pytest.mark.parametrize("job", ["majority", "sobel", "unet"])
def test_bench_predict_writes_masks_and_overlays(job, finished_run, user_images, tmp_path, capsys):
    out = tmp_path / "masks"
    assert main(["predict", "--results", str(finished_run), "--job", job, "--images", str(user_images),
                 "--out", str(out), "--no-progress"]) == 0
    assert "3 masks and overlays written" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [
        "field.png", "field_overlay.png", "odd.png", "odd_overlay.png", "street.png", "street_overlay.png"]
    record = find_job(finished_run, job)
    method = method_class(job).load(finished_run / "runs" / record.job_id)
    for stem, suffix in (("street", ".png"), ("field", ".jpg"), ("odd", ".jpeg")):
        image = np.asarray(Image.open(user_images / f"{stem}{suffix}").convert("RGB"))
        mask = np.asarray(Image.open(out / f"{stem}.png"))
        assert mask.shape == image.shape[:2] and mask.dtype == np.uint8 and mask.max() < 6
        np.testing.assert_array_equal(mask, method.predict(image))
        shown = np.asarray(Image.open(out / f"{stem}_overlay.png"))
        colours = np.asarray(PALETTE, np.float64)[mask]  # the dataset's palette from classes.yaml
        np.testing.assert_array_equal(shown, np.rint(0.5 * image + 0.5 * colours).astype(np.uint8))


def test_bench_predict_by_job_id_and_its_errors(finished_run, user_images, tmp_path, capsys):
    sobel = find_job(finished_run, "sobel")
    result = predict_folder(finished_run, sobel.job_id, user_images, tmp_path / "a", alpha=0.0, progress=False)
    assert len(result.masks) == 3
    street = np.asarray(Image.open(user_images / "street.png"))
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "a" / "street_overlay.png")), street)

    def error(job, images=user_images, out=tmp_path / "b"):
        code = main(["predict", "--results", str(finished_run), "--job", job, "--images", str(images),
                     "--out", str(out), "--no-progress"])
        assert code != 0
        return one_line_error(capsys)

    assert "no job 'nope'" in error("nope") and sobel.job_id in error("nope")
    assert "image folder" in error("sobel", images=tmp_path / "none")
    assert "would overwrite the image street.png" in error("sobel", out=user_images)
    (user_images / "street.jpg").write_bytes((user_images / "field.jpg").read_bytes())
    assert "would both write street.png" in error("sobel")
    (user_images / "street.jpg").unlink()
    (user_images / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    assert "bad.png" in error("sobel")
    (user_images / "bad.png").unlink()

    store = RecordStore(finished_run)
    failed = dataclasses.replace(store.get(sobel.job_id), job_id="sobel-000000000000", status="failed",
                                 error="ValueError: boom")
    store.write(failed)
    try:
        assert find_job(finished_run, "sobel").job_id == sobel.job_id  # a failed job leaves the name unambiguous
        assert "job sobel-000000000000 failed (ValueError: boom)" in error("sobel-000000000000")
        store.write(dataclasses.replace(failed, status="ok", error=None))
        assert "2 finished jobs of method 'sobel'" in error("sobel")
    finally:
        (store.records_dir / "sobel-000000000000.json").unlink()

    fitted = finished_run / "runs" / sobel.job_id / FITTED_FILE
    saved = fitted.read_bytes()
    fitted.unlink()
    try:
        assert "rerun it with --force to save its fitted state" in error("sobel")
    finally:
        fitted.write_bytes(saved)
    with pytest.raises(PredictError, match="alpha"):
        predict_folder(finished_run, "sobel", user_images, tmp_path / "c", alpha=2.0)


def test_fitted_json_says_what_was_fitted(finished_run):
    record = find_job(finished_run, "unet")
    meta = json.loads((finished_run / "runs" / record.job_id / FITTED_FILE).read_text())
    assert meta["method"] == "unet" and meta["info"]["palette"] == PALETTE
    assert meta["settings"]["width"] == 0.125 and Path(finished_run / "runs" / record.job_id / "model.pt").is_file()
