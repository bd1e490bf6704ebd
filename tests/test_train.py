"""The one trainer (deep/engine), its transforms and figures, on tiny synthetic data."""

from __future__ import annotations

import copy
import csv
import math
import time

import numpy as np
import pytest
import torch
from torch import nn

from bench.datasets.types import DatasetInfo, InMemorySplit, Sample
from bench.method import FitContext
from deep.engine import transforms as T
from deep.engine.checkpoint import CheckpointError, load_checkpoint, read_checkpoint
from deep.engine.config import TrainConfig, use_channels_last
from deep.engine.data import class_weights, median_frequency_weights
from deep.engine.loop import cudnn_mode, snapshot_epochs, train
from deep.models import create_model

torch.set_num_threads(1)

COLOURS = np.array([[200, 30, 30], [30, 200, 30], [30, 30, 200], [200, 200, 30]], np.uint8)


def make_info(num_classes: int = 3, ignore_index: int | None = 255) -> DatasetInfo:
    return DatasetInfo(
        name=f"colours{num_classes}",
        class_names=tuple(f"c{i}" for i in range(num_classes)),
        palette=COLOURS[:num_classes],
        ignore_index=ignore_index,
    )


def colour_split(n: int, seed: int, *, num_classes: int = 3, size=(32, 48), ignore_index: int | None = 255,
                 name: str = "train") -> InMemorySplit:
    """Easy data: each pixel's class is its (noisy) colour; blocks of random classes."""
    rng = np.random.default_rng(seed)
    h, w = size
    samples = []
    for i in range(n):
        blocks = rng.integers(0, num_classes, size=(4, 6))
        label = np.kron(blocks, np.ones((h // 4 + 1, w // 6 + 1), np.int64))[:h, :w].astype(np.uint8)
        image = COLOURS[label].astype(np.int16) + rng.integers(-25, 26, size=(h, w, 3))
        image = np.clip(image, 0, 255).astype(np.uint8)
        if ignore_index is not None:
            label[0, :] = ignore_index  # a row of unlabelled pixels
        samples.append(Sample(image=image, label=label, id=f"{name}{i}"))
    return InMemorySplit(make_info(num_classes, ignore_index), name, samples)


class TinyNet(nn.Module):
    """Pixel classifier: conv-BN-ReLU-dropout-1x1 (dropout exercises the global RNG)."""

    name = "tiny"
    min_input_size = 1

    def __init__(self, num_classes: int = 3, hidden: int = 8):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, hidden, 3, padding=1), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True),
            nn.Dropout2d(0.1), nn.Conv2d(hidden, num_classes, 1),
        )

    def forward(self, x):
        return self.body(x)


def tiny_model(num_classes: int = 3, seed: int = 0) -> TinyNet:
    torch.manual_seed(seed)
    return TinyNet(num_classes)


def fast_cfg(**kw) -> TrainConfig:
    base = dict(epochs=3, batch_size=4, lr=0.05, optimizer="adam", schedule="poly", weight_decay=0.0,
                crop=(24, 32), scale_range=(0.75, 1.25), hflip=True, jitter=0.1, num_workers=0)
    base.update(kw)
    return TrainConfig(**base)


def ctx(run_dir, **kw) -> FitContext:
    return FitContext(run_dir=run_dir, **{"progress": False, **kw})


@pytest.fixture(scope="module")
def splits():
    return colour_split(8, seed=1), colour_split(4, seed=2, name="val")


# ---------------------------------------------------------------------------------------
def test_learns_easy_split_and_writes_files(splits, tmp_path):
    train_split, val_split = splits
    result = train(tiny_model(), train_split, val_split, fast_cfg(epochs=4), ctx(tmp_path))

    losses = [row["train_loss"] for row in result.history]
    assert [row["epoch"] for row in result.history] == [1, 2, 3, 4]
    assert losses[-1] < losses[0]
    assert result.best_miou > 0.9
    assert result.history[result.best_epoch - 1]["val_miou"] == result.best_miou
    assert result.best_state is not None and result.final_state.keys() == result.best_state.keys()

    for name in ("history.csv", "curves.png", "progress.png", "last.pt", "best.pt"):
        assert (tmp_path / name).stat().st_size > 0, name
    with open(tmp_path / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert math.isclose(float(rows[-1]["val_miou"]), result.history[-1]["val_miou"])
    summary = result.summary()
    assert summary["best_epoch"] == result.best_epoch and len(summary["val_miou"]) == 4
    assert not list(tmp_path.glob(".*tmp")), "temporary files left behind"


class SlowSplit(InMemorySplit):
    """Every sample takes ``delay`` seconds to load: a slow disk or decoder."""

    delay = 0.02

    def load(self, index: int) -> Sample:
        time.sleep(self.delay)
        return super().load(index)


def test_history_says_how_long_training_waited_for_data(splits, tmp_path):
    train_split, val_split = splits
    slow = SlowSplit(train_split.info, "train", train_split.samples)
    cfg = fast_cfg(epochs=2, in_memory="off")  # every epoch loads every training image again
    result = train(tiny_model(), slow, val_split, cfg, ctx(tmp_path / "slow"))
    fast = train(tiny_model(), train_split, val_split, cfg, ctx(tmp_path / "fast"))
    for row, quick in zip(result.history, fast.history):
        # the 8 loads of an epoch are waited for in the loop (no workers), so at least 8 delays
        assert len(slow) * SlowSplit.delay <= row["data_time_s"] <= row["train_time_s"]
        assert quick["data_time_s"] < len(slow) * SlowSplit.delay
        assert row["train_loss"] == quick["train_loss"]  # the same batches, only later
    with open(tmp_path / "slow" / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["data_time_s"]) for r in rows] == pytest.approx([r["data_time_s"] for r in result.history])


@pytest.mark.parametrize("every_s, saved_epoch", [(0.0, 2), (3600.0, 1)])
def test_resume_reaches_the_same_weights(splits, tmp_path, every_s, saved_epoch):
    """Checkpoints after every epoch (0 s), or only after the first and the last (an hour
    apart): an interrupted run resumes from the last one written and ends the same."""
    train_split, val_split = splits
    cfg = fast_cfg(epochs=3, checkpoint_every_s=every_s)
    straight = train(tiny_model(), train_split, val_split, cfg, ctx(tmp_path / "straight"))

    class Interrupted(Exception):
        pass

    def stop_after_two(epoch, row):
        if epoch == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        train(tiny_model(), train_split, val_split, cfg, ctx(tmp_path / "resumed"), on_epoch_end=stop_after_two)
    assert load_checkpoint(tmp_path / "resumed" / "last.pt", model_name="tiny", num_classes=3)["epoch"] == saved_epoch
    with open(tmp_path / "resumed" / "history.csv") as f:
        assert len(list(csv.DictReader(f))) == saved_epoch
    torch.manual_seed(1234)  # the global state at resume time must not matter
    resumed = train(tiny_model(seed=99), train_split, val_split, cfg, ctx(tmp_path / "resumed", resume=True))

    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in straight.history]
    assert straight.final_state.keys() == resumed.final_state.keys()
    for key, value in straight.final_state.items():
        assert torch.equal(value, resumed.final_state[key]), key
    assert resumed.best_epoch == straight.best_epoch


def test_checkpoint_of_another_model_or_class_count_is_a_clear_error(tmp_path):
    train_split = colour_split(4, seed=3)
    cfg = fast_cfg(epochs=1, crop=None, scale_range=(1.0, 1.0))
    train(tiny_model(), train_split, None, cfg, ctx(tmp_path))
    more = fast_cfg(epochs=2, crop=None, scale_range=(1.0, 1.0))
    resume = ctx(tmp_path, resume=True)

    with pytest.raises(CheckpointError, match="network 'tiny', not 'other'"):
        train(tiny_model(), train_split, None, more, resume, model_name="other")
    four = colour_split(4, seed=3, num_classes=4)
    with pytest.raises(CheckpointError, match="3 classes but the dataset has 4"):
        train(tiny_model(4), four, None, more, resume)
    with pytest.raises(CheckpointError, match="shape"):  # same name and classes, other width
        torch.manual_seed(0)
        train(TinyNet(3, hidden=4), train_split, None, more, resume)
    with pytest.warns(UserWarning, match=r"different settings \(lr, seed\)"):  # epochs may change
        train(tiny_model(), train_split, None, fast_cfg(epochs=2, crop=None, scale_range=(1.0, 1.0), lr=0.01),
              ctx(tmp_path, resume=True, seed=5))


def test_unreadable_checkpoints_say_why(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        read_checkpoint(tmp_path / "nope.pt")
    torn = tmp_path / "torn.pt"
    torn.write_bytes(b"PK\x03\x04 half a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(torn, model_name="tiny", num_classes=3)
    other = tmp_path / "state.pt"
    torch.save({"features.0.weight": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match="not a segbench training checkpoint.*format None"):
        load_checkpoint(other, model_name="tiny", num_classes=3)
    torch.save([1, 2], other)
    with pytest.raises(CheckpointError, match="holds a list"):
        load_checkpoint(other, model_name="tiny", num_classes=3)


def test_run_dir_is_required(splits):
    with pytest.raises(ValueError, match="run_dir"):
        train(tiny_model(), splits[0], None, fast_cfg(epochs=1), FitContext(progress=False))


def test_median_frequency_weights_hand_made():
    # image a: class 0 x5, class 1 x3 (8 labelled px); image b: class 0 x3, class 2 x1 (4 px)
    # freq: class 0 = 8 / (8 + 4) = 2/3, class 1 = 3/8, class 2 = 1/4; median = 3/8
    # class 3 never occurs -> weight 1; 255 is ignored everywhere
    a = np.array([[0, 0, 0, 0], [1, 1, 1, 0], [255, 255, 255, 255]], np.uint8)
    b = np.array([[0, 2], [0, 0], [255, 255]], np.uint8)
    w = median_frequency_weights([a, b], 4, 255)
    np.testing.assert_allclose(w, [(3 / 8) / (2 / 3), 1.0, (3 / 8) / (1 / 4), 1.0], rtol=1e-6)
    assert w.dtype == np.float32
    # no ignore index: freq 1/4 and 3/4, median 1/2
    np.testing.assert_allclose(median_frequency_weights([np.array([[0, 1, 1, 1]])], 2, None), [2.0, 2 / 3], rtol=1e-6)


def test_class_weights_kinds_on_a_split(splits):
    train_split = splits[0]
    full = median_frequency_weights((s.label for s in train_split), train_split.info.num_classes,
                                    train_split.info.ignore_index)
    cpu = torch.device("cpu")
    assert class_weights(train_split, "none", cpu, progress=False) is None
    np.testing.assert_allclose(class_weights(train_split, "median-freq", cpu, progress=False).numpy(), full)
    soft = class_weights(train_split, "sqrt-median-freq", cpu, progress=False).numpy()
    np.testing.assert_allclose(soft, np.sqrt(full), rtol=1e-6)
    # the same order of classes, half the spread in log scale
    assert list(np.argsort(soft)) == list(np.argsort(full))
    assert np.ptp(np.log(soft)) == pytest.approx(np.ptp(np.log(full)) / 2, rel=1e-5)
    assert np.ptp(full) > 0  # the split's classes are not balanced, so the check above bites


def test_median_frequency_loss_and_bf16_amp_run_on_cpu(splits, tmp_path):
    train_split, val_split = splits
    cfg = fast_cfg(epochs=1, amp="bf16", class_weights="median-freq", grad_clip=1.0, schedule="cosine",
                   optimizer="sgd", lr=0.05, val_every=1)
    result = train(tiny_model(), train_split, val_split, cfg, ctx(tmp_path))
    assert math.isfinite(result.history[0]["train_loss"])
    assert 0.0 <= result.history[0]["val_miou"] <= 1.0


def test_whole_images_of_odd_sizes_without_ignore_index_and_input_scale(tmp_path):
    # no crop: different-size images are padded into one batch; no ignore index (-100 padding)
    sizes = [(37, 53), (32, 48), (41, 30), (33, 47), (36, 36)]
    parts = [colour_split(1, seed=10 + i, size=s, ignore_index=None, name=f"s{i}") for i, s in enumerate(sizes)]
    train_split = InMemorySplit(parts[0].info, "train", [p.samples[0] for p in parts])
    val_split = InMemorySplit(parts[0].info, "val", [p.samples[0] for p in parts[:2]])
    cfg = fast_cfg(epochs=2, crop=0, scale=0.5, batch_size=3, scale_range=(0.9, 1.1))
    assert cfg.crop == 0 and cfg.crop_size is None  # kept as given, normalised on use
    result = train(tiny_model(), train_split, val_split, cfg, ctx(tmp_path, progress=True))
    assert len(result.history) == 2 and math.isfinite(result.history[-1]["val_miou"])
    assert (tmp_path / "progress.png").exists()


def test_train_transform_pads_masks_with_ignore_and_keeps_label_values():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)
    label = rng.integers(0, 3, (20, 30)).astype(np.uint8)
    tf = T.train_transform(scale=1.0, scale_range=(0.6, 1.4), crop=(32, 40), hflip=True, jitter=0.2, ignore=255)
    torch.manual_seed(0)
    for _ in range(5):
        img, mask = tf(*T.to_tv(image, label))
        assert img.shape == (3, 32, 40) and img.dtype == torch.float32
        assert mask.shape == (32, 40) and mask.dtype == torch.int64
        assert set(mask.unique().tolist()) <= {0, 1, 2, 255}
        assert (mask == 255).any()  # the image is smaller than the crop: padding
    img = T.eval_transform(0.5)(T.to_tv(image))
    assert img.shape == (3, 10, 15)
    images, labels = T.pad_collate([(torch.zeros(3, 5, 7), torch.zeros(5, 7, dtype=torch.int64)),
                                    (torch.zeros(3, 6, 4), torch.ones(6, 4, dtype=torch.int64))], ignore=-100,
                                   min_size=8)
    assert images.shape == (2, 3, 8, 8) and labels.shape == (2, 8, 8)
    assert labels[0, 7, 7] == -100 and labels[1, 5, 3] == 1


def test_config_validation_and_snapshot_epochs():
    for bad in (dict(epochs=0), dict(batch_size=0), dict(lr=0.0), dict(optimizer="rmsprop"),
                dict(schedule="step"), dict(class_weights="inverse"), dict(amp="fp8"), dict(scale=0.0),
                dict(scale_range=(1.2, 0.8)), dict(crop=(0, 5)), dict(val_every=0), dict(grad_clip=-1.0)):
        with pytest.raises(ValueError):
            TrainConfig(**bad)
    for bad in (dict(crop=-3), dict(crop=True), dict(crop=(24,)), dict(scale_range=[0.5])):
        with pytest.raises(ValueError, match="crop|scale_range"):
            TrainConfig(**bad)
    assert TrainConfig(crop=64).crop_size == (64, 64)
    assert TrainConfig(crop=[24, 32]).crop == (24, 32) == TrainConfig(crop=[24, 32]).crop_size
    assert TrainConfig().crop_size is None
    assert TrainConfig().epochs == 20  # the deep methods' defaults are the trainer's
    assert snapshot_epochs(1) == [1] and snapshot_epochs(2) == [1, 2] and snapshot_epochs(10) == [1, 5, 10]


def test_trains_a_registered_network(splits, tmp_path):
    train_split, val_split = splits
    torch.manual_seed(0)
    net = create_model("unet", num_classes=3, width=0.0625)
    result = train(net, train_split, val_split, fast_cfg(epochs=1, crop=None, scale_range=(1.0, 1.0)), ctx(tmp_path))
    assert math.isfinite(result.history[0]["train_loss"])
    assert load_checkpoint(tmp_path / "last.pt", model_name="unet", num_classes=3)["epoch"] == 1


# -- speed features: the in-memory path, compile fall-back, warm-up, budgets --------------
def test_the_in_memory_path_trains_exactly_like_the_on_the_fly_path(splits, tmp_path):
    train_split, val_split = splits
    kw = dict(epochs=2, scale=0.75, scale_range=(0.8, 1.2), crop=(20, 28), jitter=0.2)
    runs = {mode: train(tiny_model(), train_split, val_split, fast_cfg(in_memory=mode, **kw), ctx(tmp_path / mode))
            for mode in ("off", "on")}
    assert [r["train_loss"] for r in runs["on"].history] == [r["train_loss"] for r in runs["off"].history]
    assert [r["val_miou"] for r in runs["on"].history] == [r["val_miou"] for r in runs["off"].history]
    for key, value in runs["off"].final_state.items():
        assert torch.equal(value, runs["on"].final_state[key]), key


def test_channels_last_auto_is_on_where_it_pays(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert not use_channels_last("auto", cpu) and use_channels_last(True, cpu) and use_channels_last("auto", cuda)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert use_channels_last("auto", cpu) and not use_channels_last(False, cpu)
    assert fast_cfg().channels_last == "auto"
    with pytest.raises(ValueError, match="channels_last"):
        fast_cfg(channels_last="yes")


def test_cudnn_benchmarks_its_algorithms_on_a_gpu_for_crops_unless_deterministic():
    def flags():
        return (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
                torch.are_deterministic_algorithms_enabled())

    before = flags()
    with cudnn_mode(False, torch.device("cuda"), fixed_shapes=True):
        assert flags() == (True, before[1], before[2])
    assert flags() == before
    for device, fixed in (("cpu", True), ("cuda", False)):  # no cuDNN; whole images of many sizes
        with cudnn_mode(False, torch.device(device), fixed_shapes=fixed):
            assert flags() == before
    with cudnn_mode(True, torch.device("cuda"), fixed_shapes=True):
        assert flags() == (False, True, True)
    assert flags() == before


def test_channels_last_trains_like_contiguous_to_rounding(splits, tmp_path):
    train_split, val_split = splits
    nets = {layout: tiny_model() for layout in (False, True)}
    runs = {layout: train(net, train_split, val_split, fast_cfg(epochs=1, channels_last=layout),
                          ctx(tmp_path / str(layout))) for layout, net in nets.items()}
    assert runs[True].history[0]["val_miou"] == pytest.approx(runs[False].history[0]["val_miou"], abs=1e-6)
    x = torch.rand(2, 3, 24, 32)
    with torch.no_grad():  # same function; parameters can differ where the gradient is only
        # rounding noise (the conv bias before BatchNorm, which Adam's normalisation scales up)
        torch.testing.assert_close(nets[True].eval()(x), nets[False].eval()(x), rtol=1e-4, atol=1e-4)
    # the checkpoint keeps the layout that ran, "auto" resolved
    assert load_checkpoint(tmp_path / "True" / "last.pt", model_name="tiny", num_classes=3)["config"]["channels_last"] is True
    auto = train(tiny_model(), train_split, None, fast_cfg(epochs=1), ctx(tmp_path / "auto"))
    saved = read_checkpoint(tmp_path / "auto" / "last.pt")["config"]["channels_last"]
    assert saved is use_channels_last("auto", torch.device("cpu")) and auto.history


def test_in_memory_items_equal_on_the_fly_items():
    from deep.engine.data import InMemoryDataset, PreparedImages, SplitDataset

    split = colour_split(3, seed=5)
    aug = dict(scale_range=(0.7, 1.3), crop=(16, 20), hflip=True, jitter=0.3, ignore=255)
    fly = SplitDataset(split, T.train_transform(scale=0.5, **aug))
    mem = InMemoryDataset(SplitDataset(split, None), T.Scale(0.5), T.augment_transform(**aug))
    for i in range(3):
        torch.manual_seed(i)
        a = fly[i]
        torch.manual_seed(i)
        b = mem[i]
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    ev_fly = SplitDataset(split, T.eval_transform(0.5), keep_label=True)
    ev_mem = InMemoryDataset(SplitDataset(split, None, keep_label=True), T.eval_transform(0.5), lambda x: x)
    assert all(torch.equal(ev_fly[i][0], ev_mem[i][0]) and torch.equal(ev_fly[i][1], ev_mem[i][1]) for i in range(3))
    # precise BatchNorm's copy of the training images: the evaluation preprocessing, no labels
    calib = PreparedImages(SplitDataset(split, None, keep_label=True), T.eval_transform(0.5))
    assert len(calib) == 3 and "images" not in vars(calib)  # nothing decoded until an image is read
    assert all(torch.equal(ev_fly[i][0], calib[i][0]) and calib[i][1].numel() == 0 for i in range(3))


def test_compile_falls_back_to_eager_when_the_compiler_fails(splits, tmp_path, monkeypatch):
    import deep.engine.compiling as compiling

    def broken_compile(net):
        def run(x):
            raise RuntimeError("InductorError: no working C++ compiler\nsecond line")
        return run

    monkeypatch.setattr(compiling.torch, "compile", broken_compile)
    train_split, val_split = splits
    eager = train(tiny_model(), train_split, val_split, fast_cfg(epochs=2), ctx(tmp_path / "eager"))
    with pytest.warns(RuntimeWarning, match=r"torch.compile failed here .*no working C\+\+ compiler\); training continues"):
        fallback = train(tiny_model(), train_split, val_split, fast_cfg(epochs=2, compile=True), ctx(tmp_path / "c"))
    for key, value in eager.final_state.items():
        assert torch.equal(value, fallback.final_state[key]), key


def test_an_input_error_is_not_taken_for_a_compiler_failure(monkeypatch):
    import deep.engine.compiling as compiling

    monkeypatch.setattr(compiling.torch, "compile", lambda net: net)
    net = compiling.CompiledOrEager(nn.Conv2d(3, 2, 1))
    with pytest.raises(RuntimeError, match="channels"):
        net(torch.zeros(1, 5, 4, 4))  # the eager net fails too: its own error, no fall-back
    assert net.fell_back is None


def test_warm_up_then_schedule_and_the_epoch_budget_ends_where_it_says():
    from deep.engine.optim import make_scheduler

    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = make_scheduler(opt, "poly", total_iters=100, warmup_iters=10)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:3] == pytest.approx([(i + 1) / 10 * (1 - i / 100) ** 0.9 for i in range(3)])
    assert lrs[9] == pytest.approx((1 - 9 / 100) ** 0.9) and max(lrs) <= 1.0
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0)  # the budget's last step ends the schedule


def test_training_stops_at_its_epoch_budget(splits, tmp_path):
    train_split, val_split = splits
    result = train(tiny_model(), train_split, val_split, fast_cfg(epochs=3, warmup_epochs=1.0, val_every=2),
                   ctx(tmp_path))
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    assert math.isnan(result.history[0]["val_miou"]) and not math.isnan(result.history[-1]["val_miou"])
    assert result.history[-1]["lr"] == pytest.approx(0.0, abs=1e-9)
    # 8 images, batch 4: 2 steps an epoch, counted by the trainer for the leaderboard's budget
    assert [r["steps"] for r in result.history] == [2, 2, 2] and result.summary()["optimizer_steps"] == 6


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_the_fused_optimiser_makes_the_plain_update(name):
    from deep.engine.optim import make_optimizer
    cfg = fast_cfg(optimizer=name, lr=0.01, weight_decay=1e-4)
    fused_net, plain_net = tiny_model(), tiny_model()
    fused = make_optimizer(fused_net, cfg)
    assert fused.defaults["fused"] is True
    assert not make_optimizer(tiny_model(), fast_cfg(optimizer=name, fused=False)).defaults["fused"]
    plain_cls = torch.optim.SGD if name == "sgd" else torch.optim.Adam
    extra = {"momentum": 0.9} if name == "sgd" else {}
    plain = plain_cls(plain_net.parameters(), lr=0.01, weight_decay=1e-4, foreach=False, **extra)
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    for _ in range(3):
        for net, opt in ((fused_net, fused), (plain_net, plain)):
            opt.zero_grad()
            net.eval()  # no dropout: both see the same function
            net(x).square().mean().backward()
            opt.step()
    for a, b in zip(fused_net.parameters(), plain_net.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_resumed_optimiser_state_takes_its_parameters_layout():
    """Adam's moments saved from a channels-last run, resumed where the weights are
    contiguous (channels-last is a runtime setting; the matrix-product layers keep theirs
    contiguous): the fused step continues as the uninterrupted run does, which torch's fused
    CPU Adam does only once the moments are in the weights' layout."""
    from deep.engine.checkpoint import match_state_layouts

    torch.manual_seed(0)
    saved_net = nn.Conv2d(4, 8, 3).to(memory_format=torch.channels_last)
    saved_opt = torch.optim.Adam(saved_net.parameters(), lr=0.1, fused=True)
    x = torch.randn(2, 4, 6, 6)

    def step(net, opt, x):
        opt.zero_grad()
        net(x).square().mean().backward()
        opt.step()

    for _ in range(2):
        step(saved_net, saved_opt, x.contiguous(memory_format=torch.channels_last))
    saved_weights, saved = copy.deepcopy(saved_net.state_dict()), copy.deepcopy(saved_opt.state_dict())
    assert not saved["state"][0]["exp_avg"].is_contiguous()
    step(saved_net, saved_opt, x.contiguous(memory_format=torch.channels_last))  # the uninterrupted run

    net = nn.Conv2d(4, 8, 3)
    net.load_state_dict(saved_weights)
    opt = torch.optim.Adam(net.parameters(), lr=0.1, fused=True)
    opt.load_state_dict(saved)
    match_state_layouts(opt)
    assert opt.state[net.weight]["exp_avg"].stride() == net.weight.stride()
    step(net, opt, x)
    torch.testing.assert_close(net.weight, saved_net.weight)
