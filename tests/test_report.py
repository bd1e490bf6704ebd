"""Tests of bench.report: leaderboards, per-class tables and plots from job records."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench import report
from bench.datasets.palettes import colorize
from bench.record import SCHEMA, Record
from bench.report import aggregate, grid, plots
from bench.store import RecordStore

CAMVID = ["sky", "building", "pole", "road", "sidewalk", "tree", "sign", "fence", "car", "pedestrian", "bicyclist"]
CONTEXT = [f"ctx{i:02d}" for i in range(20)]
CAMVID_IDS = ["0001TP_006690", "Seq05VD_f00000"]


def _iou(n: int, base: float, nan_at=(), null_at=()) -> list:
    out = []
    for c in range(n):
        if c in nan_at:
            out.append(None)
        else:
            out.append(round(min(1.0, base + 0.03 * (c % 5)), 4))
    return out


def rec_dict(job_id, method, dataset="camvid", split="test", kind="classical", seed=0, status="ok", miou=0.4,
             settings=None, iou=None, class_names=None, speed=10.0, extra=None, predictions=None, error=None,
             **kw) -> dict:
    """A record as its JSON object (this release's schema)."""
    r = {
        "schema": SCHEMA, "job_id": job_id, "suite": "test", "method": method, "kind": kind, "dataset": dataset,
        "data_root": "/data", "eval_split": split, "settings": settings or {}, "seed": seed, "status": status,
        "error": error, "traceback": None,
        "miou": miou if status == "ok" else None,
        "pixel_acc": (miou + 0.3) if status == "ok" else None,
        "mean_acc": (miou + 0.1) if status == "ok" else None,
        "fwiou": (miou + 0.2) if status == "ok" else None,
        "bf": (miou - 0.1) if status == "ok" else None,
        "iou": iou if status == "ok" else None, "class_names": class_names,
        "miou_convention": "mmseg" if status == "ok" else None,
        "miou_by_convention": {"mmseg": miou, "smp": miou + 0.05, "per-image": None} if status == "ok" else {},
        "n_train": 10, "n_eval": 5, "fit_time_s": 1.5, "predict_time_per_image_s": 1 / speed if speed else None,
        "images_per_s": speed if status == "ok" else None, "params": None,
        "device": "cpu", "versions": {"python": "3.11.9", "numpy": "1.26.4"}, "git_commit": "abc123def456",
        "command": f"python -m bench run --method {method} --dataset {dataset} --seed {seed}",
        "started": "2025-01-01T00:00:00", "finished": "2025-01-01T00:01:00", "host": "box",
        "extra": extra or {}, "predictions": predictions or [],
    }
    r.update(kw)
    return r


def rec(*args, **kw) -> Record:
    return Record.from_dict(rec_dict(*args, **kw))


def write_records(out: Path, records) -> None:
    store = RecordStore(out)
    for r in records:
        store.write(r)


def camvid_records() -> list[Record]:
    preds = lambda job: [f"predictions/{job}/{i}.png" for i in CAMVID_IDS]  # noqa: E731
    nan_cls = (10,)  # bicyclist is NaN for every method
    return [
        rec("j-slic", "slic", miou=0.31, iou=_iou(11, 0.2, nan_cls), class_names=CAMVID, speed=25.0,
            settings={"n_segments": 200}, extra={"oracle_miou": 0.72, "regions_per_image": 180.5},
            predictions=preds("j-slic")),
        rec("j-slic400", "slic", miou=0.33, iou=_iou(11, 0.22, nan_cls), class_names=CAMVID, speed=12.0,
            settings={"n_segments": 400}, extra={"oracle_miou": 0.78}),
        rec("j-km", "kmeans", miou=0.12, iou=_iou(11, 0.05, nan_cls + (2,)), class_names=CAMVID, speed=400.0,
            predictions=preds("j-km")),  # listed, but the PNGs are never written
        rec("j-unet0", "unet", kind="deep", seed=0, miou=0.50, iou=_iou(11, 0.4, nan_cls), class_names=CAMVID,
            speed=3.0, params=7_800_000, device="cuda:0", predictions=preds("j-unet0")),
        rec("j-unet1", "unet", kind="deep", seed=1, miou=0.54, iou=_iou(11, 0.44, nan_cls), class_names=CAMVID,
            speed=3.4, params=7_800_000, device="cuda:0", predictions=preds("j-unet1")),
        rec("j-dl", "deeplab", kind="deep", status="failed", error="RuntimeError: CUDA out of memory",
            device="cuda:0"),
    ]


def context_records() -> list[Record]:
    return [
        rec("c-maj", "majority", dataset="pascal_context", split="val", miou=0.02,
            iou=_iou(20, 0.0, nan_at=(3, 4, 5)), class_names=CONTEXT, speed=5000.0),
        rec("c-fcn", "fcn", dataset="pascal_context", split="val", kind="deep", miou=0.35,
            iou=_iou(20, 0.3, nan_at=(3, 4)), class_names=CONTEXT, speed=20.0, params=35_000_000),
    ]


def write_samples(out: Path, dataset: str, split: str, ids, n_classes: int, palette_file=True):
    d = out / "samples" / dataset / split
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    h, w = 24, 32
    for i in ids:
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(d / f"{i}_image.png")
        gt = rng.integers(0, n_classes, (h, w)).astype(np.uint8)
        gt[:4] = 255  # ignore band
        Image.fromarray(gt).save(d / f"{i}_gt.png")
    if palette_file:
        pal = [[(37 * c) % 256, (91 * c) % 256, (53 * c + 40) % 256] for c in range(n_classes)]
        names = CAMVID if n_classes == len(CAMVID) else [f"c{c}" for c in range(n_classes)]
        (d / "palette.json").write_text(json.dumps({"class_names": names, "palette": pal, "ignore_index": 255}))


def write_preds(out: Path, job: str, ids, n_classes: int):
    d = out / "predictions" / job
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i in ids:
        Image.fromarray(rng.integers(0, n_classes, (24, 32)).astype(np.uint8)).save(d / f"{i}.png")


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    write_records(out, camvid_records() + context_records())
    write_samples(out, "camvid", "test", CAMVID_IDS, 11)
    for job in ("j-slic", "j-unet0", "j-unet1"):
        write_preds(out, job, CAMVID_IDS, 11)
    paths = report.build_report(out)
    return out, paths


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _row(md: str, label: str) -> list[str]:
    return next(_cells(line) for line in md.splitlines() if line.startswith("|") and _cells(line)[1] == label)


def _lb(out):
    return pd.read_csv(out / "leaderboard.csv", keep_default_na=True)


# -- files ------------------------------------------------------------------------------
def test_files_written_with_dataset_suffix(full):
    out, paths = full
    expected = {"leaderboard.csv", "leaderboard.md", "per_class_iou.csv",
                "miou_vs_speed_camvid.png", "per_class_iou_camvid.png", "predictions_grid_camvid.png",
                "miou_vs_speed_pascal_context.png", "per_class_iou_pascal_context.png"}
    assert expected <= set(paths)
    # pascal_context has no saved predictions: no grid, a note instead
    assert "predictions_grid_pascal_context.png" not in paths
    for name, p in paths.items():
        assert p.is_file() and p.name == name and p.parent == out
    assert not (out / "miou_vs_speed.png").exists()


def test_pngs_are_valid_images_of_sensible_size(full):
    out, paths = full
    pngs = [p for n, p in paths.items() if n.endswith(".png")]
    assert len(pngs) == 5
    for p in pngs:
        with Image.open(p) as im:
            im.verify()
        with Image.open(p) as im:
            assert im.format == "PNG"
            w, h = im.size
            assert 300 <= w <= 4000 and 200 <= h <= 4000, (p.name, im.size)
            assert np.asarray(im.convert("L")).std() > 5  # not blank


# -- leaderboard.csv ----------------------------------------------------------------------
def test_csv_sorted_by_miou_within_each_dataset(full):
    out, _ = full
    df = _lb(out)
    for (ds, split), part in df[df.status == "ok"].groupby(["dataset", "eval_split"]):
        assert list(part["miou"]) == sorted(part["miou"], reverse=True), ds
        assert list(part["rank"]) == list(range(1, len(part) + 1))
    cam = df[(df.dataset == "camvid") & (df.status == "ok")]
    assert list(cam["method"]) == ["unet", "slic", "slic", "kmeans"]
    # full precision, fractions
    assert cam.iloc[0]["miou"] == pytest.approx(0.52, abs=1e-12)


def test_csv_failed_job_has_status_error_and_empty_metrics(full):
    out, _ = full
    df = _lb(out)
    failed = df[df.status == "failed"]
    assert len(failed) == 1
    row = failed.iloc[0]
    assert row["method"] == "deeplab" and "CUDA out of memory" in row["error"]
    for k in ("miou", "pixel_acc", "mean_acc", "fwiou", "bf", "images_per_s", "rank"):
        assert pd.isna(row[k]), k


def test_seeds_are_aggregated_mean_and_std(full):
    out, _ = full
    df = _lb(out)
    unet = df[(df.method == "unet") & (df.status == "ok")]
    assert len(unet) == 1
    row = unet.iloc[0]
    assert row["n_seeds"] == 2 and str(row["seeds"]) == "0;1"
    assert row["miou"] == pytest.approx(0.52)
    assert row["miou_std"] == pytest.approx(statistics.stdev([0.50, 0.54]))
    assert row["images_per_s"] == pytest.approx(3.2)
    assert row["pixel_acc_std"] == pytest.approx(statistics.stdev([0.80, 0.84]))
    # a single seed has no std
    slic = df[(df.label == "slic (n_segments=200)")].iloc[0]
    assert slic["n_seeds"] == 1 and pd.isna(slic["miou_std"])
    md = (out / "leaderboard.md").read_text()
    assert "52.0 ± 2.8" in md


def test_other_versions_of_a_method_are_rows_of_their_own_not_seeds():
    """Two records of one method, settings and seed made by two versions of the method (a
    changed algorithm) are two rows labelled by version, not one row of two seeds; the
    version is kept across a write and a read; a record from before the field has None."""
    old = rec("m-v5", "mser", miou=0.477, method_version=5)
    new = rec("m-v6", "mser", miou=0.478, method_version=6)
    other = rec("s-v3", "sobel", miou=0.5, method_version=3)
    assert Record.from_dict(json.loads(json.dumps(new.to_dict()))).method_version == 6
    legacy = rec_dict("m-old", "mser", miou=0.44)
    assert "method_version" not in legacy and Record.from_dict(legacy).method_version is None
    [section] = aggregate.group_records([old, new, other, Record.from_dict(legacy)])
    rows = {g.label: g for g in section.groups}
    assert set(rows) == {"mser (version 5)", "mser (version 6)", "mser (version –)", "sobel"}
    assert all(len(g.ok) == 1 for g in rows.values())
    assert rows["mser (version 6)"].stat("miou") == (0.478, pytest.approx(float("nan"), nan_ok=True), 1)


def test_a_setting_added_later_at_its_default_splits_no_row():
    """Rows group settings as job ids count them: seeds recorded before a method gained a
    setting (here dilatednet's batch_norm and context) and after, at its default, are one row;
    a runtime setting never splits one; a setting away from its default does."""
    base = {"epochs": 25, "lr": 0.002}
    old = rec("d-1", "dilatednet", kind="deep", seed=1, miou=0.26, settings=base)
    new = rec("d-0", "dilatednet", kind="deep", seed=0, miou=0.28,
              settings={**base, "batch_norm": False, "context": "basic", "num_workers": 2})
    bn = rec("d-bn", "dilatednet", kind="deep", seed=0, miou=0.25, settings={**base, "batch_norm": True})
    for order in ([old, new, bn], [bn, new, old]):  # labels do not depend on which record comes first
        [section] = aggregate.group_records(order)
        rows = {g.label: sorted(r.seed for r in g.ok) for g in section.groups}
        assert rows == {"dilatednet (batch_norm=False)": [0, 1], "dilatednet (batch_norm=True)": [0]}


def test_csv_has_oracle_and_extra_columns(full):
    out, _ = full
    df = _lb(out)
    assert "extra_oracle_miou" in df.columns and "extra_regions_per_image" in df.columns
    unet = df[df.method == "unet"].iloc[0]
    assert unet["miou_conv_smp"] == pytest.approx(0.57) and pd.isna(unet["miou_conv_per-image"])
    assert df.loc[df.label == "slic (n_segments=400)", "extra_oracle_miou"].iloc[0] == pytest.approx(0.78)


# -- leaderboard.md -----------------------------------------------------------------------
def test_md_sections_failed_list_and_reproduce(full):
    out, _ = full
    md = (out / "leaderboard.md").read_text()
    assert "## camvid / test" in md and "## pascal_context / val" in md
    assert md.index("## camvid / test") < md.index("## pascal_context / val")
    cam = md[md.index("## camvid / test"):md.index("## pascal_context / val")]
    assert "### Failed jobs" in cam and "deeplab" in cam and "RuntimeError: CUDA out of memory" in cam
    assert cam.index("### Failed jobs") > cam.index("rank |")
    assert "mIoU convention: `mmseg`" in cam
    assert "### How to reproduce" in cam
    for r in camvid_records():
        if r.ok:
            assert r.command in cam
    assert "abc123def456" in cam and "numpy 1.26.4" in cam and "cuda:0" in cam
    # table header and oracle column (camvid only)
    for col in ("rank", "method", "kind", "mIoU", "pixel acc", "class acc", "fwIoU", "BF", "images/s",
                "params", "device", "seeds (n)", "oracle mIoU", "regions/image"):
        assert col in cam, col
    ctx = md[md.index("## pascal_context / val"):]
    assert "oracle mIoU" not in ctx and "regions/image" not in ctx
    # settings tell the two slic rows apart; percentages with one decimal; params humanised
    assert "slic (n_segments=200)" in cam and "slic (n_segments=400)" in cam
    assert _row(cam, "slic (n_segments=200)")[3] == "31.0"
    unet = _row(cam, "unet")
    assert unet[0] == "1" and unet[3] == "52.0 ± 2.8" and "7.80M" in unet
    # NaN metric (no oracle for unet, no params for slic) -> dash
    assert unet[8] == "–" and unet[9] == "–" and _row(cam, "slic (n_segments=200)")[11] == "–"
    assert _row(cam, "slic (n_segments=200)")[9] == "180" and _row(cam, "slic (n_segments=400)")[9] == "–"
    assert "![mIoU vs speed](miou_vs_speed_camvid.png)" in cam
    assert "![predictions](predictions_grid_camvid.png)" in cam


def test_per_class_table_omits_all_nan_classes(full):
    out, _ = full
    pc = pd.read_csv(out / "per_class_iou.csv")
    cam = pc[pc.dataset == "camvid"]
    assert "bicyclist" not in set(cam["class"])  # NaN for every method
    assert "pole" in set(cam["class"])  # NaN for kmeans only
    assert pd.isna(cam[(cam.method == "kmeans") & (cam["class"] == "pole")]["iou"].iloc[0])
    assert set(cam["method"]) == {"unet", "slic (n_segments=200)", "slic (n_segments=400)", "kmeans"}
    assert len(cam) == 4 * 10
    unet_sky = cam[(cam.method == "unet") & (cam["class"] == "sky")].iloc[0]
    assert unet_sky["iou"] == pytest.approx(0.42) and unet_sky["n_seeds"] == 2
    assert unet_sky["class_index"] == 0
    ctx = pc[pc.dataset == "pascal_context"]
    assert set(ctx["class"]) == set(CONTEXT) - {"ctx03", "ctx04"}  # ctx05 has the fcn value
    md = (out / "leaderboard.md").read_text()
    cam_md = md[md.index("## camvid / test"):md.index("## pascal_context / val")]
    ctx_md = md[md.index("## pascal_context / val"):]
    assert "### Per-class IoU (%)" in cam_md and "bicyclist" not in cam_md
    # 11 - 1 classes: methods are rows, classes columns
    assert "| method" in cam_md[cam_md.index("### Per-class IoU"):]
    # 18 classes: transposed, classes are rows
    per_class = ctx_md[ctx_md.index("### Per-class IoU"):]
    assert "| class" in per_class and "ctx03" not in per_class
    assert sum(1 for line in per_class.splitlines() if line.startswith("| ctx")) == 18


# -- predictions grid ---------------------------------------------------------------------
def test_grid_panels_and_skipped_method(full):
    out, paths = full
    with Image.open(paths["predictions_grid_camvid.png"]) as im:
        assert im.info.get("Description") == "segbench predictions grid: 2 rows x 4 columns"
        # 4 columns of GRID_PANEL_IN inches at DPI
        assert im.size[0] == pytest.approx(4 * grid.GRID_PANEL_IN * plots.DPI, abs=2)
    md = (out / "leaderboard.md").read_text()
    assert "kmeans (prediction PNGs missing) left out" in md
    assert "Predictions grid skipped: no saved prediction PNGs found." in md  # pascal_context
    assert "fcn (no predictions saved) left out" not in md


def test_grid_function_shape_and_colours(tmp_path):
    write_samples(tmp_path, "camvid", "test", CAMVID_IDS, 11)
    write_preds(tmp_path, "j-unet0", CAMVID_IDS[:1], 11)  # one image only, for seed 0
    [section] = aggregate.group_records(camvid_records())
    info = grid.plot_predictions_grid(section, tmp_path, tmp_path / "g.png")
    assert info.shape == (1, 3)
    assert info.columns == ["image", "ground truth", "unet"]
    assert info.image_ids == CAMVID_IDS[:1]
    assert any("slic (n_segments=200) (prediction PNGs missing)" in s for s in info.skipped)
    assert any("slic (n_segments=400) (no predictions saved)" in s for s in info.skipped)
    assert (tmp_path / "g.png").is_file()


def test_grid_wraps_long_column_titles(tmp_path):
    """A settings-long method label wraps onto a second line, and the figure grows to hold it."""
    write_samples(tmp_path, "camvid", "test", CAMVID_IDS[:1], 11)
    write_preds(tmp_path, "j-a", CAMVID_IDS[:1], 11)
    heights = {}
    for n, label in enumerate(("segnet-basic", "segnet-basic (tta_flip=True, tta_scales=[0.75, 1.0, 1.25, 1.5])")):
        r = rec("j-a", label, kind="deep", iou=_iou(11, 0.4, ()), class_names=CAMVID,
                predictions=[f"predictions/j-a/{CAMVID_IDS[0]}.png"])
        [section] = aggregate.group_records([r])
        path = tmp_path / f"g{n}.png"
        info = grid.plot_predictions_grid(section, tmp_path, path)
        with Image.open(path) as im:
            heights[len(info.columns[-1]) > grid.TITLE_WRAP] = im.size[1]
    assert set(heights) == {False, True}
    assert heights[True] - heights[False] == pytest.approx(0.13 * plots.DPI, abs=2)  # one more line


def test_grid_without_palette_file_uses_default(tmp_path):
    recs = [rec("a", "m", predictions=["predictions/a/x.png"], iou=[0.5, 0.5], class_names=["a", "b"])]
    write_samples(tmp_path, "camvid", "test", ["x"], 3, palette_file=False)
    write_preds(tmp_path, "a", ["x"], 3)
    paths = report.build_report(tmp_path, records=recs)
    assert "predictions_grid.png" in paths
    assert "default palette" in (tmp_path / "leaderboard.md").read_text()


def test_colorize_ignore_black():
    pal = np.array([[255, 0, 0], [0, 255, 0]], np.uint8)
    lab = np.array([[0, 1], [255, 7]], np.uint8)
    rgb = colorize(lab, pal, 255)  # as the predictions grid paints label maps
    assert rgb.tolist() == [[[255, 0, 0], [0, 255, 0]], [[0, 0, 0], [0, 0, 0]]]


# -- robustness ---------------------------------------------------------------------------
def test_no_records_no_crash(tmp_path):
    paths = report.build_report(tmp_path)
    assert set(paths) == {"leaderboard.csv", "leaderboard.md", "per_class_iou.csv", "report.html"}
    assert "No job records found" in (tmp_path / "leaderboard.md").read_text()
    assert len(pd.read_csv(tmp_path / "leaderboard.csv")) == 0
    assert "No job records" in report.format_leaderboard_text(tmp_path)


def test_only_failed_records(tmp_path):
    recs = [rec("f1", "unet", kind="deep", status="failed", error="ValueError: bad settings"),
            rec("f2", "slic", status="failed", error=None)]
    write_records(tmp_path, recs)
    paths = report.build_report(tmp_path)
    assert not any(n.endswith(".png") for n in paths)
    md = (tmp_path / "leaderboard.md").read_text()
    assert "No job succeeded" in md and "ValueError: bad settings" in md and "no error message recorded" in md
    df = pd.read_csv(tmp_path / "leaderboard.csv")
    assert list(df.status) == ["failed", "failed"] and df["miou"].isna().all()
    txt = report.format_leaderboard_text(tmp_path)
    assert "no successful jobs" in txt and "2 failed" in txt


def test_single_dataset_unsuffixed_and_nan_metrics(tmp_path):
    recs = [rec("a", "slic", miou=0.4, bf=None, speed=5.0, params=None, iou=[0.4, None], class_names=["x", "y"]),
            rec("b", "felz", miou=float("nan"), speed=8.0, iou=None)]
    paths = report.build_report(tmp_path, records=recs)
    assert {"miou_vs_speed.png", "per_class_iou.png"} <= set(paths)
    assert "predictions_grid.png" not in paths
    md = (tmp_path / "leaderboard.md").read_text()
    felz = _row(md, "felz")
    assert felz[3:8] == ["–"] * 5 and "nan" not in md.lower()
    assert _row(md, "slic")[7] == "–"  # bf None
    assert "not plotted" not in md  # the note goes on the figure, not in the md
    pc = pd.read_csv(tmp_path / "per_class_iou.csv")
    assert list(pc["class"]) == ["x"]


def test_latest_record_per_job_wins(tmp_path):
    recs = [rec("a", "slic", miou=0.1), rec("a", "slic", miou=0.3)]
    report.build_report(tmp_path, records=recs)
    df = pd.read_csv(tmp_path / "leaderboard.csv")
    assert len(df) == 1 and df["miou"].iloc[0] == pytest.approx(0.3) and df["n_seeds"].iloc[0] == 1


def test_heatmap_for_many_classes_bars_for_few(tmp_path):
    [cam, ctx] = aggregate.group_records(camvid_records() + context_records())
    assert plots.plot_per_class(cam, aggregate.per_class_table(cam), tmp_path / "a.png") == "bars"
    assert plots.plot_per_class(ctx, aggregate.per_class_table(ctx), tmp_path / "b.png") == "heatmap"


# -- terminal text ------------------------------------------------------------------------
def test_format_leaderboard_text(full):
    out, _ = full
    txt = report.format_leaderboard_text(out)
    assert "== camvid / test ==" in txt and "== pascal_context / val ==" in txt
    lines = txt.splitlines()
    header = next(line for line in lines if "mIoU" in line)
    for col in ("method", "mIoU", "pixel acc", "BF", "img/s"):
        assert col in header
    assert "unet (n=2)" in txt and "52.0 ± 2.8" in txt
    assert "1 failed: deeplab (seed 0): RuntimeError: CUDA out of memory" in txt
    # ranked: unet before kmeans
    assert txt.index("unet (n=2)") < txt.index("kmeans")
    assert max(len(line) for line in lines if not line.startswith("1 failed")) < 100


# -- a previous release's results folder ---------------------------------------------------
def _schema1_line(r: Record) -> str:
    """``r`` as segbench 0.1.0 wrote it into records.jsonl (schema 1, the id it hashed then)."""
    d = r.to_dict()
    d["schema"] = 1
    return json.dumps(d, sort_keys=True)


def _results_folder(out: Path) -> Path:
    write_samples(out, "camvid", "test", CAMVID_IDS, 11)
    for job in ("j-slic", "j-unet0", "j-unet1"):
        write_preds(out, job, CAMVID_IDS, 11)
    return out


def test_previous_release_folder_reports_identically(tmp_path):
    """A folder holding only a schema-1 records.jsonl reports exactly as a folder of this release
    holding the same records (schema-2 ids; the later of two lines of a job wins)."""
    rerun = rec("j-unet0", "unet", kind="deep", status="failed", error="RuntimeError: interrupted", device="cuda:0")
    records = [rerun] + camvid_records() + context_records()
    old = _results_folder(tmp_path / "old")
    (old / "records.jsonl").write_text("".join(_schema1_line(r) + "\n" for r in records))
    new = _results_folder(tmp_path / "new")
    for line in (old / "records.jsonl").read_text().splitlines():
        RecordStore(new).write(Record.from_dict(json.loads(line)))

    old_paths, new_paths = report.build_report(old), report.build_report(new)
    assert not (old / "records").exists()  # reading a folder does not convert it
    assert sorted(old_paths) == sorted(new_paths) and len(old_paths) == 9
    for name in old_paths:
        old_bytes, new_bytes = old_paths[name].read_bytes(), new_paths[name].read_bytes()
        if name in ("leaderboard.md", "report.html"):  # the one difference: where the records were read from
            assert "records.jsonl" in old_bytes.decode()
            old_bytes = old_bytes.replace(b"`records.jsonl`", b"`records/`").replace(b"records.jsonl", b"records/")
        assert old_bytes == new_bytes, name
    assert report.format_leaderboard_text(old) == report.format_leaderboard_text(new)

    df = _lb(old)
    unet = df[(df.method == "unet") & (df.status == "ok")].iloc[0]
    assert unet["n_seeds"] == 2 and unet["miou"] == pytest.approx(0.52)  # the rerun's ok line replaced the failure
    assert list(df.status).count("failed") == 1
    new_ids = {r.job_id for r in RecordStore(new).records()}
    assert set(";".join(df["job_ids"]).split(";")) == new_ids  # schema-2 ids, not the old "j-..." ones
    assert not any(i.startswith(("j-", "c-")) for i in new_ids)


# -- intervals, ties and per-image evidence (issue 15) ------------------------------------------
IDS = [f"img{i:02d}" for i in range(30)]
SHOWN = IDS[:8]  # the images whose predictions the jobs "saved"


def _per_image(rng: np.random.Generator, accuracy: float, k: int = 4):
    """30 images' matrices: each pixel right with probability ``accuracy`` (+ noise per image),
    wrong ones given to the next class; class 3 absent from about half of the images."""
    from bench.per_image import PerImage

    n = len(IDS)
    counts = rng.integers(50, 400, (n, k))
    counts[:, 3] *= rng.random(n) < 0.5
    tp = rng.binomial(counts, np.clip(accuracy + rng.normal(0, 0.1, n), 0, 1)[:, None])
    m = np.zeros((n, k, k), np.int64)
    m[:, np.arange(k), np.arange(k)] = tp
    m[:, np.arange(k), (np.arange(k) + 1) % k] = counts - tp
    return PerImage(IDS, m, rng.random(n))


def _scored(out: Path, job: str, method: str, kind: str, data, seed: int = 0) -> Record:
    """A record whose figures are those of ``data``, written with it into ``out``."""
    from bench.metrics import summarize
    from bench.per_image import write_per_image

    s = summarize(data.matrices.sum(0))
    write_per_image(out / "per_image" / f"{job}.npz", data)
    write_preds(out, job, SHOWN, 4)
    return rec(job, method, kind=kind, seed=seed, miou=s["miou"], pixel_acc=s["pixel_acc"], mean_acc=s["mean_acc"],
               fwiou=s["fwiou"], bf=float(np.mean(data.bf)), iou=s["iou"], class_names=["a", "b", "c", "d"],
               per_image=f"per_image/{job}.npz", predictions=[f"predictions/{job}/{i}.png" for i in SHOWN])


@pytest.fixture(scope="module")
def uncertain(tmp_path_factory):
    """deepnet (best), twin (deepnet's images with a few pixels moved either way), classic (two
    seeds, much worse) and old (a record from before per-image data)."""
    out = tmp_path_factory.mktemp("uncertain")
    rng = np.random.default_rng(0)
    deep = _per_image(rng, 0.8)
    moved = np.tile([-3, 3], len(IDS) // 2)  # right on 3 pixels fewer, or more, of class 0
    twin_m = deep.matrices.copy()
    twin_m[:, 0, 0] += moved
    twin_m[:, 0, 1] -= moved
    twin = type(deep)(IDS, twin_m, deep.bf)
    records = [_scored(out, "u-deep", "deepnet", "deep", deep), _scored(out, "u-twin", "twin", "deep", twin),
               _scored(out, "u-cl0", "classic", "classical", _per_image(rng, 0.5)),
               _scored(out, "u-cl1", "classic", "classical", _per_image(rng, 0.55), seed=1),
               rec("u-old", "old", miou=0.3, iou=[0.3, 0.3, 0.3, None], class_names=["a", "b", "c", "d"])]
    write_records(out, records)
    write_samples(out, "camvid", "test", SHOWN, 4)
    return out, report.build_report(out), records


def test_leaderboard_csv_has_intervals_and_ties(uncertain):
    out, _, records = uncertain
    df = _lb(out).set_index("label")
    assert list(df.index[:2]) == ["deepnet", "twin"] and set(df.index) == {"deepnet", "twin", "classic", "old"}
    assert df["vs_best"].fillna("").to_dict() == {"deepnet": "best", "twin": "tied", "classic": "below", "old": ""}
    assert df.loc["twin", "p_vs_best"] > 0.05 and df.loc["classic", "p_vs_best_holm"] < 0.05
    assert df.loc["classic", "p_vs_best_holm"] == pytest.approx(min(1.0, 2 * df.loc["classic", "p_vs_best"]))
    for label in ("deepnet", "twin", "classic"):
        for m in ("miou", "pixel_acc", "mean_acc", "fwiou", "bf"):
            assert df.loc[label, f"{m}_lo"] <= df.loc[label, m] + 1e-12 <= df.loc[label, f"{m}_hi"] + 2e-12, (label, m)
        assert df.loc[label, "ci_resamples"] == 2000 and df.loc[label, "ci_seed"] == 0
    assert df.loc["classic", "miou"] == pytest.approx(np.mean([r.miou for r in records if r.method == "classic"]))
    assert df.loc[["old"], ["miou_lo", "miou_hi", "p_vs_best", "ci_resamples"]].isna().all(axis=None)
    pc = pd.read_csv(out / "per_class_iou.csv")
    deep = pc[pc.method == "deepnet"]
    assert ((deep.iou_lo <= deep.iou) & (deep.iou <= deep.iou_hi)).all()
    assert pc[pc.method == "old"][["iou_lo", "iou_hi"]].isna().all(axis=None)


def test_leaderboard_md_shows_intervals_and_says_what_tied_means(uncertain):
    out, _, _ = uncertain
    md = (out / "leaderboard.md").read_text()
    assert re.fullmatch(r"\d+\.\d \[\d+\.\d, \d+\.\d\]", _row(md, "deepnet")[3])
    assert re.fullmatch(r"\d+\.\d ± \d+\.\d \[\d+\.\d, \d+\.\d\]", _row(md, "classic")[3])
    assert _row(md, "old")[3] == "30.0" and _row(md, "old")[-1] == "–"
    assert [_row(md, m)[-1] for m in ("deepnet", "twin", "classic")] == ["best", "tied", "below"]
    assert "95% interval, basic bootstrap over the 30 images (and over the seeds when n > 1), 2000 " \
           "resamples, seed 0" in md
    assert "level 0.05 after Holm's correction over the section's 2 comparison(s)" in md
    assert "No interval (and no test against the best row) for **old**" in md


def test_rows_are_tested_against_the_location_prior(tmp_path):
    """A location-prior row makes a `vs prior` column: every other row's paired test against it,
    Holm-corrected over those comparisons alone; a section without one has no such column."""
    rng = np.random.default_rng(3)
    prior = _per_image(rng, 0.6)
    moved = np.tile([-3, 3], len(IDS) // 2)
    twin_m = prior.matrices.copy()
    twin_m[:, 0, 0] += moved
    twin_m[:, 0, 1] -= moved
    recs = [_scored(tmp_path, "p-net", "deepnet", "deep", _per_image(rng, 0.8)),
            _scored(tmp_path, "p-prior", "location-prior", "classical", prior),
            _scored(tmp_path, "p-twin", "twin", "classical", type(prior)(IDS, twin_m, prior.bf)),
            _scored(tmp_path, "p-low", "low", "classical", _per_image(rng, 0.4))]
    report.build_report(tmp_path, records=recs)
    df = _lb(tmp_path).set_index("label")
    assert df["vs_prior"].to_dict() == {"deepnet": "above", "location-prior": "prior", "twin": "tied", "low": "below"}
    assert np.isnan(df.loc["location-prior", "p_vs_prior"]) and df.loc["twin", "p_vs_prior"] > 0.05
    p = df.loc[["deepnet", "twin", "low"], "p_vs_prior"]
    assert df.loc[p.idxmin(), "p_vs_prior_holm"] == pytest.approx(min(1.0, 3 * p.min()))
    # the best-row family is separate: its three comparisons keep their own correction
    assert df["vs_best"].to_dict() == {"deepnet": "best", "location-prior": "below", "twin": "below", "low": "below"}
    md = (tmp_path / "leaderboard.md").read_text()
    assert [_row(md, m)[-1] for m in ("deepnet", "location-prior", "twin", "low")] == ["above", "prior", "tied", "below"]
    assert "vs prior: the same test against the location-prior row" in md and "its 3 comparison(s)" in md
    html = (tmp_path / "report.html").read_text()
    assert ">vs prior</th>" in html and "against the location-prior row (Holm-adjusted)" in html


def test_no_location_prior_row_no_vs_prior_column(uncertain):
    out, _, _ = uncertain
    assert "vs prior" not in (out / "leaderboard.md").read_text()
    assert _lb(out)["vs_prior"].astype(object).fillna("").eq("").all()  # an empty column reads as float


def test_evidence_figures(uncertain, tmp_path):
    out, paths, records = uncertain
    from bench.per_image import read_per_image
    from bench.report import evidence
    from bench.report.intervals import add_intervals

    assert {"worst_images.png", "disagreement.png"} <= set(paths)
    md = (out / "leaderboard.md").read_text()
    assert "![worst images](worst_images.png)" in md and "(disagreement.png)" in md
    with Image.open(paths["worst_images.png"]) as im:
        assert im.info["Description"] == "segbench evidence: 6 rows x 3 columns"  # 3 methods with data x 2
    with Image.open(paths["disagreement.png"]) as im:
        assert im.info["Description"] == "segbench evidence: 4 rows x 4 columns"
    [section] = aggregate.group_records(records)
    add_intervals([section], out)
    miou = {job: read_per_image(out / "per_image" / f"{job}.npz").image_scores().set_index("id")["miou"]
            for job in ("u-deep", "u-cl0")}
    gap = (miou["u-deep"] - miou["u-cl0"])[SHOWN].abs().sort_values(ascending=False)
    assert evidence.plot_disagreement(section, out, tmp_path / "d.png") == list(gap.index[:4])
    worst = evidence.plot_worst_images(section, out, tmp_path / "w.png")
    assert worst[:2] == [("deepnet", i) for i in miou["u-deep"][SHOWN].sort_values().index[:2]]


def test_unreadable_per_image_file_is_a_note_not_a_crash(tmp_path):
    rng = np.random.default_rng(1)
    recs = [_scored(tmp_path, "a", "one", "deep", _per_image(rng, 0.7)),
            _scored(tmp_path, "b", "two", "classical", _per_image(rng, 0.5))]
    (tmp_path / "per_image" / "b.npz").write_bytes(b"torn")
    paths = report.build_report(tmp_path, records=recs)
    md = (tmp_path / "leaderboard.md").read_text()
    assert "No interval for **two**: " in md and "b.npz: not a readable per-image file" in md
    assert "[" in _row(md, "one")[3] and "[" not in _row(md, "two")[3]
    assert "leaderboard.csv" in paths


def test_each_row_states_its_budget(tmp_path):
    """A network's row says its epochs, the optimiser steps its trainer counted (an older
    record without the count: epochs only) and its input scale, a classical row its training
    images; each the fit's seconds."""
    recs = [rec("net", "fcn8s", kind="deep", miou=0.5, settings={"batch_size": 8, "epochs": 40},
                extra={"epochs_trained": 40, "optimizer_steps": 80}),
            rec("half", "segnet", kind="deep", miou=0.48, settings={"batch_size": 2, "epochs": 25, "scale": 0.5},
                extra={"epochs_trained": 25, "optimizer_steps": 400}),
            rec("odd", "unet", kind="deep", miou=0.45, settings={"batch_size": 3, "epochs": 2},
                extra={"epochs_trained": 2}),
            rec("cls", "sobel", miou=0.4, settings={"max_train_images": 4}),
            rec("all", "mser", miou=0.3)]
    write_records(tmp_path, recs)
    report.build_report(tmp_path)
    md = (tmp_path / "leaderboard.md").read_text()
    header = _cells(next(l for l in md.splitlines() if "budget" in l and "rank" in l))
    col = header.index("budget")
    assert _row(md, "fcn8s")[col] == "40 ep, 80 steps, 2 s"
    assert _row(md, "segnet")[col] == "25 ep, 400 steps, scale 0.5, 2 s"
    assert _row(md, "unet")[col] == "2 ep, 2 s"
    assert _row(md, "sobel")[col] == "4 img, 2 s" and _row(md, "mser")[col] == "10 img, 2 s"
    csv = pd.read_csv(tmp_path / "leaderboard.csv")
    assert csv.set_index("method").loc["fcn8s", "budget"] == "40 ep, 80 steps, 2 s"
