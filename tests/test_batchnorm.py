"""Precise BatchNorm statistics (deep/engine/batchnorm.py) and the trainer's use of them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deep.engine import transforms as T
from deep.engine.batchnorm import recalibrate_batchnorm, same_size_batches
from deep.engine.loop import train
from test_train import colour_split, ctx, fast_cfg, tiny_model

torch.set_num_threads(1)


def conv_bn_dropout(p: float) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Dropout2d(p), nn.BatchNorm2d(4, momentum=0.01))


def batches_of(seed: int, n: int = 3) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(5, 3, 6, 7, generator=g) * 2 + 1 for _ in range(n)]


def test_statistics_are_the_averages_of_the_batch_statistics_without_dropout():
    batches = batches_of(0)
    net = conv_bn_dropout(0.5)
    net.train()
    assert recalibrate_batchnorm(net, batches, torch.device("cpu")) == 3
    bn = net[2]
    with torch.no_grad():
        feats = [net[0](b) for b in batches]  # dropout is off during recalibration
    means = torch.stack([f.mean((0, 2, 3)) for f in feats])
    variances = torch.stack([f.var((0, 2, 3), unbiased=True) for f in feats])
    torch.testing.assert_close(bn.running_mean, means.mean(0))
    torch.testing.assert_close(bn.running_var, variances.mean(0))
    assert bn.momentum == 0.01 and not net.training and not bn.training
    # the same statistics whatever the dropout rate: dropout never shapes them
    other = conv_bn_dropout(0.0)
    recalibrate_batchnorm(other, batches, torch.device("cpu"))
    torch.testing.assert_close(other[2].running_var, bn.running_var)


def test_recalibrated_network_predicts_like_batch_statistics_on_its_data():
    """The point of it: a lagging running average (momentum 0.01, few steps) makes evaluation
    differ from training-mode outputs; after recalibration on the same data it does not."""
    net = conv_bn_dropout(0.0)
    data = batches_of(1, n=1)[0]
    net.train()
    with torch.no_grad():
        for _ in range(5):
            net(data)
        batch_mode = net(data)
    net.eval()
    assert (net(data) - batch_mode).abs().max() > 0.5
    recalibrate_batchnorm(net, [data], torch.device("cpu"))
    # equal up to the running variance's unbiased n/(n-1) (n = 210 values a channel)
    torch.testing.assert_close(net(data), batch_mode, atol=2e-2, rtol=5e-3)


def test_no_batchnorm_or_no_batches_changes_nothing():
    plain = nn.Sequential(nn.Conv2d(3, 2, 1))
    assert recalibrate_batchnorm(plain, batches_of(0), torch.device("cpu")) == 0
    net = conv_bn_dropout(0.0)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert recalibrate_batchnorm(net, [], torch.device("cpu")) == 0
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, before[k])


def test_a_failure_half_way_leaves_the_old_statistics():
    net = conv_bn_dropout(0.0)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    bad = batches_of(0, n=1) + [torch.randn(2, 5, 6, 7)]  # 5 channels: the conv refuses it
    with pytest.raises(RuntimeError):
        recalibrate_batchnorm(net, bad, torch.device("cpu"))
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, before[k])
    assert net[2].momentum == 0.01


def test_same_size_batches_group_sizes_and_never_leave_a_lone_image():
    a, b, c = torch.zeros(3, 4, 5), torch.zeros(3, 6, 5), torch.zeros(3, 4, 7)
    images = [a, b, a, a, b, a, a, c, a]  # six of size a, two of b, one of c
    shapes = [tuple(x.shape) for x in same_size_batches(images, batch_size=4)]
    assert shapes == [(4, 3, 4, 5), (2, 3, 4, 5), (2, 3, 6, 5), (1, 3, 4, 7)]
    five = [tuple(x.shape) for x in same_size_batches([a] * 5, batch_size=4)]
    assert five == [(5, 3, 4, 5)]  # 4 + a lone one: joined


@pytest.mark.parametrize("precise", [True, False])
def test_the_trainer_keeps_precise_statistics_of_its_training_images(tmp_path, precise):
    train_split = colour_split(6, seed=3)
    model = tiny_model()
    model.body[1].momentum = 0.01  # a lagging running average, as MobileNetV3's
    result = train(model, train_split, None, fast_cfg(epochs=2, precise_bn=precise), ctx(tmp_path))
    final = {k: v for k, v in result.final_state.items()}
    # the statistics by hand: the training images as prediction preprocesses them
    check = tiny_model()
    check.load_state_dict(final)
    images = [T.eval_transform(1.0)(T.to_tv(s.image, s.label)[0]).as_subclass(torch.Tensor) for s in train_split]
    recalibrate_batchnorm(check, same_size_batches(images, 4), torch.device("cpu"))
    same = torch.allclose(final["body.1.running_var"], check.body[1].running_var, atol=1e-5)
    assert same == precise
