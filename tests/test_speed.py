"""Speed harness (bench/speed/): the timing core, network sweeps, OOM back-off, loader, classical
methods, output; CPU only, tiny models, no timed asserts."""

from __future__ import annotations

import dataclasses
import json
import math
import time
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from bench import speed, torch_helpers
from bench.datasets.types import DatasetInfo, InMemorySplit, Sample
from bench.formatting import DASH
from bench.method import Capabilities, FitContext, Method, MethodError, create_method, register_method
from bench.speed import core, gpu_peaks, loader

HW = (32, 32)
FAST = dict(warmup=1, iters=2, min_time_s=0.0)


class TinyNet(nn.Module):
    """Conv -> ReLU -> 1x1 conv: logits N x K x H x W, like the real networks."""

    def __init__(self, num_classes: int = 3):
        super().__init__()
        self.num_classes = num_classes
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, num_classes, 1))

    def forward(self, x):
        return self.body(x)


class OomAbove(TinyNet):
    """Raises the real CUDA out-of-memory exception for batches larger than ``limit``."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit = limit
        self.seen: list[int] = []

    def forward(self, x):
        self.seen.append(x.shape[0])
        if x.shape[0] > self.limit:
            big = torch.empty(x.shape[0], 1024)  # something for the recovery to free
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {big.numel()} (test)")
        return super().forward(x)


def _ok(rec):
    assert rec["status"] == "ok", rec["note"]
    return rec


# -- the timing core ---------------------------------------------------------------------------
def test_timed_syncs_before_and_after_and_returns_the_result():
    events = []
    out, seconds = core.timed(lambda: events.append("call") or 7, lambda: events.append("sync"))
    assert out == 7 and seconds >= 0
    assert events == ["sync", "call", "sync"]


def test_warm_up_calls_each_item_then_syncs():
    events = []
    core.warm_up(events.append, ["a", "b"], lambda: events.append("sync"))
    assert events == ["a", "b", "sync"]


def test_timing_summaries():
    t = core.Timing([0.1, 0.2, 0.3, 0.4])
    assert t.mean == pytest.approx(0.25) and t.median == pytest.approx(0.25)
    assert t.rate == pytest.approx(4 / 1.0)  # calls over summed seconds = 1 / mean
    assert t.percentile(100) == pytest.approx(0.4)
    empty = core.Timing([])
    assert math.isnan(empty.mean) and math.isnan(empty.rate)


def test_time_calls_runs_iters_and_min_time_on_cpu():
    calls = []
    timing, span = core.time_calls(lambda: calls.append(1), torch.device("cpu"), iters=4, min_time_s=0.0)
    assert len(calls) == len(timing.seconds) == 4
    assert span >= sum(timing.seconds)  # the span covers every timed call
    timing, span = core.time_calls(lambda: None, torch.device("cpu"), iters=1, min_time_s=0.02)
    assert span >= 0.02 and len(timing.seconds) >= 1


# -- measure_model --------------------------------------------------------------------------
def test_measure_model_cpu_fp32_record():
    rec = _ok(speed.measure_model(TinyNet(), HW, 2, "cpu", "fp32", **FAST))
    assert rec["images_per_s"] > 0
    assert 0 < rec["latency_p50_ms"] <= rec["latency_p95_ms"]
    assert rec["iters"] >= 2 and rec["time_s"] > 0
    assert math.isclose(rec["images_per_s"], 2 * rec["iters"] / rec["time_s"])
    # every record names device, precision, batch size, input size, versions
    assert rec["device"] == "cpu" and rec["device_name"].startswith("cpu:")
    assert (rec["precision"], rec["batch_size"], rec["input_hw"], rec["layout"], rec["mode"]) == (
        "fp32", 2, "32x32", "NCHW", "eager")
    assert rec["torch"] and rec["python"] and "cuda" in rec
    assert rec["peak_tflops"] is None and rec["fraction_of_peak"] is None  # CPU without --peak-tflops
    assert rec["peak_mem_mib"] is None or rec["peak_mem_mib"] >= 0


def test_warm_up_is_reported_apart_from_the_timed_forwards():
    """``warmup_s`` holds the untimed warm-up forwards (where cuDNN autotunes), no rate does."""
    class SlowFirstCalls(TinyNet):
        calls = 0

        def forward(self, x):
            SlowFirstCalls.calls += 1
            if SlowFirstCalls.calls <= 3:  # the three warm-up forwards
                time.sleep(0.1)
            return super().forward(x)

    rec = _ok(speed.measure_model(SlowFirstCalls(), HW, 1, "cpu", "fp32", warmup=3, iters=3, min_time_s=0.0,
                                  flops_per_image=1))  # given: no counting forward before the warm-up
    assert rec["warmup_s"] >= 0.3 > rec["time_s"]
    assert "warmup_s" in speed.format_speed(rec, "md")


def test_measure_model_runs_iters_and_min_time():
    rec = _ok(speed.measure_model(TinyNet(), HW, 1, "cpu", "fp32", warmup=0, iters=3, min_time_s=0.05))
    assert rec["iters"] >= 3 and rec["time_s"] >= 0.05


def test_bf16_autocast_runs_on_cpu_and_layout_restored():
    net = TinyNet()
    rec = _ok(speed.measure_model(net, HW, 1, "cpu", "bf16", channels_last=True, **FAST))
    assert rec["layout"] == "NHWC" and rec["images_per_s"] > 0
    assert all(p.is_contiguous() for p in net.parameters())  # weights back to NCHW
    assert all(p.dtype == torch.float32 for p in net.parameters())  # autocast, not a cast


@pytest.mark.parametrize("precision", ["fp16", "tf32"])
def test_unsupported_precisions_on_cpu_give_a_noted_row(precision):
    rec = speed.measure_model(TinyNet(), HW, 1, "cpu", precision, **FAST)
    assert rec["status"] == "unsupported"
    assert "unsupported on cpu" in rec["note"]
    assert rec["images_per_s"] is None


def test_cuda_graphs_on_cpu_is_a_note_not_a_crash():
    rec = speed.measure_model(TinyNet(), HW, 1, "cpu", "fp32", cuda_graphs=True, **FAST)
    assert rec["status"] == "unsupported" and "CUDA graphs unsupported on cpu" in rec["note"]
    assert rec["mode"] == "cuda-graphs"


def test_compile_failure_gives_a_noted_row(monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("inductor is broken here")

    monkeypatch.setattr(torch, "compile", broken)
    rec = speed.measure_model(TinyNet(), HW, 1, "cpu", "fp32", compile=True, **FAST)
    assert rec["status"] == "failed" and "inductor is broken here" in rec["note"]
    assert rec["mode"] == "compile"


def test_unknown_precision_is_an_error():
    with pytest.raises(ValueError, match="unknown precision"):
        speed.measure_model(TinyNet(), HW, 1, "cpu", "int8", **FAST)


def test_precision_context_restores_flags():
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    with torch_helpers.precision_context("bf16", "cpu"):
        assert torch.is_autocast_enabled("cpu")
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
    assert not torch.is_autocast_enabled("cpu")
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == saved


def _cpu_flags() -> set[str] | None:
    try:
        with open("/proc/cpuinfo") as f:
            return next((set(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")), None)
    except OSError:
        return None


def test_fast_bf16_check_follows_the_cpu_flags():
    flags = _cpu_flags()
    if flags is None or not {"avx2", "avx"} & flags:
        pytest.skip("no x86 /proc/cpuinfo flags to compare with")
    # oneDNN's bf16 kernels need AVX-512 with its BW, VL and DQ subsets
    assert torch_helpers.cpu_has_fast_bf16() == ({"avx512bw", "avx512vl", "avx512dq"} <= flags)


def test_bf16_on_a_cpu_without_bf16_kernels_warns(monkeypatch):
    monkeypatch.setattr(torch_helpers, "cpu_has_fast_bf16", lambda: False)
    with pytest.warns(torch_helpers.SlowPrecisionWarning, match="20x slower.*amp: none"):
        torch_helpers.check_precision("bf16", "cpu")
    monkeypatch.setattr(torch_helpers, "cpu_has_fast_bf16", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        torch_helpers.check_precision("bf16", "cpu")
        torch_helpers.check_precision("fp32", "cpu")


@pytest.mark.filterwarnings("ignore:CUDA is not available:UserWarning")
def test_tf32_flags_off_for_fp32_and_on_for_tf32_then_restored():
    # the flags are plain globals: this checks the CUDA branch without a GPU
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        for precision, expected in [("fp32", False), ("bf16", False), ("tf32", True)]:
            with torch_helpers.precision_context(precision, "cuda"):
                assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (
                    expected, expected), precision
            assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


# -- FLOPs and peak -------------------------------------------------------------------------
def test_flops_of_one_conv_is_two_times_mac():
    conv = nn.Conv2d(3, 8, kernel_size=3, padding=1)
    h, w = 16, 20
    mac = h * w * 8 * 3 * 3 * 3  # output pixels x out channels x in channels x kernel
    assert torch_helpers.count_flops(conv, (h, w)) == 2 * mac


def test_tflops_and_fraction_of_peak():
    net = TinyNet()
    flops = torch_helpers.count_flops(net, HW)
    assert flops == 2 * (32 * 32 * 4 * 3 * 9 + 32 * 32 * 3 * 4)
    rec = _ok(speed.measure_model(net, HW, 2, "cpu", "fp32", peak_tflops=0.5, **FAST))
    assert rec["gflops_per_image"] == pytest.approx(flops / 1e9)
    assert rec["achieved_tflops"] == pytest.approx(flops * rec["images_per_s"] / 1e12)
    assert rec["peak_tflops"] == 0.5
    assert rec["fraction_of_peak"] == pytest.approx(rec["achieved_tflops"] / 0.5)


@pytest.mark.parametrize("name,precision,expected", [
    ("NVIDIA H100 80GB HBM3", "bf16", 989.4),
    ("NVIDIA H100 PCIe", "fp32", 51.0),
    ("NVIDIA H100 NVL", "tf32", 417.5),
    ("NVIDIA H200", "fp16", 989.4),
    ("NVIDIA A100-SXM4-40GB", "tf32", 156.0),
    ("NVIDIA A100 80GB PCIe", "bf16", 312.0),
    ("NVIDIA A10", "fp32", 31.2),
    ("NVIDIA L4", "bf16", 121.0),
    ("NVIDIA L40S", "tf32", 183.0),
    ("Tesla T4", "fp16", 65.0),
    ("Tesla T4", "bf16", None),
    ("Tesla V100-SXM2-16GB", "fp16", 125.0),
    ("NVIDIA GeForce RTX 3090", "fp16", 71.0),
    ("NVIDIA GeForce RTX 4090", "fp32", 82.6),
    ("Some Future GPU", "fp32", None),
])
def test_gpu_peaks_lookup(name, precision, expected):
    assert gpu_peaks.peak_tflops(name, precision) == expected


def test_gpu_peaks_does_not_confuse_similar_names():
    assert gpu_peaks.lookup("NVIDIA A100-PCIE-40GB").name == "A100"
    assert gpu_peaks.lookup("NVIDIA A10").name == "A10"
    assert gpu_peaks.lookup("NVIDIA L40S").name == "L40S"
    assert gpu_peaks.lookup("NVIDIA L4").name == "L4"
    assert gpu_peaks.lookup("NVIDIA L40") is None  # not in the table: no silent wrong peak
    for peak in gpu_peaks.known_gpus():  # tensor-core rates are never below the fp32 rate
        for p in ("tf32", "bf16", "fp16"):
            v = peak.for_precision(p)
            assert v is None or v >= peak.fp32


# -- OOM back-off -----------------------------------------------------------------------------
def test_largest_batch_stops_at_the_real_oom_exception():
    net = OomAbove(limit=4)
    assert speed.largest_batch(net, HW, "cpu", cap=64) == 4
    assert 8 in net.seen and 16 not in net.seen  # doubling stopped at the first OOM
    probe = speed.probe_largest_batch(net, HW, "cpu", cap=64)
    assert (probe.largest, probe.oom_at) == (4, 8) and "8" in probe.note


def test_largest_batch_respects_the_cap():
    probe = speed.probe_largest_batch(OomAbove(limit=100), HW, "cpu", cap=8)
    assert (probe.largest, probe.oom_at) == (8, None)


def test_asking_for_a_batch_that_does_not_fit_backs_off_to_the_largest_that_does():
    net = OomAbove(limit=4)
    rec = speed.measure_with_backoff(net, HW, 16, "cpu", "fp32", **FAST)
    assert rec["status"] == "ok"
    assert (rec["requested_batch_size"], rec["batch_size"]) == (16, 4)
    assert "batch 16 does not fit" in rec["note"] and "largest that fitted = 4" in rec["note"]
    assert rec["images_per_s"] > 0
    # and the plain measurement reports the OOM as a status, not an exception
    assert speed.measure_model(net, HW, 8, "cpu", "fp32", **FAST)["status"] == "oom"


def test_speed_table_notes_the_backoff():
    df = speed.speed_table(OomAbove(limit=4), "cpu", input_hw=HW, batch_sizes=[16], precisions=["fp32"],
                           end_to_end=False, **FAST)
    row = df[~df["baseline"]].iloc[0]
    assert row["batch_size"] == 4 and row["requested_batch_size"] == 16
    assert "backed off" in row["note"]


# -- the table ------------------------------------------------------------------------------
def test_speed_table_baseline_speedup_and_formats():
    df = speed.speed_table("segnet-basic", "cpu", width=0.25, input_hw=HW, batch_sizes="1,2",
                           precisions="fp32,bf16,fp16", num_classes=4, end_to_end=False, **FAST)
    assert isinstance(df, pd.DataFrame)
    # 1 baseline + (batch 2 fp32) + (1, 2) x bf16 + (1, 2) x fp16 (unsupported rows)
    assert len(df) == 6
    base = df[df["baseline"]]
    assert len(base) == 1
    b = base.iloc[0]
    assert (b["precision"], b["batch_size"], b["layout"], b["mode"]) == ("fp32", 1, "NCHW", "eager")
    assert b["speedup_vs_eager_fp32"] == pytest.approx(1.0)
    ok = df[df["status"] == "ok"]
    assert (ok["speedup_vs_eager_fp32"] > 0).all()
    assert set(df.loc[df["precision"] == "fp16", "status"]) == {"unsupported"}
    for col in ("device", "device_name", "precision", "batch_size", "input_hw", "torch", "cuda", "width"):
        assert df[col].notna().all(), col
    assert set(df["input_hw"]) == {"32x32"} and set(df["model"]) == {"segnet-basic"}

    records = json.loads(speed.format_speed(df, "json"))
    assert len(records) == 6 and records[0]["precision"] == "fp32"
    assert records[0]["speedup_vs_eager_fp32"] == pytest.approx(1.0)
    csv = speed.format_speed(df, "csv")
    assert csv.splitlines()[0].startswith("model,width")
    md = speed.format_speed(df, "md")
    assert "| model |" in md and "device_name: cpu:" in md and "unsupported on cpu" in md
    fp16_line = next(line for line in md.splitlines() if "| fp16 |" in line)
    assert f"| {DASH} |" in fp16_line  # no images/s for an unsupported row
    with pytest.raises(ValueError):
        speed.format_speed(df, "xml")


@dataclasses.dataclass
class _WidthSettings:
    width: float = 0.5


@register_method("test-speed-tiny-network")
class TinyNetworkMethod(Method):
    """A method with a network: speed_table builds it through the registry, never by name."""

    kind = "deep"
    Settings = _WidthSettings
    capabilities = Capabilities(network=True)

    def _fit(self, train, val):
        raise AssertionError("speed never fits a network method")

    def predict(self, image):
        raise AssertionError("speed times the network, not predict")

    def create_network(self, num_classes):
        net = TinyNet(num_classes)
        net.width = self.settings.width
        return net


def test_speed_table_of_a_registered_network_method():
    df = speed.speed_table("test-speed-tiny-network", "cpu", width=0.75, input_hw=HW, num_classes=5,
                           end_to_end=False, **FAST)
    (row,) = df.itertuples(index=False)
    assert (row.model, row.width, row.num_classes, row.status) == ("test-speed-tiny-network", 0.75, 5, "ok")


def test_speed_table_hands_on_every_row_as_it_is_measured():
    seen = []
    df = speed.speed_table(TinyNet(), "cpu", input_hw=HW, batch_sizes=[1, 2, 3], precisions=["fp32"],
                           end_to_end=False, on_row=lambda table: seen.append(table.copy()), **FAST)
    assert [len(t) for t in seen] == [1, 2, 3]  # the baseline first, then each setting
    assert bool(seen[0]["baseline"].iloc[0]) and seen[0]["speedup_vs_eager_fp32"].iloc[0] == 1.0
    pd.testing.assert_frame_equal(seen[-1], df)


def test_cli_speed_writes_the_table_after_every_row(tmp_path, capsys, monkeypatch):
    from bench.cli import EXIT_INTERRUPTED, main

    out = tmp_path / "sweep" / "speed.md"
    code = main(["speed", "--model", "test-speed-tiny-network", "--input", "32x32", "--num-classes", "3",
                 "--batch-sizes", "1,2,3", "--warmup", "1", "--iters", "2", "--min-time", "0", "--no-e2e",
                 "--format", "md", "--out", str(out)])
    assert code == 0
    printed, log = capsys.readouterr()
    assert out.read_text() == printed  # the whole table, as printed
    lines = [line for line in log.splitlines() if line.startswith("[speed] ")]
    assert [line.split(":")[0] for line in lines] == [  # the baseline, then each batch size (1 is the baseline)
        f"[speed] test-speed-tiny-network fp32 batch {b} NCHW eager" for b in (1, 2, 3)]
    assert all(": ok, " in line and " images/s (" in line for line in lines)

    # a sweep stopped after its first row (a time limit, a crash) keeps that row in the file
    calls = []
    real = speed.networks.measure_with_backoff

    def stop_at_the_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(speed.networks, "measure_with_backoff", stop_at_the_second)
    partial = tmp_path / "partial.csv"
    code = main(["speed", "--model", "test-speed-tiny-network", "--input", "32x32", "--batch-sizes", "2",
                 "--warmup", "1", "--iters", "2", "--min-time", "0", "--no-e2e", "--format", "csv", "--out", str(partial)])
    assert code == EXIT_INTERRUPTED and len(calls) == 2
    kept = pd.read_csv(partial)
    assert len(kept) == 1 and bool(kept["baseline"].iloc[0]) and kept["images_per_s"].iloc[0] > 0


def test_speed_table_builds_networks_through_the_method_registry():
    with pytest.raises(MethodError, match="unknown method 'no-such-net'"):
        speed.speed_table("no-such-net", "cpu", input_hw=HW, end_to_end=False, **FAST)
    with pytest.raises(MethodError, match="'majority' has no network"):
        speed.speed_table("majority", "cpu", input_hw=HW, end_to_end=False, **FAST)
    torch.manual_seed(123)
    a = speed.build_network("segnet-basic", 4, width=0.25, seed=1)
    b = speed.build_network("segnet-basic", 4, width=0.25, seed=1)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert a(torch.zeros(1, 3, *HW)).shape == (1, 4, *HW)


def test_speed_table_with_options_keeps_the_eager_baseline():
    df = speed.speed_table(TinyNet(), "cpu", input_hw=HW, batch_sizes=[1], precisions=["fp32"],
                           channels_last=True, cuda_graphs=True, end_to_end=False, **FAST)
    assert len(df) == 2
    base, other = df[df["baseline"]].iloc[0], df[~df["baseline"]].iloc[0]
    assert base["status"] == "ok" and base["layout"] == "NCHW"
    assert (other["layout"], other["mode"], other["status"]) == ("NHWC", "cuda-graphs", "unsupported")


def test_speed_table_auto_batches():
    df = speed.speed_table(OomAbove(limit=2), "cpu", input_hw=HW, batch_sizes="auto", precisions=["fp32"],
                           end_to_end=False, **FAST)
    assert sorted(df["batch_size"]) == [1, 2]
    assert "auto: largest batch that fits: 2" in df.loc[df["batch_size"] == 2, "note"].iloc[0]


# -- end to end -------------------------------------------------------------------------------
@pytest.mark.parametrize("workers", [0, 2])
def test_speed_table_end_to_end(workers):
    df = speed.speed_table(TinyNet(), "cpu", input_hw=HW, batch_sizes=[2], precisions=["fp32"],
                           end_to_end=True, num_workers=workers, **FAST)
    assert (df["status"] == "ok").all() and set(df["num_workers"]) == {workers}
    assert df["images_per_s"].gt(0).all()
    assert df["e2e_images_per_s"].gt(0).all() and df["loader_images_per_s"].gt(0).all()
    assert set(df["limited_by"]) <= {"model", "data loading"}


def test_end_to_end_failure_is_a_note_not_a_crash(monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("DataLoader worker (pid 1) is killed by signal: Bus error.")

    monkeypatch.setattr(loader, "make_loader", broken)
    df = speed.speed_table(TinyNet(), "cpu", input_hw=HW, batch_sizes=[1], precisions=["fp32"],
                           end_to_end=True, num_workers=0, **FAST)
    (row,) = df.itertuples(index=False)
    assert row.status == "ok" and row.images_per_s > 0
    assert pd.isna(row.e2e_images_per_s) and "end-to-end not measured" in row.note


def test_write_images_writes_png_and_jpeg(tmp_path):
    assert [p.name for p in speed.write_images(tmp_path, HW, count=3)] == ["img_0000.png", "img_0001.png",
                                                                           "img_0002.png"]
    assert len(speed.write_images(tmp_path / "j", HW, count=2, image_format="jpeg")) == 2
    assert len(list((tmp_path / "j").glob("*.jpg"))) == 2
    with pytest.raises(ValueError, match="png or jpeg"):
        speed.write_images(tmp_path, HW, image_format="bmp")


def test_image_dataset_decodes_and_normalises(tmp_path):
    paths = speed.write_images(tmp_path, (8, 12), count=2, image_format="jpeg")
    for decoder in ("pil", "cv2"):
        ds = speed.ImageFileDataset(paths, length=5, decoder=decoder)
        x = ds[3]  # cycles over the files
        assert x.shape == (3, 8, 12) and x.dtype == torch.float32
        assert -2.2 < float(x.min()) and float(x.max()) < 2.7  # ImageNet-normalised range


# -- classical methods --------------------------------------------------------------------------
def _majority_and_images():
    info = DatasetInfo("tiny", ("a", "b", "c"), np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0]], np.uint8))
    rng = np.random.default_rng(0)
    samples = [Sample(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), np.full((8, 8), 1, np.uint8), f"s{i}")
               for i in range(3)]
    method = create_method("majority")
    method.fit(InMemorySplit(info, "train", samples), None, FitContext(progress=False))
    images = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(6)]
    return method, images


def test_classical_speed_one_and_two_processes():
    method, images = _majority_and_images()
    res = speed.classical_speed(method, images, processes=(1, 2))
    assert res["method"] == "majority" and res["num_images"] == 6 and res["input_hw"] == "16x16"
    assert [r["processes"] for r in res["rows"]] == [1, 2]
    for r in res["rows"]:
        assert r["images_per_s"] > 0 and r["ms_per_image_p50"] >= 0
        assert r["device_name"].startswith("cpu:")
    md = speed.format_speed(res, "md")
    assert "| method |" in md and "majority" in md


def test_classical_speed_on_one_thread_reports_the_stages_and_restores_threads():
    import cv2

    info = DatasetInfo("halves", ("dark", "light"), np.array([[0, 0, 0], [255, 255, 255]], np.uint8))
    rng = np.random.default_rng(0)

    def halves(i: int) -> Sample:  # a dark and a light noisy half, split at a random column
        cut = int(rng.integers(16, 48))
        label = np.zeros((48, 64), np.uint8)
        label[:, cut:] = 1
        image = np.clip(60 + 120 * label[..., None] + rng.normal(0, 8, (48, 64, 3)), 0, 255).astype(np.uint8)
        return Sample(image, label, f"h{i}")

    method = create_method("sobel", {"max_train_images": 6, "n_estimators": 10})
    method.fit(InMemorySplit(info, "train", [halves(i) for i in range(6)]), None, FitContext(progress=False))
    images = [halves(i).image for i in range(3)]
    cv_before, torch_before = cv2.getNumThreads(), torch.get_num_threads()
    res = speed.classical_speed(method, images, processes=(1,), threads=1)
    (row,) = res["rows"]
    assert row["threads"] == 1
    for stage in ("edge_map", "partition", "features", "classifier"):
        assert row[f"{stage}_ms_p50"] >= 0
    assert row["edge_map_ms_p50"] <= row["partition_ms_p50"]
    assert "crf_inference_ms_p50" not in row
    assert (cv2.getNumThreads(), torch.get_num_threads()) == (cv_before, torch_before)
    md = speed.format_speed(res, "md")
    assert "edge_map_ms_p50" in md and "| threads |" not in md.split("\n")[0]
    with pytest.raises(ValueError, match="threads must be >= 1"):
        speed.classical_speed(method, images, processes=(1,), threads=0)
    # a method without stages (majority) gets no stage columns
    majority, small = _majority_and_images()
    (row,) = speed.classical_speed(majority, small, processes=(1,))["rows"]
    assert row["threads"] == "default" and not any(k.endswith("_ms_p50") and k != "ms_per_image_p50" for k in row)


@register_method("test-speed-counting")
class CountingMethod(Method):
    """Counts its predicts and syncs (module level: a pool pickles it by reference)."""

    def _fit(self, train, val):
        self.predicts = self.syncs = 0

    def predict(self, image):
        self.predicts += 1
        return np.zeros(image.shape[:2], np.int32)

    def sync(self):
        self.syncs += 1


def test_classical_one_process_row_is_timed_like_the_runner():
    info = DatasetInfo("tiny", ("a", "b"), np.array([[0, 0, 0], [255, 255, 255]], np.uint8))
    method = create_method("test-speed-counting")
    method.fit(InMemorySplit(info, "train", [Sample(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8), "s")]))
    images = [np.zeros((8, 8, 3), np.uint8)] * 5
    (row,) = speed.classical_speed(method, images, processes=(1,), warmup=1)["rows"]
    # one untimed warm-up call, then every image timed by itself, the device synced around each
    assert method.predicts == 1 + 5 and method.syncs == 1 + 2 * 5
    assert row["images_per_s"] > 0 and row["method"] == "test-speed-counting"
    with pytest.raises(TypeError, match="fitted bench.method.Method"):
        speed.classical_speed(object(), images, processes=(1,))
    with pytest.raises(ValueError, match="process counts must be >= 1"):
        speed.classical_speed(method, images, processes=(0,))


def test_cli_speed_of_a_classical_method(capsys):
    from bench.cli import main

    code = main(["speed", "--method", "majority", "--dataset", "shapes", "--processes", "1,2", "--images", "3",
                 "--input", "24x40", "--format", "json", "--no-progress"])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["processes"] for r in rows] == [1, 2]
    for r in rows:
        assert r["method"] == "majority" and r["dataset"] == "shapes" and r["input_hw"] == "24x40"
        assert r["num_images"] == 3 and r["images_per_s"] > 0 and r["fit_s"] >= 0
    assert main(["speed", "--method", "majority", "--model", "unet"]) == 2
    assert "one of --model" in capsys.readouterr().err
    assert main(["speed"]) == 2
    capsys.readouterr()
    assert main(["speed", "--method", "majority", "--threads", "0"]) == 2  # before any fitting
    assert "--threads must be >= 1" in capsys.readouterr().err
