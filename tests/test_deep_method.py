"""deep/method.py: every network as a segbench Method (tiny widths, tiny images)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import deep.method
from bench.method import FitContext, MethodError, create_method, method_class, method_names
from bench.record import job_id
from deep.method import DeepMethod, DeepSettings
from deep.models import model_names
from test_train import colour_split

torch.set_num_threads(1)

TINY = {"width": 0.0625, "epochs": 2, "batch_size": 4, "lr": 0.01, "crop": [32, 32], "num_workers": 0}


@pytest.fixture(scope="module")
def splits():
    return colour_split(8, seed=1), colour_split(4, seed=2, name="val")


def ctx(run_dir, **kw) -> FitContext:
    return FitContext(run_dir=run_dir, **{"progress": False, **kw})


@pytest.fixture(scope="module")
def fitted_unet(splits, tmp_path_factory):
    train_split, val_split = splits
    method = create_method("unet", {**TINY, "keep": "best"})
    method.fit(train_split, val_split, ctx(tmp_path_factory.mktemp("unet-run"), seed=0))
    return method


def test_every_network_is_a_registered_deep_method():
    names = model_names()
    assert {"unet", "segnet-basic", "fcn8s", "dilatednet"} <= set(names)
    for name in names:
        cls = method_class(name)
        assert name in method_names()
        assert issubclass(cls, DeepMethod) and cls.kind == "deep" and cls.network == name and cls.name == name
        assert cls.capabilities.network and cls.capabilities.validation
    assert method_class("segnet-basic") is deep.method.SegNetBasic
    assert method_class("fcn8s") is deep.method.FCN8s


def test_create_network_is_the_untrained_network_of_the_settings():
    method = create_method("segnet", {"width": 0.125})
    with torch.device("meta"):
        net = method.create_network(5)
    assert net.num_classes == 5 and net.width == 0.125 and net.name == "segnet"
    with pytest.raises(MethodError, match="num_classes"):
        method.create_network(1)


@pytest.mark.parametrize("network", ["fcn32s", "fcn16s", "fcn8s", "dilatednet", "unet"])
def test_batch_norm_setting_reaches_the_network(network):
    # the networks whose papers have no BatchNorm take it as a setting; off by default
    for batch_norm in (False, True):
        with torch.device("meta"):
            net = create_method(network, {"width": 0.125, "batch_norm": batch_norm}).create_network(3)
        assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()) == batch_norm
    assert create_method(network).settings.batch_norm is False
    # a setting added at its default keeps the job ids (and the records) of before
    assert job_id(network, {"batch_norm": False}, "d", None, "val", 0, "cpu", "mmseg") \
        == job_id(network, {}, "d", None, "val", 0, "cpu", "mmseg")


def test_dilatednet_context_setting_reaches_the_network():
    with torch.device("meta"):
        assert create_method("dilatednet", {"width": 0.125}).create_network(3).context is not None
        assert create_method("dilatednet", {"width": 0.125, "context": "none"}).create_network(3).context is None
    with pytest.raises(MethodError, match="context must be one of"):
        create_method("dilatednet", {"context": "large"})


def test_dilatednet_dropout_setting_reaches_fc6_and_fc7():
    def rates(settings):
        with torch.device("meta"):
            net = create_method("dilatednet", {"width": 0.125, **settings}).create_network(3)
        return [m.p for m in net.modules() if isinstance(m, torch.nn.Dropout)]

    assert rates({}) == [0.5, 0.5]  # the paper's
    assert rates({"dropout": 0.2}) == [0.2, 0.2]
    assert rates({"dropout": 0.0}) == []  # no dropout layer at all
    with pytest.raises(MethodError, match="dropout must be in"):
        create_method("dilatednet", {"dropout": 1.0})
    # the new setting at its default keeps the job ids of before
    assert job_id("dilatednet", {"dropout": 0.5}, "d", None, "val", 0, "cpu", "mmseg") \
        == job_id("dilatednet", {}, "d", None, "val", 0, "cpu", "mmseg")


def test_fit_and_predict_odd_sizes(fitted_unet):
    method = fitted_unet
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    pred = method.predict(image)
    assert pred.shape == (37, 53) and pred.dtype == np.int32
    assert pred.min() >= 0 and pred.max() < 3
    assert method.num_parameters() == sum(p.numel() for p in method.model.parameters()) > 0

    extra = method.extra_metrics()
    json.dumps(extra)  # goes into a JSON record
    assert extra["network"] == "unet" and extra["epochs_trained"] == 2 and len(extra["val_miou"]) == 2
    assert extra["kept_weights"] == "best" and 1 <= extra["best_epoch"] <= 2
    assert math.isfinite(extra["final_train_loss"])
    assert extra["channels_last"] is (torch.backends.cpu.get_cpu_capability().startswith("AVX512"))  # "auto"
    run_dir = method.context.run_dir
    for name in ("curves.png", "progress.png", "history.csv", "model.pt"):
        assert (run_dir / name).exists(), name
    for name in ("last.pt", "best.pt"):  # training checkpoints (optimiser state) go once training is done
        assert not (run_dir / name).exists(), name
    assert extra["run_dir"] == str(run_dir)
    method.sync()
    with pytest.raises(MethodError, match="HxWx3 uint8"):
        method.predict(image.astype(np.float32))


def test_predictions_score_like_the_trainers_validation(fitted_unet, splits):
    # predict() makes its maps exactly as validation did: same mIoU as the kept epoch's
    _, val_split = splits
    from bench.metrics import ConfusionMatrix, summarize

    cm = ConfusionMatrix(3, 255)
    for sample in val_split:
        cm.update(fitted_unet.predict(sample.image), sample.label)
    extra = fitted_unet.extra_metrics()
    assert math.isclose(summarize(cm.matrix)["miou"], extra["best_val_miou"], rel_tol=1e-9)
    assert extra["train_loss"][-1] < extra["train_loss"][0]


def test_segnet_basic_with_input_scale_and_no_validation(splits, tmp_path):
    train_split, _ = splits
    method = create_method("segnet-basic", {**TINY, "epochs": 1, "scale": 0.5, "crop": 0, "amp": "bf16"})
    method.fit(train_split, None, ctx(tmp_path, seed=1))  # no validation: the last epoch's weights
    pred = method.predict(np.zeros((37, 53, 3), np.uint8))
    assert pred.shape == (37, 53) and pred.dtype == np.int32
    assert method.extra_metrics()["kept_weights"] == "last"
    assert method.extra_metrics()["val_miou"] == [None]


def test_settings_validation():
    assert create_method("unet", {"crop": [24, 32]}).settings.crop == (24, 32)
    assert create_method("unet", {"width": 1}).settings.width == 1.0
    bad = [
        {"width": 0.0}, {"width": -1.0}, {"epochs": 0}, {"batch_size": 0}, {"lr": 0.0},
        {"optimizer": "rmsprop"}, {"schedule": "step"}, {"class_weights": "inverse"}, {"amp": "fp8"},
        {"scale": 0.0}, {"crop": (0, 4)}, {"keep": "first"}, {"num_workers": -1},
        {"scale_range": [1.5, 0.5]}, {"no_such_setting": 1}, {"epochs": "ten"},
        {"batch_eval": 4}, {"resume": True},  # gone: the runner neither batches nor resumes through settings
    ]
    for settings in bad:
        with pytest.raises(MethodError):
            create_method("unet", settings)
    with pytest.raises(MethodError, match="width must be > 0"):
        DeepSettings(width=0)
    s = DeepSettings()
    assert (s.width, s.scale, s.epochs, s.optimizer, s.pretrained, s.from_scratch) == (0.25, 1.0, 20, "adam", None, False)
    # settings that change no result stay out of the job id
    from bench.method import result_settings

    kept = result_settings(DeepMethod, {"num_workers": 2, "keep_checkpoints": True, "epochs": 3})
    assert kept == {"epochs": 3}


def test_bad_device_is_a_method_error(splits, tmp_path):
    method = create_method("segnet-basic", TINY)
    with pytest.raises(MethodError, match="bad device 'gpu0'"):
        method.fit(splits[0], None, FitContext(run_dir=tmp_path, device="gpu0", progress=False))
    if not torch.cuda.is_available():
        with pytest.raises(MethodError, match="CUDA is not available"):
            method.fit(splits[0], None, FitContext(run_dir=tmp_path, device="cuda", progress=False))


def test_predict_before_fit_is_an_error():
    method = create_method("segnet-basic", TINY)
    with pytest.raises(MethodError, match="before fit"):
        method.predict(np.zeros((8, 8, 3), np.uint8))
    assert method.num_parameters() is None and method.extra_metrics() == {}


def test_checkpoint_of_another_class_count_or_network_is_a_clear_error(fitted_unet, tmp_path):
    four = colour_split(4, seed=3, num_classes=4)
    best = str(fitted_unet.context.run_dir / "model.pt")

    method = create_method("unet", {**TINY, "pretrained": best})
    with pytest.raises(MethodError, match="3 classes but the dataset has 4"):
        method.fit(four, None, ctx(tmp_path / "a"))

    method = create_method("segnet-basic", {**TINY, "pretrained": best})
    with pytest.raises(MethodError, match="network 'unet', not 'segnet-basic'"):
        method.fit(colour_split(4, seed=3), None, ctx(tmp_path / "b"))

    three = create_method("unet", {**TINY, "epochs": 1, "keep_checkpoints": True})
    three.fit(colour_split(4, seed=3), None, ctx(tmp_path / "c"))
    assert (tmp_path / "c" / "last.pt").exists() and (tmp_path / "c" / "model.pt").exists()
    method = create_method("unet", TINY)
    with pytest.raises(MethodError, match="3 classes but the dataset has 4"):  # its last.pt has 3 classes
        method.fit(four, None, ctx(tmp_path / "c", resume=True))


def test_unreadable_pretrained_file_says_why(splits, tmp_path):
    torn = tmp_path / "torn.pt"
    torn.write_bytes(b"PK\x03\x04 half a checkpoint")
    method = create_method("unet", {**TINY, "pretrained": str(torn)})
    with pytest.raises(MethodError, match="torn.pt.*not a readable checkpoint"):
        method.fit(splits[0], None, ctx(tmp_path / "a"))
    missing = create_method("fcn8s", {**TINY, "width": 1.0, "pretrained": str(tmp_path / "nope.pt")})
    with pytest.raises(MethodError, match="nope.pt does not exist"):
        missing.fit(splits[0], None, ctx(tmp_path / "b"))


def test_an_interrupted_fit_continues_when_the_runner_says_so(splits, tmp_path):
    """context.resume (set by the runner) continues from the run folder's last.pt; without
    it the same folder's training starts over."""
    train_split, val_split = splits
    first = create_method("unet", {**TINY, "epochs": 1, "keep_checkpoints": True})
    first.fit(train_split, val_split, ctx(tmp_path))  # stands for a training killed after its first epoch
    epoch1 = first.result.history[0]

    def two_epochs(resume: bool):
        method = create_method("unet", {**TINY, "epochs": 2, "keep_checkpoints": True})
        method.fit(train_split, val_split, ctx(tmp_path, resume=resume))
        return method.result.history

    continued = two_epochs(True)
    assert [r["epoch"] for r in continued] == [1, 2]
    assert continued[0] == epoch1  # epoch 1 was not trained again: its row (timings too) is the old one
    started_over = two_epochs(False)
    assert [r["epoch"] for r in started_over] == [1, 2]
    assert started_over[0]["train_time_s"] != epoch1["train_time_s"]


def test_fine_tunes_from_its_own_checkpoint(fitted_unet, splits, tmp_path):
    weights = fitted_unet.context.run_dir / "model.pt"
    method = create_method("unet", {**TINY, "epochs": 1, "lr": 1e-12, "pretrained": str(weights)})
    method.fit(splits[0], None, ctx(tmp_path))
    assert method.extra_metrics()["pretrained_loaded"] is True
    # lr ~0: the fine-tuned model is the saved one, which is the fitted model's kept weights
    # (batch-norm statistics aside, which training updates at any lr)
    saved = torch.load(weights, weights_only=True)["model"]
    for name, tensor in fitted_unet.model.state_dict().items():
        if "running_" not in name and "num_batches" not in name:
            torch.testing.assert_close(saved[name], tensor.cpu())
            torch.testing.assert_close(method.model.state_dict()[name].cpu(), tensor.cpu())


def test_missing_imagenet_weights(splits, tmp_path, monkeypatch):
    import deep.models
    from deep.weights import WeightsUnavailable

    real_create = deep.models.create_model

    def create_without_hub(name, num_classes, width=1.0, pretrained=None, **kw):
        if pretrained == "imagenet":  # what an empty torch hub cache gives
            raise WeightsUnavailable("ImageNet weights are not in the torch hub cache")
        return real_create(name, num_classes, width=width, pretrained=pretrained, **kw)

    monkeypatch.setattr(deep.models, "create_model", create_without_hub)
    method = create_method("segnet-basic", {**TINY, "pretrained": "imagenet"})
    with pytest.raises(MethodError, match="hub cache.*from_scratch=true"):
        method.fit(splits[0], None, ctx(tmp_path / "a"))

    method = create_method("segnet-basic", {**TINY, "epochs": 1, "pretrained": "imagenet", "from_scratch": True})
    with pytest.warns(UserWarning, match="training from scratch"):
        method.fit(splits[0], None, ctx(tmp_path / "b"))
    assert method.extra_metrics()["pretrained_loaded"] is False
    assert method.predict(splits[0][0].image).shape == (32, 48)


def test_pretrained_errors_of_the_networks_are_method_errors(splits, tmp_path):
    for network, message in [("unet", "no pretrained encoder"), ("fcn32s", "only at width=1")]:
        method = create_method(network, {**TINY, "pretrained": "imagenet"})
        with pytest.raises(MethodError, match=message):
            method.fit(splits[0], None, ctx(tmp_path / network))
