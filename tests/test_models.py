"""The deep segmentation networks: shapes, parameter counts, inits, gradients, errors.

Forward passes run at width 0.125 on small inputs; full-width parameter counts are taken
on the meta device (no memory, no init).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from deep.models import create_model, model_names, model_options, register_model
from deep.models.dilated import ContextModule
from deep.models.fcn import bilinear_kernel, bilinear_upsampler
from deep.models.base import SegmentationNet, scaled
from deep.models.matmul_conv import MatmulConv2d, MatmulConvTranspose2d, live_fraction, live_taps, tapwise_conv2d
from deep.models.vgg import VGGEncoder

torch.set_num_threads(1)

ALL = ["fcn32s", "fcn16s", "fcn8s", "deconvnet", "unet", "segnet", "segnet-basic", "dilatednet"]
SMALL = 0.125


def meta_params(name: str, num_classes: int, width: float = 1.0, **kw) -> int:
    with torch.device("meta"):
        model = create_model(name, num_classes, width=width, **kw)
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# -- registry -------------------------------------------------------------------------
def test_registry_names():
    names = model_names()  # sorted; the reference networks (deep/models/*_models.py) register too
    assert names == sorted(names) and set(ALL) <= set(names)


def test_every_model_has_the_attributes():
    for name in ALL:
        with torch.device("meta"):
            m = create_model(name, 4)
        assert isinstance(m, SegmentationNet)
        assert m.name == name
        assert isinstance(m.output_stride, int) and m.output_stride >= 1
        assert isinstance(m.min_input_size, int) and m.min_input_size >= 1
        assert m.paper_params is None or isinstance(m.paper_params, int)
        assert m.num_classes == 4


def test_unknown_kwarg_is_a_type_error():
    with pytest.raises(TypeError, match="bogus"):
        create_model("unet", 2, bogus=1)
    with pytest.raises(TypeError, match="batch_norm"):  # segnet has it always, not as an option
        create_model("segnet", 2, batch_norm=True)
    for name in ("unet", "fcn32s", "fcn16s", "fcn8s", "dilatednet"):
        assert "batch_norm" in model_options(name)


def test_unknown_model_is_a_value_error():
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        create_model("nope", 2)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("width", [0, -0.5, float("nan")])
def test_bad_width(name, width):
    with pytest.raises(ValueError, match="width"):
        create_model(name, 3, width=width)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("k", [1, 0, 2.0])
def test_bad_num_classes(name, k):
    with pytest.raises(ValueError, match="num_classes"):
        create_model(name, k)


@pytest.mark.parametrize("name", ALL)
def test_input_smaller_than_minimum(name):
    m = create_model(name, 3, width=SMALL).eval()
    s = m.min_input_size
    with pytest.raises(ValueError, match=rf"{name}.*minimum input size {s}"):
        m(torch.zeros(1, 3, s - 1, 40))
    with pytest.raises(ValueError, match="input channels"):
        m(torch.zeros(1, 1, 64, 64))
    with pytest.raises(ValueError, match="N x C x H x W"):
        m(torch.zeros(3, 64, 64))


@pytest.mark.parametrize("name", ["unet", "segnet-basic"])
def test_pretrained_rejected_without_vgg_body(name):
    with pytest.raises(ValueError, match="no pretrained encoder"):
        create_model(name, 2, pretrained="imagenet")


def test_bad_options():
    with pytest.raises(ValueError, match="fc_mode"):
        create_model("deconvnet", 3, width=SMALL, fc_mode="valid")
    with pytest.raises(ValueError, match="context"):
        create_model("dilatednet", 3, width=SMALL, context="large")
    with pytest.raises(ValueError, match="dropout"):
        create_model("unet", 3, width=SMALL, dropout=1.0)
    with pytest.raises(ValueError, match="in_channels"):
        create_model("unet", 3, width=SMALL, in_channels=0)


def test_width_rule():
    assert scaled(64, 0.125) == 8
    assert scaled(64, 0.001) == 1
    assert scaled(4096, 0.5) == 2048
    assert scaled(3, 0.5) == 2  # half up
    # a tiny width still builds and runs (every channel count at least 1)
    m = create_model("segnet-basic", 2, width=0.001).eval()
    assert m(torch.randn(1, 3, 16, 16)).shape == (1, 2, 16, 16)


# -- shapes and gradients ---------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_forward_backward_odd_size(name):
    m = create_model(name, 5, width=SMALL).train()
    x = torch.randn(2, 3, 61, 79)
    y = m(x)
    assert y.shape == (2, 5, 61, 79)
    assert torch.isfinite(y).all()
    F.cross_entropy(y, torch.randint(0, 5, (2, 61, 79))).backward()
    grads = [p.grad for p in m.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    first = next(p for p in m.parameters() if p.requires_grad)  # first conv of the body
    assert first.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["segnet-basic", "unet"])
def test_forward_361x479(name):
    m = create_model(name, 4, width=SMALL).eval()
    with torch.no_grad():
        y = m(torch.randn(1, 3, 361, 479))
    assert y.shape == (1, 4, 361, 479)


@pytest.mark.parametrize("name", ALL)
def test_forward_at_minimum_size(name):
    m = create_model(name, 3, width=SMALL).eval()
    s = m.min_input_size
    with torch.no_grad():
        assert m(torch.randn(1, 3, s, s + 3)).shape == (1, 3, s, s + 3)


def test_in_channels_option():
    m = create_model("unet", 2, width=SMALL, in_channels=1).eval()
    with torch.no_grad():
        assert m(torch.randn(1, 1, 33, 35)).shape == (1, 2, 33, 35)


def test_deconvnet_resize_mode_is_the_papers_net():
    m = create_model("deconvnet", 3, width=SMALL, fc_mode="resize").eval()
    assert m.encoder.fc6.conv.padding == (0, 0)
    with torch.no_grad():
        assert m(torch.randn(1, 3, 61, 79)).shape == (1, 3, 61, 79)
        assert m(torch.randn(1, 3, 224, 224)).shape == (1, 3, 224, 224)
    # same parameters as the fully convolutional default
    assert meta_params("deconvnet", 21, fc_mode="resize") == meta_params("deconvnet", 21)
    # batch norm on a 1x1 map at batch size 1 is a clear error in training
    with pytest.raises(ValueError, match="batch size > 1"):
        m.train()(torch.randn(1, 3, 64, 64))


def test_output_is_cropped_not_resized():
    """Padding then cropping: the top-left of the logits ignores the padded border."""
    m = create_model("segnet-basic", 2, width=SMALL).eval()
    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        full = m(F.pad(x, (0, 8, 0, 8)))  # 48x48, a multiple of 16
        assert m.output_stride == 16
        torch.testing.assert_close(m(x), full[..., :40, :40])


# -- parameter counts at full width ------------------------------------------------------
@pytest.mark.parametrize(
    "name, k, paper",
    [
        ("fcn32s", 21, 134e6),
        ("fcn16s", 21, 134e6),
        ("fcn8s", 21, 134e6),
        ("deconvnet", 21, 252e6),
        ("unet", 2, 31e6),
        ("segnet", 11, 29.5e6),
        ("segnet", 12, 29.5e6),
        ("segnet-basic", 11, 1.425e6),
    ],
)
def test_param_count_matches_paper(name, k, paper):
    n = meta_params(name, k)
    assert abs(n - paper) / paper < 0.02, (name, n, paper)
    with torch.device("meta"):
        m = create_model(name, k)
    assert abs(m.paper_params - paper) / paper < 1e-9


def test_param_count_exact_pieces():
    # U-Net with 2 classes: the well-known 31,031,810 (same count as the valid-conv paper)
    assert meta_params("unet", 2) == 31_031_810
    # DilatedNet front end: VGG16 convs + fc6 + fc7 + 1x1 classifier = VGG16 - fc8 + score
    vgg16_no_fc8 = 138_357_544 - (4096 * 1000 + 1000)
    assert meta_params("dilatednet", 21, context="none") == vgg16_no_fc8 + 4096 * 21 + 21
    ctx = 7 * (21 * 21 * 9 + 21) + (21 * 21 + 21)
    assert meta_params("dilatednet", 21) == vgg16_no_fc8 + 4096 * 21 + 21 + ctx


def test_width_scales_params():
    full, half = meta_params("segnet", 11), meta_params("segnet", 11, width=0.5)
    assert 0.2 < half / full < 0.3  # ~ width^2


# -- initialisation ------------------------------------------------------------------------
def test_bilinear_kernel():
    k = bilinear_kernel(4)
    torch.testing.assert_close(k[0], torch.tensor([0.0625, 0.1875, 0.1875, 0.0625]))
    assert bilinear_kernel(64).shape == (64, 64)


@pytest.mark.parametrize("factor", [2, 8, 16, 32])
def test_fcn_upsampler_is_bilinear(factor):
    up = bilinear_upsampler(3, factor, learnable=False)
    assert not up.weight.requires_grad
    b = factor // 2  # border where a transposed conv sees only one input pixel
    with torch.no_grad():
        const = up(torch.full((1, 3, 5, 6), 2.5))
        assert const.shape == (1, 3, 5 * factor, 6 * factor)
        torch.testing.assert_close(const[..., b:-b, b:-b], torch.full_like(const[..., b:-b, b:-b], 2.5))
        x = torch.randn(1, 3, 5, 6)
        y = up(x)
        ref = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
        torch.testing.assert_close(y[..., b:-b, b:-b], ref[..., b:-b, b:-b], atol=1e-5, rtol=1e-5)
        # no mixing across classes
        x2 = torch.zeros(1, 3, 5, 6)
        x2[:, 1] = 1.0
        y2 = up(x2)
        assert y2[:, 0].abs().max() == 0 and y2[:, 2].abs().max() == 0


def test_fcn_deconvs_bilinear_and_frozen_final():
    m = create_model("fcn8s", 4, width=SMALL)
    k4 = bilinear_kernel(4)
    for up in (m.upscore2, m.upscore_pool4):
        assert up.weight.requires_grad
        torch.testing.assert_close(up.weight[1, 1], k4)
        assert up.weight[0, 1].abs().max() == 0
    assert not m.upscore8.weight.requires_grad
    torch.testing.assert_close(m.upscore8.weight[2, 2], bilinear_kernel(16))
    # the skip score layers start at zero, so FCN-8s starts as FCN-32s would
    assert m.score_pool4.weight.abs().max() == 0 and m.score_pool3.weight.abs().max() == 0
    m32 = create_model("fcn32s", 4, width=SMALL)
    assert m32.upscore.kernel_size == (64, 64) and m32.upscore.stride == (32, 32)
    m16 = create_model("fcn16s", 4, width=SMALL)
    assert m16.upscore16.kernel_size == (32, 32) and m16.upscore16.stride == (16, 16)


def test_fcn_constant_scores_upsample_to_constant():
    """A constant score map stays constant (away from the outer border) through FCN-8s."""
    m = create_model("fcn8s", 3, width=SMALL).eval()
    with torch.no_grad():
        for mod in (m.score_fr,):
            mod.weight.zero_()
            mod.bias.copy_(torch.tensor([1.0, -2.0, 0.5]))
        y = m(torch.randn(1, 3, 128, 160))
    inner = y[..., 32:-32, 32:-32]
    torch.testing.assert_close(inner[0, :, 0, 0][:, None, None].expand_as(inner[0]), inner[0])
    torch.testing.assert_close(inner[0, :, 0, 0], torch.tensor([1.0, -2.0, 0.5]))


def test_fcn_skip_scaling_option():
    m = create_model("fcn8s", 3, width=SMALL, skip_scaling=True).eval()
    assert m.skip_scaling
    with torch.no_grad():
        assert m(torch.randn(1, 3, 64, 64)).shape == (1, 3, 64, 64)


def test_dilated_context_module_is_identity_at_init():
    ctx = ContextModule(6)
    x = torch.rand(2, 6, 17, 23)  # non-negative: the module's domain after truncation
    with torch.no_grad():
        torch.testing.assert_close(ctx(x), x)
        z = torch.randn(2, 6, 17, 23)
        torch.testing.assert_close(ctx(z), z.clamp(min=0))
    dil = [c.dilation[0] for c in ctx.layers]
    assert dil == [1, 1, 2, 4, 8, 16, 1]
    assert all(c.kernel_size == (3, 3) for c in ctx.layers)
    assert ctx.final.kernel_size == (1, 1)


def test_dilatednet_structure_and_init():
    m = create_model("dilatednet", 5, width=SMALL).eval()
    assert m.output_stride == 8
    assert [b.conv.dilation[0] for b in m.encoder.stages[4]] == [2, 2, 2]
    assert m.encoder.fc6.conv.dilation == (4, 4) and m.encoder.fc6.conv.kernel_size == (7, 7)
    assert m.encoder.pooled == 3  # pool4 and pool5 removed
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        scores = m.front_end(x)
        y = m(x)
    assert scores.shape == (1, 5, 8, 10)
    # identity context: the net is the front end (after the first truncation) upsampled x8
    ref = F.interpolate(scores.clamp(min=0), size=(64, 80), mode="bilinear", align_corners=False)
    torch.testing.assert_close(y, ref)
    front = create_model("dilatednet", 5, width=SMALL, context="none")
    assert front.context is None


def test_unet_structure():
    m = create_model("unet", 2)
    assert [b[1].conv.out_channels for b in m.down] == [64, 128, 256, 512, 1024]
    assert all(u.kernel_size == (2, 2) and u.stride == (2, 2) for u in m.up)
    assert not any(isinstance(x, torch.nn.BatchNorm2d) for x in m.modules())
    mb = create_model("unet", 2, width=SMALL, batch_norm=True)
    assert any(isinstance(x, torch.nn.BatchNorm2d) for x in mb.modules())


def test_segnet_structure():
    m = create_model("segnet", 11, width=SMALL)
    n_bn = sum(isinstance(x, torch.nn.BatchNorm2d) for x in m.modules())
    assert n_bn == 13 + 12  # every conv but the classifier
    assert m.classifier.kernel_size == (3, 3)
    b = create_model("segnet-basic", 11)
    assert all(l.conv.kernel_size == (7, 7) and l.relu is not None for l in b.encoder)
    assert all(l.relu is None and l.bn is not None for l in b.decoder)
    assert b.classifier.kernel_size == (1, 1)


def test_deconvnet_structure():
    with torch.device("meta"):
        m = create_model("deconvnet", 21)
    fc6, fc7 = m.encoder.fc6.conv, m.encoder.fc7.conv
    assert fc6.weight.shape == (4096, 512, 7, 7) and fc7.weight.shape == (4096, 4096, 1, 1)
    assert m.deconv_fc6[0].weight.shape == (4096, 512, 7, 7)  # ConvTranspose: in, out
    assert m.encoder.fc6.bn is not None
    n_unpool_stages = len(m.decoder)
    assert n_unpool_stages == 5


@pytest.mark.parametrize("name, batch_norm, fc, options", [
    ("fcn8s", False, True, {}), ("segnet", True, False, {}), ("deconvnet", True, True, {}),
    ("dilatednet", False, True, {}), ("fcn32s", True, True, {"batch_norm": True}),
    ("dilatednet", True, True, {"batch_norm": True}),
])
def test_vgg_networks_share_the_one_encoder(name, batch_norm, fc, options):
    with torch.device("meta"):
        m = create_model(name, 21, **options)
    enc = m.encoder
    assert isinstance(enc, VGGEncoder) and enc.batch_norm == batch_norm
    assert [len(s) for s in enc.stages] == [2, 2, 3, 3, 3] and len(enc.convs()) == 13
    assert [c.conv.out_channels for c in enc.convs()] == [64, 64, 128, 128, 256, 256, 256] + [512] * 6
    assert (enc.fc6 is not None) == fc and (enc.fc7 is not None) == fc
    if fc:
        assert enc.fc7.conv.weight.shape == (4096, 4096, 1, 1)
    # the encoder's parameters come first (pretrained loading and optimiser order rely on it)
    first = next(iter(m.state_dict()))
    assert first == "encoder.stages.0.0.conv.weight"
    assert not any(isinstance(x, VGGEncoder) for x in create_model("unet", 2, width=SMALL).modules())


def test_encoder_features_pool_as_each_decoder_needs():
    enc = VGGEncoder(3, SMALL).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        out, pools = enc.features(x)
    assert out.shape[-2:] == (2, 3) and [p.shape[-1] for p in pools] == [48, 24, 12, 6, 3]
    enc = VGGEncoder(3, SMALL, indices=True).eval()
    with torch.no_grad():
        out, switches = enc.features(x)
    assert out.shape[-2:] == (2, 3) and [tuple(size) for _, size in switches][0] == (64, 96)
    enc = VGGEncoder(3, SMALL, pooled=3).eval()
    with torch.no_grad():
        out, pools = enc.features(x)
    assert out.shape[-2:] == (8, 12) and len(pools) == 3


def test_register_model_rejects_duplicates():
    with pytest.raises(ValueError, match="already registered"):
        register_model("unet")(lambda num_classes, width=1.0, pretrained=None: None)


# -- summary table -------------------------------------------------------------------------
NETWORK_METHODS = sorted(ALL)  # the registry lists method names in order


def test_model_table_small():
    from bench.speed.model_table import COLUMNS, format_table, model_table, network_methods

    # the methods with capabilities.network (tests may register more in the same session)
    assert set(NETWORK_METHODS) <= set(network_methods())
    df = model_table(input_hw=(64, 96), num_classes=5, width=SMALL, names=NETWORK_METHODS)
    assert list(df.columns) == COLUMNS
    assert list(df["name"]) == NETWORK_METHODS
    assert (df["params"] > 0).all() and (df["gflops"] > 0).all()
    row = df.set_index("name").loc["unet"]
    assert row["params"] == sum(p.numel() for p in create_model("unet", 5, width=SMALL).parameters())
    assert row["output_stride"] == 16 and row["min_input_size"] == 16
    md = format_table(df, "md")
    assert md.splitlines()[0].startswith("| name |") and len(md.splitlines()) == 2 + len(ALL)
    assert "n/a" in md  # dilatednet: no paper count
    csv = format_table(df, "csv")
    assert csv.splitlines()[0] == ",".join(COLUMNS)
    with pytest.raises(ValueError, match="format"):
        format_table(df, "xml")


def test_model_table_full_width_vs_paper():
    from bench.speed.model_table import model_table

    df = model_table(input_hw=(64, 64), num_classes=21, names=["fcn8s", "segnet", "unet"]).set_index("name")
    assert df["params_vs_paper"].abs().max() < 2.0
    # FLOPs are 2 x MACs: U-Net's first conv alone (3->64, 3x3, 64x64) is 2*3*64*9*64*64 FLOPs
    assert df.loc["unet", "gflops"] * 1e9 > 2 * 3 * 64 * 9 * 64 * 64


def test_fixed_bilinear_upsampling_equals_the_full_transposed_convolution():
    """The depthwise fast path computes exactly the paper's K x K Deconvolution layer."""
    import torch.nn.functional as F

    from deep.models.fcn import FixedBilinearUpsample, bilinear_upsampler

    up = bilinear_upsampler(5, 8, learnable=False)
    assert isinstance(up, FixedBilinearUpsample) and not up.weight.requires_grad
    assert up.weight.shape == (5, 5, 16, 16)
    x = torch.randn(2, 5, 3, 4)
    full = F.conv_transpose2d(x, up.weight, None, up.stride, up.padding)
    assert torch.allclose(up(x), full, atol=1e-5)
    assert up(x).shape == (2, 5, 24, 32)


@pytest.mark.parametrize("factor, size", [(32, (3, 4)), (16, (5, 7)), (8, (6, 9)), (2, (4, 5))])
def test_fixed_bilinear_upsampling_as_matrix_products(factor, size):
    """Under bf16 autocast the separable path (two matrix products, in float32) gives the
    float32 depthwise transposed convolution's outputs and input gradients; without autocast
    the layer is that convolution, bit for bit; a loaded weight that is not bilinear takes the
    convolution, a loaded bilinear one the products again."""
    import torch.nn.functional as F

    from deep.models.fcn import bilinear_upsampler

    torch.manual_seed(0)
    up = bilinear_upsampler(4, factor, learnable=False)
    idx = torch.arange(4)

    def depthwise(t):
        return F.conv_transpose2d(t, up.weight[idx, idx].unsqueeze(1), None, up.stride, up.padding, groups=4)

    x = torch.randn(2, 4, *size, requires_grad=True)
    g = torch.randn(2, 4, size[0] * factor, size[1] * factor)
    ref = depthwise(x)
    (ref * g).sum().backward()
    ref_grad, x.grad = x.grad.clone(), None
    assert torch.equal(up(x), ref)  # float32: the convolution itself
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = up(x)
    assert y.dtype == torch.float32
    (y * g).sum().backward()
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(x.grad, ref_grad, atol=1e-4, rtol=1e-4)
    state = {"weight": up.weight.detach().clone()}
    state["weight"][1, 1, 0, 0] += 1.0  # weights from elsewhere, not bilinear: the convolution
    up.load_state_dict(state)
    assert not up.separable
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert up(x).dtype == torch.bfloat16
    up.load_state_dict(bilinear_upsampler(4, factor, learnable=False).state_dict())
    assert up.separable
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.testing.assert_close(up(x), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dilation, padding, size", [(1, 3, (4, 3)), (4, 12, (15, 10)), (1, 0, (9, 8)), (2, 6, (9, 11))])
def test_matmul_conv_equals_the_convolution(dilation, padding, size):
    """fc6's matrix-product path gives the convolution's outputs and gradients (to rounding)."""
    torch.manual_seed(0)
    mm = MatmulConv2d(16, 24, 7, padding=padding, dilation=dilation)
    conv = torch.nn.Conv2d(16, 24, 7, padding=padding, dilation=dilation)
    conv.load_state_dict(mm.state_dict())
    x = torch.randn(3, 16, *size, requires_grad=True)
    ys = []
    for layer in (mm, conv):
        x.grad = None
        y = layer(x)
        (y * torch.linspace(-1, 1, y.numel()).reshape(y.shape)).sum().backward()
        ys.append((y.detach(), x.grad.clone(), layer.weight.grad.clone(), layer.bias.grad.clone()))
    for a, b in zip(*ys):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_matmul_conv_takes_the_convolution_for_large_maps(monkeypatch):
    """Over MAX_CELLS output cells (or MAX_UNFOLD_BYTES) the layer runs nn.Conv2d's forward."""
    layer = MatmulConv2d(4, 8, 7, padding=3)
    calls = []
    monkeypatch.setattr(torch.nn.Conv2d, "forward", lambda self, x: calls.append(x.shape) or torch.zeros(1))
    layer(torch.zeros(1, 4, 16, 16))  # 256 cells: a matrix product
    assert calls == []
    layer(torch.zeros(1, 4, 16, 17))  # 272 cells
    assert calls == [(1, 4, 16, 17)]
    monkeypatch.setattr(MatmulConv2d, "MAX_UNFOLD_BYTES", 4 * 49 * 4 * 4 - 1)
    layer(torch.zeros(1, 4, 2, 2))
    assert len(calls) == 2


def test_live_taps_of_dilatednet_fc6_on_a_small_map():
    """DilatedNet's fc6 (7x7, dilation 4, padding 12) on the 10x15 map of an 80x120 input:
    the first and last kernel rows never land inside the 10 rows, and of the 49 x 150
    (tap, cell) products one in five reads the map (rows 26 of 70, columns 57 of 105)."""
    taps = live_taps((10, 15), (7, 7), (4, 4), (12, 12))
    assert sorted({i for i, *_ in taps}) == [1, 2, 3, 4, 5] and len(taps) == 35
    assert live_fraction((10, 15), (7, 7), (4, 4), (12, 12)) == pytest.approx(26 / 70 * 57 / 105)
    # the centre tap reads every cell in place; the tap 8 rows down reads rows 8-9 into rows 0-1
    centre = next(t for t in taps if t[:2] == (3, 3))
    assert centre[2:] == (slice(0, 10), slice(0, 15), slice(0, 10), slice(0, 15))
    down = next(t for t in taps if t[:2] == (5, 3))
    assert down[2] == slice(0, 2) and down[4] == slice(8, 10)
    assert live_fraction((9, 8), (7, 7), (1, 1), (0, 0)) == 1.0  # no padding: every product is live


@pytest.mark.parametrize("dilation, padding, size", [(4, 12, (10, 15)), (1, 3, (3, 4)), (2, 5, (6, 5)), (3, 9, (1, 9))])
def test_tapwise_conv_equals_the_convolution(dilation, padding, size):
    """The tap-by-tap path gives the convolution's outputs and gradients (to rounding) in
    either memory layout, with exact zeros in the weight gradient of the taps that never
    land on the map."""
    torch.manual_seed(0)
    weight = torch.randn(24, 16, 7, 7, requires_grad=True)
    bias = torch.randn(24, requires_grad=True)
    for layout in (torch.contiguous_format, torch.channels_last):
        x = torch.randn(3, 16, *size).contiguous(memory_format=layout).requires_grad_()
        got = _outputs_and_gradients(lambda t: tapwise_conv2d(t, weight, bias, (dilation,) * 2, (padding,) * 2),
                                     x, weight, bias)
        want = _outputs_and_gradients(lambda t: F.conv2d(t, weight, bias, padding=padding, dilation=dilation),
                                      x, weight, bias)
        for a, b in zip(got, want):
            assert a.shape == b.shape
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
        live = {(i, j) for i, j, *_ in live_taps(size, (7, 7), (dilation,) * 2, (padding,) * 2)}
        dead = [(i, j) for i in range(7) for j in range(7) if (i, j) not in live]
        assert all(got[2][:, :, i, j].abs().max() == 0 for i, j in dead)
    # without gradients for the input (fc6 of a frozen body) and in inference
    with torch.no_grad():
        y = tapwise_conv2d(torch.randn(1, 16, *size), weight, None, (dilation,) * 2, (padding,) * 2)
    assert y.shape[:2] == (1, 24)


@pytest.mark.parametrize("dilation, padding, size", [(1, 3, (3, 4)), (1, 3, (1, 1)), (2, 6, (4, 5))])
def test_tapwise_deconv_equals_the_deconvolution(dilation, padding, size):
    """The same tap-by-tap path for a stride-1 deconvolution (DeconvNet's 7x7 from fc7 on the
    3x4 map of pool5): the deconvolution's outputs and gradients, in either layout."""
    torch.manual_seed(0)
    weight = torch.randn(16, 24, 7, 7, requires_grad=True)  # ConvTranspose2d: C_in x C_out x kh x kw
    bias = torch.randn(24, requires_grad=True)
    for layout in (torch.contiguous_format, torch.channels_last):
        x = torch.randn(3, 16, *size).contiguous(memory_format=layout).requires_grad_()
        got = _outputs_and_gradients(
            lambda t: tapwise_conv2d(t, weight, bias, (dilation,) * 2, (padding,) * 2, transposed=True), x, weight, bias)
        want = _outputs_and_gradients(
            lambda t: F.conv_transpose2d(t, weight, bias, padding=padding, dilation=dilation), x, weight, bias)
        for a, b in zip(got, want):
            assert a.shape == b.shape
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("transposed", [False, True])
def test_tapwise_path_trains_under_bf16_autocast_like_the_convolution(transposed):
    """As the trainer runs it with ``amp: bf16`` on a CPU (forward under autocast, backward
    after it), the tap-by-tap path computes in bf16 as the convolution does and returns each
    gradient in its tensor's dtype, close to the convolution's."""
    torch.manual_seed(0)
    weight = torch.randn(*((16, 24, 7, 7) if transposed else (24, 16, 7, 7)), requires_grad=True)
    bias = torch.randn(24, requires_grad=True)
    ref = F.conv_transpose2d if transposed else F.conv2d
    x = torch.randn(3, 16, 4, 3).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    results = []
    for fn in (lambda t: tapwise_conv2d(t, weight, bias, (1, 1), (3, 3), transposed=transposed),
               lambda t: ref(t, weight, bias, padding=3)):
        xb = x.clone().requires_grad_()  # what a bf16 layer before hands on
        weight.grad = bias.grad = None
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = fn(xb)
        (y.float() * torch.linspace(-1, 1, y.numel()).reshape(y.shape)).sum().backward()
        assert xb.grad.dtype == torch.bfloat16 and weight.grad.dtype == torch.float32
        results.append([t.float() for t in (y.detach(), xb.grad, weight.grad, bias.grad)])
    for a, b in zip(*results):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=0.05, atol=0.5)


def test_matmul_conv_runs_tap_by_tap_only_where_the_padding_dominates(monkeypatch):
    """A stride-1 layer runs tap by tap where at most TAPWISE_BELOW of its products are live
    and the batch skips at least TAPWISE_MIN_SKIPPED per weight: DilatedNet's fc6 on 15x10
    (240 skipped at batch 2), a 7x7 convolution or deconvolution on 4x3 at batch 8 (72) but
    not at batch 2 (18: DeconvNet's training step), not a 7x7 on 8x5 (FCN-8s's fc6 on the
    full photo, half its products live) nor a strided one."""
    import deep.models.matmul_conv as matmul_conv

    calls = []
    real = matmul_conv.tapwise_conv2d
    monkeypatch.setattr(matmul_conv, "tapwise_conv2d",
                        lambda x, *a, **k: calls.append(tuple(x.shape)) or real(x, *a, **k))
    MatmulConv2d(4, 8, 7, padding=12, dilation=4)(torch.zeros(2, 4, 15, 10))
    MatmulConv2d(4, 8, 7, padding=3)(torch.zeros(8, 4, 4, 3))
    MatmulConv2d(4, 8, 7, padding=3)(torch.zeros(2, 4, 4, 3))
    MatmulConv2d(4, 8, 7, padding=3)(torch.zeros(8, 4, 8, 5))
    MatmulConv2d(4, 8, 7, padding=3, stride=2)(torch.zeros(8, 4, 4, 3))
    MatmulConvTranspose2d(4, 8, 7, padding=3)(torch.zeros(8, 4, 4, 3))
    MatmulConvTranspose2d(4, 8, 7, padding=3)(torch.zeros(2, 4, 4, 3))
    assert calls == [(2, 4, 15, 10), (8, 4, 4, 3), (8, 4, 4, 3)]
    monkeypatch.setattr(MatmulConv2d, "TAPWISE_BELOW", 0.0)
    MatmulConv2d(4, 8, 7, padding=12, dilation=4)(torch.zeros(2, 4, 15, 10))
    monkeypatch.setattr(MatmulConv2d, "TAPWISE_BELOW", 0.35)
    monkeypatch.setattr(MatmulConv2d, "TAPWISE_MIN_SKIPPED", 241)
    MatmulConv2d(4, 8, 7, padding=12, dilation=4)(torch.zeros(2, 4, 15, 10))
    assert len(calls) == 3


def _outputs_and_gradients(fn, x, weight, bias):
    """fn(x), and the gradients of x, weight and bias of a fixed linear function of it."""
    x.grad = weight.grad = bias.grad = None
    y = fn(x)
    (y * torch.linspace(-1, 1, y.numel()).reshape(y.shape)).sum().backward()
    return y.detach(), x.grad.clone(), weight.grad.clone(), bias.grad.clone()


@pytest.mark.parametrize("dilation, padding, size", [(1, 3, (3, 4)), (1, 0, (1, 1)), (2, 5, (6, 5)), (1, 1, (9, 8))])
def test_matmul_deconv_equals_the_deconvolution(dilation, padding, size, monkeypatch):
    """DeconvNet's 7x7 deconvolution as a matrix product + fold: the deconvolution's
    outputs and gradients (to rounding), in either memory layout; the product path runs
    (nn.ConvTranspose2d's own forward is made to fail)."""
    torch.manual_seed(0)
    mm = MatmulConvTranspose2d(16, 24, 7, padding=padding, dilation=dilation)

    def deconvolution(x):
        return F.conv_transpose2d(x, mm.weight, mm.bias, padding=padding, dilation=dilation)

    def not_the_product(self, x, output_size=None):
        raise AssertionError("took the deconvolution")

    monkeypatch.setattr(torch.nn.ConvTranspose2d, "forward", not_the_product)
    for layout in (torch.contiguous_format, torch.channels_last):
        mm.to(memory_format=layout)
        x = torch.randn(3, 16, *size).contiguous(memory_format=layout).requires_grad_()
        got = _outputs_and_gradients(mm, x, mm.weight, mm.bias)
        want = _outputs_and_gradients(deconvolution, x, mm.weight, mm.bias)
        for a, b in zip(got, want):
            assert a.shape == b.shape
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_matmul_deconv_takes_the_deconvolution_where_the_product_does_not_apply(monkeypatch):
    """Strides, output sizes and maps over MAX_CELLS go to nn.ConvTranspose2d's forward."""
    calls = []
    monkeypatch.setattr(torch.nn.ConvTranspose2d, "forward",
                        lambda self, x, output_size=None: calls.append(x.shape) or torch.zeros(1))
    layer = MatmulConvTranspose2d(4, 8, 7, padding=3)
    layer(torch.zeros(1, 4, 16, 16))  # 256 cells: a matrix product
    assert calls == []
    layer(torch.zeros(1, 4, 16, 17))
    layer(torch.zeros(1, 4, 4, 4), output_size=[4, 4])
    MatmulConvTranspose2d(4, 8, 3, stride=2, padding=1)(torch.zeros(1, 4, 4, 5))
    MatmulConvTranspose2d(4, 8, 3, dilation=2, output_padding=1)(torch.zeros(1, 4, 4, 6))
    MatmulConvTranspose2d(4, 8, 3, groups=2)(torch.zeros(1, 4, 4, 7))
    assert calls == [(1, 4, 16, 17), (1, 4, 4, 4), (1, 4, 4, 5), (1, 4, 4, 6), (1, 4, 4, 7)]


def test_matmul_layers_keep_a_contiguous_weight_in_a_channels_last_network():
    """Moving a network to channels-last leaves the matrix-product layers' weights in the
    layout their product reads (a channels-last weight would be copied on every call); the
    other convolutions do go channels-last, and the outputs do not change."""
    torch.manual_seed(0)
    net = create_model("deconvnet", num_classes=5, width=0.125).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        before = net(x)
        net.to(memory_format=torch.channels_last)
        after = net(x.contiguous(memory_format=torch.channels_last))
    fc6, deconv_fc6 = net.encoder.fc6.conv.weight, net.deconv_fc6[0].weight
    assert fc6.is_contiguous() and deconv_fc6.is_contiguous()
    assert not net.encoder.stages[0][0].conv.weight.is_contiguous()
    assert net.encoder.stages[0][0].conv.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)


def test_deconvnet_deconv_fc6_is_a_matmul_deconv_with_the_deconv_parameters():
    net = create_model("deconvnet", num_classes=5, width=0.125)
    layer = net.deconv_fc6[0]
    assert type(layer) is MatmulConvTranspose2d and isinstance(layer, torch.nn.ConvTranspose2d)
    assert "deconv_fc6.0.weight" in net.state_dict()
    assert all(type(m) is torch.nn.ConvTranspose2d for stage in net.decoder for m in stage.modules()
               if isinstance(m, torch.nn.ConvTranspose2d))


def test_vgg_fc6_is_a_matmul_conv_with_the_conv_parameters():
    for name in ("fcn8s", "dilatednet", "deconvnet"):
        enc = create_model(name, num_classes=5, width=0.125).encoder
        assert type(enc.fc6.conv) is MatmulConv2d and isinstance(enc.fc6.conv, torch.nn.Conv2d)
        assert "fc6.conv.weight" in enc.state_dict()
