"""Records are typed, written atomically one file a job and read back strictly; records of the
previous release still read; suites are parsed strictly."""

import json
import math
import shlex

import numpy as np
import pytest

from bench.record import SCHEMA, Record, RecordsError, job_id
from bench.store import RecordStore, read_jsonl
from bench.suites import SuiteError, load_suite, suite_names


def _rec(job, **fields):
    return Record(job_id=job, method="majority", dataset="shapes", status="ok", **fields)


def test_a_write_replaces_the_record_of_the_same_job(tmp_path):
    store = RecordStore(tmp_path)
    store.write(_rec("a", miou=0.5, started="1"))
    store.write(_rec("b", miou=0.25, started="2"))
    store.write(_rec("a", miou=0.75, started="3"))
    recs = store.records()
    assert [r.job_id for r in recs] == ["b", "a"]  # oldest first
    assert recs[1].miou == 0.75
    assert sorted(p.name for p in (tmp_path / "records").iterdir()) == ["a.json", "b.json"]


def test_nan_is_written_as_null_so_any_json_reader_parses_it(tmp_path):
    path = RecordStore(tmp_path).write(_rec("a", iou=[0.5, float("nan")], miou=np.float64(0.5), fwiou=math.inf))
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    obj = json.loads(text)
    assert obj["iou"] == [0.5, None] and obj["miou"] == 0.5 and obj["fwiou"] is None
    assert obj["schema"] == SCHEMA


def test_no_temporary_files_are_left_behind(tmp_path):
    store = RecordStore(tmp_path)
    for i in range(5):
        store.write(_rec(str(i)))
    store.export()
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert [r.job_id for r in read_jsonl(tmp_path / "records.jsonl")] == [str(i) for i in range(5)]


def test_a_malformed_records_file_names_the_line(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_text('{"job_id": "a", "method": "m", "dataset": "d"}\n{"job_id": "b"\n')
    with pytest.raises(RecordsError, match=r"records.jsonl:2"):
        read_jsonl(path)
    path.write_text('{"job_id": "a", "method": "m", "dataset": "d"}\n[1, 2]\n')
    with pytest.raises(RecordsError, match=r"records.jsonl:2: a record must be a JSON object"):
        read_jsonl(path)


def test_a_malformed_record_file_names_the_file(tmp_path):
    store = RecordStore(tmp_path)
    store.write(_rec("a"))
    (tmp_path / "records" / "b.json").write_text('{"job_id": "b", "method"')
    with pytest.raises(RecordsError, match=r"b.json: not a JSON record"):
        store.records()


def test_a_record_from_a_newer_segbench_is_refused_with_a_clear_message():
    with pytest.raises(RecordsError, match="schema 99"):
        Record.from_dict({"job_id": "a", "method": "m", "dataset": "d", "schema": 99})


def test_a_previous_release_folder_is_imported_once_with_schema_2_ids(tmp_path):
    """A records.jsonl of release 0.1.0 (schema 1: ids over every setting) reads, and its
    records get the ids today's plan gives the same jobs."""
    settings = {"max_train_images": 200}
    old = {"schema": 1, "job_id": "majority-0123456789ab", "method": "majority", "dataset": "shapes",
           "data_root": None, "eval_split": "val", "settings": settings, "seed": 0, "device": "cpu",
           "status": "ok", "miou": 0.5, "miou_convention": "mmseg", "unknown_old_field": 1}
    (tmp_path / "records.jsonl").write_text(json.dumps(old) + "\n")
    store = RecordStore(tmp_path)
    [before] = store.records()  # read without writing anything
    assert not (tmp_path / "records").exists()
    new_id = job_id("majority", settings, "shapes", None, "val", 0, "cpu", "mmseg")
    assert before.job_id == new_id and before.legacy_job_id == "majority-0123456789ab"
    store.open()
    assert [p.name for p in (tmp_path / "records").iterdir()] == [f"{new_id}.json"]
    assert store.done_ids() == {new_id}


def test_runtime_settings_do_not_enter_the_job_id():
    from bench.method import result_settings, method_class

    cls = method_class("unet")
    base = job_id("unet", {"epochs": 3, "num_workers": 0}, "shapes", None, "val", 0, "cpu", "mmseg")
    assert job_id("unet", {"epochs": 3, "num_workers": 4}, "shapes", None, "val", 0, "cpu", "mmseg") == base
    assert job_id("unet", {"epochs": 4, "num_workers": 0}, "shapes", None, "val", 0, "cpu", "mmseg") != base
    assert "num_workers" not in result_settings(cls, {"epochs": 3, "num_workers": 0})


def test_claims_exclude_live_holders_and_free_with_them(tmp_path):
    store = RecordStore(tmp_path)
    first = store.claim("job")
    assert first is not None
    assert store.claim("job") is None  # held (also within one process: flock is per open file)
    first.release()
    again = store.claim("job")
    assert again is not None
    again.release()


def test_builtin_suites_load_and_name_real_methods():
    from bench.method import method_names
    from bench.run import plan_jobs

    names = suite_names()
    for required in ("smoke", "classical", "deep", "all"):
        assert required in names
    known = set(method_names())
    for name in names:
        suite = load_suite(name)
        assert suite.jobs
        assert {j.method for j in suite.jobs} <= known, name
        # every setting is one its method takes, of its type (deep-camvid-gpu once had channels_last: true)
        assert len(plan_jobs(suite, None)) == len(suite.jobs), name
    all_methods = {j.method for j in load_suite("all").jobs}
    assert {j.method for j in load_suite("classical").jobs} - all_methods == {"superpixel-unary"}
    assert {j.method for j in load_suite("deep").jobs} - all_methods == {"lraspp-mobilenet-v3-large"}


@pytest.mark.parametrize(
    "text, message",
    [
        ("jobs: [", r"bad.yaml:\d+: not valid YAML"),
        ("- just a list", "a suite is a mapping"),
        ("jobs: []", "suite has no jobs"),
        ("jobs:\n  - settings: {a: 1}", r"bad.yaml:2: job 1: needs a 'method'"),
        ("jobs:\n  - majority\n\n  - method: majority\n    setings: {}", r"bad.yaml:4: job 2 \(majority\): unknown key\(s\) setings"),
        ("jobz: []", r"unknown key\(s\) jobz"),
    ],
)
def test_malformed_suite_files_name_the_file_and_job(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SuiteError, match=message):
        load_suite(str(path))


@pytest.mark.parametrize(
    "job, message",
    [("method: nosuch", "unknown method 'nosuch'"), ("method: sobel\n    settings: {nope: 3}", "unknown setting")],
)
def test_bad_methods_and_settings_name_the_suite_line(tmp_path, job, message):
    from bench.run import plan_jobs

    path = tmp_path / "mine.yaml"
    path.write_text(f"description: two jobs\njobs:\n  - majority\n  - {job}\n")
    with pytest.raises(Exception, match=rf"mine.yaml:4: .*{message}"):
        plan_jobs(load_suite(str(path)), None)


def test_a_suite_that_includes_itself_is_an_error(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text(f"include: [{path}]\njobs: [majority]\n")
    with pytest.raises(SuiteError, match="includes itself"):
        load_suite(str(path))


@pytest.mark.parametrize("stem", ["deep", "my-probe"])
def test_the_reproduce_line_of_a_suite_file_names_that_file(tmp_path, stem):
    """A file outside bench/suites is named by its path: its stem names another built-in suite
    ("deep") or none, and `run --suite <stem>` would run that or fail."""
    path = tmp_path / f"{stem}.yaml"
    path.write_text("dataset: shapes\njobs: [{method: sobel, settings: {sigma: 2.0}}]\n")
    from bench.run import plan_jobs

    (job,) = plan_jobs(load_suite(str(path)), None)
    argv = shlex.split(job.command("out"))
    given = argv[argv.index("--suite") + 1]
    assert given == str(path)
    again = load_suite(given)
    assert again.path == path and again.jobs == load_suite(str(path)).jobs


def test_a_built_in_suite_is_named_by_its_name_even_when_given_as_a_path():
    from bench.suites import SUITE_DIR

    assert load_suite("classical").name == "classical"
    assert load_suite(str(SUITE_DIR / "classical.yaml")).name == "classical"


def test_exclude_leaves_out_included_and_own_jobs_of_the_named_methods(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("jobs: [majority, sobel, laplacian]\n")
    path = tmp_path / "mine.yaml"
    path.write_text(f"include: [{base}]\nexclude: [sobel, unet]\njobs: [unet, log]\n")
    assert [j.method for j in load_suite(str(path)).jobs] == ["majority", "laplacian", "log"]
    path.write_text(f"include: [{base}]\nexclude: [sobell]\n")
    with pytest.raises(SuiteError, match="mine.yaml: exclude sobell: no job of this suite runs such a method"):
        load_suite(str(path))
    path.write_text(f"include: [{base}]\nexclude: sobel\n")
    with pytest.raises(SuiteError, match="'exclude' must be a list of method names"):
        load_suite(str(path))


def test_defaults_apply_to_the_jobs_whose_method_has_the_setting(tmp_path):
    path = tmp_path / "d.yaml"
    path.write_text("defaults: {epochs: 3, width: 0.5}\njobs:\n  - majority\n  - method: unet\n"
                    "  - method: fcn8s\n    settings: {epochs: 5}\n")
    jobs = load_suite(str(path)).jobs
    assert [j.settings for j in jobs] == [{}, {"epochs": 3, "width": 0.5}, {"epochs": 5, "width": 0.5}]


def test_a_default_no_job_can_take_is_an_error(tmp_path):
    path = tmp_path / "d.yaml"
    path.write_text("defaults: {epoch: 3}\njobs: [majority, unet]\n")
    with pytest.raises(SuiteError, match="d.yaml: defaults epoch: no job of this file has such a setting"):
        load_suite(str(path))


def test_the_deep_suite_gives_every_network_one_recipe():
    """deep.yaml's defaults block is every job's recipe; a job's own settings only add the
    higher rate of the BatchNorm networks, the BatchNorm of U-Net, the FCNs and DilatedNet, for
    the FCNs (scores at 1/32) and DilatedNet the full photo at 1/8 width (the arithmetic per
    image of half size at 1/4 width), and DilatedNet's dropout off."""
    jobs = load_suite("deep").jobs
    recipe = {"width": 0.25, "scale": 0.5, "epochs": 40, "batch_size": 2, "lr": 0.002, "warmup_epochs": 1,
              "class_weights": "none", "scale_range": [0.75, 1.25], "jitter": 0.1, "val_every": 10}
    full_photo = {"scale": 1.0, "width": 0.125}
    by_method = {j.method: j.settings for j in jobs}
    for net in ("fcn32s", "fcn16s", "fcn8s"):
        assert by_method[net] == {**recipe, "lr": 0.004, "batch_norm": True, **full_photo}
    # DilatedNet as the FCNs, without dropout (its paper's layout drew one map for every photo)
    assert by_method["dilatednet"] == {**by_method["fcn8s"], "dropout": 0.0}
    assert by_method["unet"] == {**recipe, "lr": 0.004, "batch_norm": True}
    for net in ("deconvnet", "segnet", "segnet-basic"):
        assert by_method[net] == {**recipe, "lr": 0.004}
    # one arithmetic per image: scale^2 x width^2 is the same for every job with a width
    assert len({j.settings["scale"] ** 2 * j.settings["width"] ** 2 for j in jobs if "width" in j.settings}) == 1
    # the modern reference rows of the default leaderboard: the recipe without a width
    recipe_bn = {k: v for k, v in recipe.items() if k != "width"} | {"lr": 0.004}
    assert by_method["lraspp-mobilenet-v3-large"] == recipe_bn
    for job in jobs:  # the modern networks have no width; nothing else differs
        differs = {k for k in set(job.settings) | set(recipe) if job.settings.get(k) != recipe.get(k)}
        full = job.method.startswith("fcn") or job.method == "dilatednet"
        assert differs <= {"width", "lr", "batch_norm"} | ({"scale"} if full else set()) \
            | ({"dropout"} if job.method == "dilatednet" else set()), \
            job.method