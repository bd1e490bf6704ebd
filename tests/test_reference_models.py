"""deep/reference.py and deep/models/{torchvision,smp}_models.py: the modern reference networks
against the libraries' own models, their weights files, and a fit through the trainer."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch
from torchvision.models import mobilenet_v3_large, resnet50, segmentation

from bench.method import FitContext, MethodError, create_method, method_class
from bench.speed.model_table import model_table, network_methods
from deep.models import create_model, model_names
from deep.models.smp_models import ARCHITECTURES, smp_installed
from deep.models.torchvision_models import SPECS, hub_backbone_path
from deep.reference import ReferenceMethod, SmpMethod
from deep.weights import WeightsUnavailable
from test_train import colour_split

torch.set_num_threads(1)

TORCHVISION = {
    "lraspp-mobilenet-v3-large": (segmentation.lraspp_mobilenet_v3_large,
                                  segmentation.LRASPP_MobileNet_V3_Large_Weights),
    "deeplabv3-mobilenet-v3-large": (segmentation.deeplabv3_mobilenet_v3_large,
                                     segmentation.DeepLabV3_MobileNet_V3_Large_Weights),
    "deeplabv3-resnet50": (segmentation.deeplabv3_resnet50, segmentation.DeepLabV3_ResNet50_Weights),
    "fcn-resnet50": (segmentation.fcn_resnet50, segmentation.FCN_ResNet50_Weights),
}
TINY_FIT = {"epochs": 1, "batch_size": 2, "lr": 0.001, "num_workers": 0}
#: tox.ini installs the smp extra: under tox or in CI these tests run (and fail without it)
needs_smp = pytest.mark.skipif(not smp_installed() and not (os.environ.get("TOX_ENV_NAME") or os.environ.get("CI")),
                               reason='needs pip install ".[smp]"')


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def torchvision_model(name: str, num_classes: int, **kw) -> torch.nn.Module:
    return TORCHVISION[name][0](weights=None, weights_backbone=None, num_classes=num_classes, **kw)


def ctx(run_dir) -> FitContext:
    return FitContext(run_dir=run_dir, progress=False, seed=0)


@pytest.fixture(scope="module")
def splits():
    return colour_split(4, seed=1), colour_split(2, seed=2, name="val")


# -- torchvision --------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(TORCHVISION))
def test_torchvision_networks_are_torchvisions_models(name):
    with torch.device("meta"):
        ours = create_model(name, 7)
        theirs = torchvision_model(name, 7)
    assert count(ours) == count(theirs) and ours.num_classes == 7 and ours.name == name
    assert [tuple(v.shape) for v in ours.net.state_dict().values()] == \
        [tuple(v.shape) for v in theirs.state_dict().values()]
    # with the auxiliary head we leave out, the count at 21 classes is torchvision's published one
    weights = TORCHVISION[name][1].COCO_WITH_VOC_LABELS_V1
    with torch.device("meta"):
        with_aux = torchvision_model(name, 21, **({} if "lraspp" in name else {"aux_loss": True}))
        ours21 = create_model(name, 21)
    assert count(with_aux) == weights.meta["num_params"]
    aux = count(with_aux.aux_classifier) if "lraspp" not in name else 0
    assert count(ours21) == weights.meta["num_params"] - aux


@pytest.mark.parametrize("name", list(TORCHVISION))
def test_forward_gives_logits_of_the_input_size(name):
    torch.manual_seed(0)
    net = create_model(name, 4).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, 37, 53))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 4, 37, 53) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="smaller than the minimum input size"):
        net(torch.randn(1, 3, 4, 64))


def test_same_output_as_torchvision_with_the_same_weights():
    torch.manual_seed(0)
    theirs = torchvision_model("lraspp-mobilenet-v3-large", 3).eval()
    ours = create_model("lraspp-mobilenet-v3-large", 3).eval()
    ours.net.load_state_dict(theirs.state_dict())
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x)["out"])


def test_width_does_not_apply():
    with pytest.raises(ValueError, match="comes in one size.*width must be 1, got 0.25"):
        create_model("fcn-resnet50", 3, width=0.25)
    with pytest.raises(MethodError, match="unknown setting.*width"):
        create_method("lraspp-mobilenet-v3-large", {"width": 0.25})


def test_deeplabv3_cannot_train_on_one_image():
    net = create_model("deeplabv3-mobilenet-v3-large", 3).train()
    with pytest.raises(ValueError, match="batches of at least 2 images"):
        net(torch.randn(1, 3, 64, 64))
    assert net(torch.randn(2, 3, 64, 64)).shape == (2, 3, 64, 64)


# -- torchvision weights files ------------------------------------------------------------
def _same_tensors(a: dict, b: dict, keys) -> bool:
    return all(torch.equal(a[k], b[k]) for k in keys)


def test_loads_a_torchvision_segmentation_state_dict(tmp_path):
    torch.manual_seed(1)
    theirs = torchvision_model("deeplabv3-mobilenet-v3-large", 5, aux_loss=True)  # the aux head is left out
    path = tmp_path / "deeplab.pth"
    torch.save(theirs.state_dict(), path)
    ours = create_model("deeplabv3-mobilenet-v3-large", 5, pretrained=str(path))
    state, own = theirs.state_dict(), ours.net.state_dict()
    assert _same_tensors(own, state, own) and not any(k.startswith("aux") for k in own)

    with pytest.warns(UserWarning, match="is for 5 classes, not 3: its score layer keeps a fresh init"):
        other = create_model("deeplabv3-mobilenet-v3-large", 3, pretrained=str(path))
    own = other.net.state_dict()
    assert own["classifier.4.weight"].shape[0] == 3
    assert _same_tensors(own, state, [k for k in own if not k.startswith("classifier.4.")])


def test_loads_an_imagenet_backbone_file_and_the_hub_cache(tmp_path, monkeypatch):
    torch.manual_seed(2)
    backbone = resnet50().state_dict()
    path = tmp_path / "resnet50.pth"
    torch.save(backbone, path)
    net = create_model("fcn-resnet50", 3, pretrained=str(path)).net
    own = net.state_dict()
    assert all(torch.equal(own["backbone." + k], v) for k, v in backbone.items() if not k.startswith("fc."))

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(WeightsUnavailable, match=r"mobilenet_v3_large-8738ca79\.pth.*is missing"):
        create_model("lraspp-mobilenet-v3-large", 3, pretrained="imagenet")
    hub_file = hub_backbone_path("lraspp-mobilenet-v3-large")
    hub_file.parent.mkdir(parents=True)
    mobilenet = mobilenet_v3_large().state_dict()
    torch.save(mobilenet, hub_file)
    own = create_model("lraspp-mobilenet-v3-large", 3, pretrained="imagenet").net.state_dict()
    assert all(torch.equal(own["backbone." + k.removeprefix("features.")], v)
               for k, v in mobilenet.items() if k.startswith("features."))


def test_weights_of_another_network_are_a_clear_error(tmp_path):
    path = tmp_path / "resnet50.pth"
    torch.save(resnet50().state_dict(), path)
    with pytest.raises(ValueError, match=r"read as an ImageNet mobilenet_v3_large.*do not fit .*missing: backbone\.0"):
        create_model("lraspp-mobilenet-v3-large", 3, pretrained=str(path))
    with pytest.raises(WeightsUnavailable, match="does not exist"):
        create_model("lraspp-mobilenet-v3-large", 3, pretrained=str(tmp_path / "nope.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsUnavailable, match="cannot read weights file"):
        create_model("lraspp-mobilenet-v3-large", 3, pretrained=str(tmp_path / "junk.pth"))


# -- as methods ---------------------------------------------------------------------------
def test_registered_as_deep_methods_with_a_network():
    expected = set(TORCHVISION) | (set(ARCHITECTURES) if smp_installed() else set())
    assert expected <= set(model_names()) and expected <= set(network_methods())
    for name in expected:
        cls = method_class(name)
        assert issubclass(cls, ReferenceMethod) and cls.kind == "deep" and cls.network == name
        assert cls.capabilities.network and cls.capabilities.validation
    assert SPECS.keys() == TORCHVISION.keys()


@pytest.mark.parametrize("name", list(TORCHVISION))
def test_one_epoch_fit_and_predict(name, splits, tmp_path):
    train_split, val_split = splits
    method = create_method(name, TINY_FIT)
    method.fit(train_split, val_split, ctx(tmp_path))
    pred = method.predict(np.zeros((33, 41, 3), np.uint8))
    assert pred.shape == (33, 41) and pred.dtype == np.int32 and 0 <= pred.min() and pred.max() < 3
    extra = method.extra_metrics()
    assert extra["network"] == name and extra["epochs_trained"] == 1 and len(extra["val_miou"]) == 1
    assert method.num_parameters() == count(method.model) and (tmp_path / "model.pt").is_file()


def test_fit_from_a_torchvision_file(splits, tmp_path):
    path = tmp_path / "lraspp.pth"
    torch.save(torchvision_model("lraspp-mobilenet-v3-large", 3).state_dict(), path)
    method = create_method("lraspp-mobilenet-v3-large", {**TINY_FIT, "pretrained": str(path)})
    method.fit(*splits, ctx(tmp_path / "run"))
    assert method.pretrained_loaded
    missing = create_method("lraspp-mobilenet-v3-large", {**TINY_FIT, "pretrained": str(tmp_path / "nope.pth")})
    with pytest.raises(MethodError, match="nope.pth does not exist"):
        missing.fit(*splits, ctx(tmp_path / "run2"))


def test_model_table_lists_them():
    names = list(TORCHVISION)
    table = model_table(input_hw=(64, 96), num_classes=5, names=names)
    with torch.device("meta"):
        expected = [count(torchvision_model(n, 5)) for n in names]
    assert table["params"].tolist() == expected
    assert (table["gflops"] > 0).all() and table["output_stride"].tolist() == [16, 16, 8, 8]


# -- segmentation_models_pytorch ----------------------------------------------------------
def test_without_smp_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "segmentation_models_pytorch", None)  # what an import sees when it is absent
    with pytest.raises(MethodError, match=r'needs segmentation-models-pytorch.*pip install "\.\[smp\]"'):
        create_method("smp-unet")


@needs_smp
@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_smp_networks_are_smps_models(name):
    import segmentation_models_pytorch as smp

    torch.manual_seed(0)
    net = create_model(name, 4, encoder="resnet18").eval()
    theirs = smp.create_model(ARCHITECTURES[name], encoder_name="resnet18", encoder_weights=None, classes=4)
    assert count(net) == count(theirs) and issubclass(method_class(name), SmpMethod)
    with torch.no_grad():
        assert net(torch.randn(2, 3, 37, 53)).shape == (2, 4, 37, 53)  # padded to the stride and cropped
        theirs.load_state_dict(net.net.state_dict())
        x = torch.randn(1, 3, 64, 96)
        torch.testing.assert_close(net(x), theirs.eval()(x))


@needs_smp
def test_smp_encoder_setting_and_weights(tmp_path, splits):
    import segmentation_models_pytorch as smp

    with pytest.raises(MethodError, match="unknown encoder 'resnet19'"):
        create_method("smp-fpn", {"encoder": "resnet19"})
    method = create_method("smp-deeplabv3plus", {**TINY_FIT, "encoder": "resnet18"})
    with torch.device("meta"):
        assert count(method.create_network(3)) == count(smp.DeepLabV3Plus("resnet18", encoder_weights=None, classes=3))
    method.fit(*splits, ctx(tmp_path / "run"))
    assert method.predict(np.zeros((30, 40, 3), np.uint8)).shape == (30, 40)

    torch.manual_seed(3)
    whole = smp.Unet("resnet18", encoder_weights=None, classes=3)
    torch.save(whole.state_dict(), tmp_path / "unet.pth")
    torch.save(resnet50().state_dict(), tmp_path / "resnet50.pth")  # torchvision's ImageNet layout
    own = create_model("smp-unet", 3, pretrained=str(tmp_path / "unet.pth")).net.state_dict()
    assert _same_tensors(own, whole.state_dict(), own)
    encoder = create_model("smp-unet", 3, pretrained=str(tmp_path / "resnet50.pth"), encoder="resnet50").net.encoder
    assert torch.equal(encoder.conv1.weight, torch.load(tmp_path / "resnet50.pth")["conv1.weight"])
    with pytest.raises(ValueError, match="neither this smp model's nor its encoder's state_dict"):
        create_model("smp-unet", 3, pretrained=str(tmp_path / "resnet50.pth"), encoder="resnet18")
    with pytest.raises(WeightsUnavailable, match="segbench never does"):
        create_model("smp-unet", 3, pretrained="imagenet")
