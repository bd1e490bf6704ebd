"""Loading torchvision VGG16 / VGG16-BN state_dicts into the encoders, and downloading.

No network: the state_dicts are made here (torchvision models with ``weights=None``) and
the download is tested against an HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import functools
import http.server
import socket
import threading
from pathlib import Path

import pytest
import torch
import torchvision

from deep.models import create_model
from deep.weights import (
    VGG16_BN_CONV_INDICES,
    VGG16_CONV_INDICES,
    WeightsUnavailable,
    download_vgg16,
    hub_checkpoint_path,
    load_vgg16_weights,
)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def vgg16_file(tmp_path_factory) -> Path:
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("vgg") / "vgg16-397923af.pth"
    torch.save(torchvision.models.vgg16(weights=None).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def vgg16_bn_state() -> dict:
    torch.manual_seed(2)
    sd = torchvision.models.vgg16_bn(weights=None).state_dict()
    # give BN non-default values so that copying them is visible
    for k, v in sd.items():
        if k.endswith(("running_mean", "running_var")):
            v.uniform_(0.5, 1.5)
    return sd


@pytest.fixture
def hub_dir(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(d))
    return d


def _check_convs(model, sd, indices):
    convs = model.encoder.convs()
    assert len(convs) == 13
    for block, i in zip(convs, indices):
        torch.testing.assert_close(block.conv.weight, sd[f"features.{i}.weight"], rtol=0, atol=0)
        torch.testing.assert_close(block.conv.bias, sd[f"features.{i}.bias"], rtol=0, atol=0)


def test_fcn_and_dilatednet_load_vgg16(vgg16_file):
    sd = torch.load(vgg16_file, weights_only=True)
    model = create_model("fcn8s", 21, pretrained=str(vgg16_file))
    _check_convs(model, sd, VGG16_CONV_INDICES)
    torch.testing.assert_close(
        model.encoder.fc6.conv.weight, sd["classifier.0.weight"].view(4096, 512, 7, 7), rtol=0, atol=0
    )
    torch.testing.assert_close(
        model.encoder.fc7.conv.weight.flatten(1), sd["classifier.3.weight"], rtol=0, atol=0
    )
    torch.testing.assert_close(model.encoder.fc7.conv.bias, sd["classifier.3.bias"], rtol=0, atol=0)
    # with ImageNet weights the class scoring layer starts at zero (the paper's choice)
    assert model.score_fr.weight.abs().max() == 0
    del model
    dil = create_model("dilatednet", 21)
    used = load_vgg16_weights(dil, sd, batch_norm=False)
    assert len(used) == 13 * 2 + 4
    assert load_vgg16_weights(dil.encoder, sd, batch_norm=False) == used  # the encoder alone works too
    _check_convs(dil, sd, VGG16_CONV_INDICES)
    torch.testing.assert_close(
        dil.encoder.fc6.conv.weight, sd["classifier.0.weight"].view(4096, 512, 7, 7), rtol=0, atol=0
    )


def test_imagenet_from_hub_cache(vgg16_file, hub_dir):
    with pytest.raises(WeightsUnavailable) as err:
        create_model("fcn32s", 21, pretrained="imagenet")
    msg = str(err.value)
    assert str(hub_dir / "checkpoints" / "vgg16-397923af.pth") in msg
    assert "https://download.pytorch.org/models/vgg16-397923af.pth" in msg
    assert "pretrained=None" in msg
    target = hub_checkpoint_path(batch_norm=False)
    assert target == hub_dir / "checkpoints" / "vgg16-397923af.pth"
    target.parent.mkdir(parents=True)
    target.symlink_to(vgg16_file)
    with torch.device("meta"):  # shapes and mapping only; no memory
        model = create_model("fcn32s", 21)
    assert load_vgg16_weights(model, "imagenet", batch_norm=False)
    bn_target = hub_checkpoint_path(batch_norm=True)
    assert bn_target.name == "vgg16_bn-6c64b313.pth"
    with pytest.raises(WeightsUnavailable, match="vgg16_bn-6c64b313.pth"):
        create_model("segnet", 11, pretrained="imagenet")


def test_segnet_loads_vgg16_bn(vgg16_bn_state, tmp_path):
    path = tmp_path / "vgg16_bn.pth"
    torch.save({k: v for k, v in vgg16_bn_state.items() if k.startswith("features.")}, path)
    model = create_model("segnet", 11, pretrained=str(path))
    _check_convs(model, vgg16_bn_state, VGG16_BN_CONV_INDICES)
    for block, i in zip(model.encoder.convs(), VGG16_BN_CONV_INDICES):
        for attr in ("weight", "bias", "running_mean", "running_var"):
            torch.testing.assert_close(
                getattr(block.bn, attr), vgg16_bn_state[f"features.{i + 1}.{attr}"], rtol=0, atol=0
            )


@pytest.mark.parametrize("name, options", [("deconvnet", {}), ("fcn8s", {"batch_norm": True})])
def test_vgg16_bn_mapping_with_fc_layers_on_meta(vgg16_bn_state, name, options):
    with torch.device("meta"):
        model = create_model(name, 21, **options)
    used = load_vgg16_weights(model, vgg16_bn_state, batch_norm=True)
    assert "classifier.0.weight" in used and "classifier.3.weight" in used
    assert "features.41.running_var" in used


def test_width_other_than_one_is_an_error(vgg16_file):
    with pytest.raises(ValueError, match="width=1"):
        create_model("fcn8s", 21, width=0.5, pretrained=str(vgg16_file))


def test_in_channels_other_than_three_is_an_error(vgg16_bn_state):
    with torch.device("meta"):
        model = create_model("segnet", 11, in_channels=1)
    with pytest.raises(ValueError, match="in_channels=3"):
        load_vgg16_weights(model, vgg16_bn_state, batch_norm=True)


def test_wrong_layout_is_an_error(vgg16_bn_state):
    with torch.device("meta"):
        fcn = create_model("fcn8s", 21)
        seg = create_model("segnet", 11)
    with pytest.raises(ValueError, match="needs a VGG16 state_dict"):
        load_vgg16_weights(fcn, vgg16_bn_state, batch_norm=False)
    with pytest.raises(ValueError, match="has no batch norm"):
        load_vgg16_weights(fcn, vgg16_bn_state, batch_norm=True)
    plain = {"features.0.weight": torch.zeros(64, 3, 3, 3)}
    with pytest.raises(ValueError, match="needs a VGG16-BN"):
        load_vgg16_weights(seg, plain, batch_norm=True)
    with pytest.raises(TypeError, match="no VGG16 body"):
        load_vgg16_weights(create_model("unet", 2, width=0.125), plain, batch_norm=False)


def test_missing_or_bad_file(tmp_path):
    with pytest.raises(WeightsUnavailable, match="does not exist.*pretrained=None"):
        create_model("fcn8s", 21, pretrained=str(tmp_path / "nope.pth"))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with torch.device("meta"):
        model = create_model("fcn8s", 21)
    with pytest.raises(WeightsUnavailable, match="cannot read"):
        load_vgg16_weights(model, bad, batch_norm=False)


# -- download -----------------------------------------------------------------------------
class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def http_dir(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_download_from_local_server(http_dir, tmp_path):
    root, base = http_dir
    sd = {"features.0.weight": torch.randn(4, 3, 3, 3), "features.0.bias": torch.randn(4)}
    torch.save(sd, root / "vgg16-397923af.pth")
    dest = tmp_path / "cache" / "checkpoints" / "vgg16-397923af.pth"
    got = download_vgg16(f"{base}/vgg16-397923af.pth", dest)
    assert got == dest and dest.is_file()
    loaded = torch.load(dest, weights_only=True)
    assert loaded.keys() == sd.keys()
    torch.testing.assert_close(loaded["features.0.weight"], sd["features.0.weight"])
    with pytest.raises(WeightsUnavailable, match="could not download"):
        download_vgg16(f"{base}/missing.pth", tmp_path / "x.pth")  # HTTP 404


def test_download_unreachable_is_weights_unavailable(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: connection refused
    dest = tmp_path / "vgg16-397923af.pth"
    with pytest.raises(WeightsUnavailable) as err:
        download_vgg16(f"http://127.0.0.1:{port}/vgg16-397923af.pth", dest)
    msg = str(err.value)
    assert "offline?" in msg.lower() and str(dest) in msg
    assert not dest.exists()
