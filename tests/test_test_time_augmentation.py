"""Test-time augmentation of the deep methods (``tta_flip``, ``tta_scales``): what the
averaged prediction is, and that jobs differing only in it share one fit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from PIL import Image

from bench.method import FitContext, MethodError, create_method, fit_settings, method_class
from bench.predict import load_job_method, predict_folder
from bench.record import Record
from bench.report import build_report
from bench.run import Runner, plan_jobs
from bench.suites import Suite, SuiteJob
from deep.engine.inference import predict_labels
from conftest import read_records
from test_train import colour_split

torch.set_num_threads(1)

TINY = {"width": 0.0625, "epochs": 2, "batch_size": 4, "lr": 0.01, "crop": [32, 32], "num_workers": 0}


def lopsided_net(seed: int = 0) -> nn.Module:
    """A random, untrained network whose 5x5 kernels are not mirror-symmetric and whose
    output depends on the column (a bias that grows to the right): its plain predictions of an
    image and of its mirror image disagree."""
    torch.manual_seed(seed)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Sequential(nn.Conv2d(3, 8, 5, padding=2), nn.ReLU(), nn.Conv2d(8, 4, 5, padding=2))

        def forward(self, x):
            ramp = torch.linspace(-2, 2, x.shape[-1], device=x.device)
            return self.conv(x) + ramp * torch.tensor([1.0, -1.0, 0.5, 0.0]).view(1, 4, 1, 1)

    return Net().eval()


def image(seed: int = 3, size=(29, 41)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


CPU = torch.device("cpu")


def test_flip_averaging_makes_the_prediction_mirror_symmetric():
    net, img = lopsided_net(), image()
    plain = predict_labels(net, img, CPU)
    plain_of_mirror = predict_labels(net, np.ascontiguousarray(img[:, ::-1]), CPU)[:, ::-1]
    assert (plain != plain_of_mirror).any()  # the network itself is not symmetric
    flipped = predict_labels(net, img, CPU, flip=True)
    flipped_of_mirror = predict_labels(net, np.ascontiguousarray(img[:, ::-1]), CPU, flip=True)[:, ::-1]
    np.testing.assert_array_equal(flipped, flipped_of_mirror)
    assert flipped.shape == img.shape[:2] and flipped.dtype == np.int32


def test_flip_prediction_is_the_argmax_of_the_mean_probability():
    net, img = lopsided_net(1), image(4)
    x = (torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
         - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        probs = net(x).softmax(1) + net(x.flip(-1)).flip(-1).softmax(1)
    np.testing.assert_array_equal(predict_labels(net, img, CPU, flip=True), probs.argmax(1)[0].numpy())


def test_one_pass_is_the_plain_prediction():
    net, img = lopsided_net(2), image(5)
    np.testing.assert_array_equal(predict_labels(net, img, CPU, scales=(1.0,)), predict_labels(net, img, CPU))
    # one pass at factor 2 of scale 0.5 is the plain prediction at scale 1
    np.testing.assert_array_equal(predict_labels(net, img, CPU, scale=0.5, scales=(2.0,)),
                                  predict_labels(net, img, CPU, scale=1.0))


def test_scales_change_the_prediction_and_keep_its_size():
    net, img = lopsided_net(3), image(6, size=(48, 64))
    several = predict_labels(net, img, CPU, scales=(0.5, 1.0, 1.5))
    assert several.shape == (48, 64)
    assert (several != predict_labels(net, img, CPU)).any()


@pytest.mark.parametrize("scales", [(), (0.0,), (1.0, -0.5)])
def test_bad_scales_are_refused(scales):
    with pytest.raises(ValueError, match="scales"):
        predict_labels(lopsided_net(), image(), CPU, scales=scales)


def test_tta_settings_are_checked_and_stay_out_of_the_fit():
    s = create_method("unet", {"tta_scales": [0.75, 1, 1.25], "tta_flip": True}).settings
    assert s.tta_scales == (0.75, 1, 1.25) and s.tta_flip is True
    for bad in ({"tta_scales": []}, {"tta_scales": [0.0]}, {"tta_scales": ["big"]}, {"tta_flip": "yes"}):
        with pytest.raises(MethodError):
            create_method("unet", bad)
    cls = method_class("unet")
    assert fit_settings(cls, {"epochs": 3, "tta_flip": True, "tta_scales": (1.0, 2.0)}) == {"epochs": 3}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    method = create_method("unet", TINY)
    method.fit(colour_split(8, seed=1), None, FitContext(run_dir=tmp_path_factory.mktemp("unet"), progress=False))
    folder = tmp_path_factory.mktemp("saved")
    method.save(folder)
    return method, folder


def test_a_saved_fit_loads_with_any_tta_but_not_with_another_training(fitted):
    method, folder = fitted
    cls = type(method)
    with_tta = create_method("unet", {**TINY, "tta_flip": True, "tta_scales": [0.75, 1.0]}).settings
    loaded = cls.load(folder, with_tta)
    img = colour_split(1, seed=9)[0].image
    assert loaded.settings.tta_flip is True
    expected = predict_labels(method.model, img, CPU, flip=True, scales=(0.75, 1.0))
    np.testing.assert_array_equal(loaded.predict(img), expected)
    with pytest.raises(MethodError, match="other settings"):
        cls.load(folder, create_method("unet", {**TINY, "epochs": 3}).settings)


def test_jobs_that_differ_only_in_tta_share_one_fit(tmp_path):
    suite = Suite("tta", "", "shapes", [SuiteJob("unet", {**TINY, "crop": None}),
                                        SuiteJob("unet", {**TINY, "crop": None, "tta_flip": True})], Path("tta.yaml"))
    plain, tta = plan_jobs(suite, None)
    assert plain.fit_id == tta.fit_id and plain.job_id != tta.job_id
    Runner(tmp_path, progress=False).run([plain, tta])
    records = {r["job_id"]: r for r in read_records(tmp_path)}
    assert "fit_reused_from" not in records[plain.job_id]["extra"]
    assert records[tta.job_id]["extra"]["fit_reused_from"] == plain.job_id
    assert records[tta.job_id]["settings"]["tta_flip"] is True
    build_report(tmp_path)
    board = (tmp_path / "leaderboard.md").read_text()
    assert "test-time flip (2 passes)" in board

    # `bench predict` of the TTA job: the plain job's saved fit, with the TTA job's flip
    photos = tmp_path / "photos"
    photos.mkdir()
    photo = image(7, size=(40, 56))
    Image.fromarray(photo).save(photos / "street.png")
    predict_folder(tmp_path, tta.job_id, photos, tmp_path / "masks", progress=False)
    plain_method = method_class("unet").load(tmp_path / "runs" / plain.job_id)
    expected = predict_labels(plain_method.model, photo, CPU, flip=True)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "masks" / "street.png")), expected)
    # the flip was asked for (a 2-epoch fit may predict one class either way, so the labels
    # alone cannot show it): the TTA job loads the plain fit with its own settings
    records = {job_id: Record.from_dict(r) for job_id, r in records.items()}
    assert load_job_method(tmp_path, records[tta.job_id]).settings.tta_flip is True
    assert load_job_method(tmp_path, records[plain.job_id]).settings.tta_flip is False
