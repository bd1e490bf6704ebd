"""Records are written atomically and read back strictly; suites are parsed strictly."""

import json
import math

import pytest

from bench.records import RecordsError, read_records, upsert_record, write_records
from bench.suites import SuiteError, load_suite, suite_names


def test_upsert_replaces_by_job_id_and_keeps_order(tmp_path):
    path = tmp_path / "records.jsonl"
    upsert_record(path, {"job_id": "a", "miou": 0.5})
    upsert_record(path, {"job_id": "b", "miou": 0.25})
    upsert_record(path, {"job_id": "a", "miou": 0.75})
    recs = read_records(path)
    assert [r["job_id"] for r in recs] == ["b", "a"]
    assert recs[1]["miou"] == 0.75


def test_nan_is_written_as_null_so_any_json_reader_parses_it(tmp_path):
    import numpy as np

    path = tmp_path / "records.jsonl"
    write_records(path, [{"job_id": "a", "iou": [0.5, float("nan")], "miou": np.float64(0.5), "x": math.inf}])
    line = path.read_text().strip()
    assert "NaN" not in line and "Infinity" not in line
    assert json.loads(line) == {"job_id": "a", "iou": [0.5, None], "miou": 0.5, "x": None}


def test_no_temporary_files_are_left_behind(tmp_path):
    path = tmp_path / "records.jsonl"
    for i in range(5):
        upsert_record(path, {"job_id": str(i)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["records.jsonl"]


def test_a_malformed_records_file_names_the_line(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_text('{"job_id": "a"}\n{"job_id": "b"\n')
    with pytest.raises(RecordsError, match=r"records.jsonl:2"):
        read_records(path)
    path.write_text('{"job_id": "a"}\n[1, 2]\n')
    with pytest.raises(RecordsError, match=r"records.jsonl:2: a record must be a JSON object"):
        read_records(path)


def test_builtin_suites_load_and_name_real_methods():
    from bench.methods import method_names

    names = suite_names()
    for required in ("smoke", "classical", "deep", "all"):
        assert required in names
    known = set(method_names())
    for name in names:
        suite = load_suite(name)
        assert suite.jobs
        assert {j.method for j in suite.jobs} <= known, name
    all_methods = {j.method for j in load_suite("all").jobs}
    assert {j.method for j in load_suite("classical").jobs} <= all_methods
    assert {j.method for j in load_suite("deep").jobs} <= all_methods


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
    from bench.runner import plan_jobs

    path = tmp_path / "mine.yaml"
    path.write_text(f"description: two jobs\njobs:\n  - majority\n  - {job}\n")
    with pytest.raises(Exception, match=rf"mine.yaml:4: .*{message}"):
        plan_jobs(load_suite(str(path)), None)


def test_a_suite_that_includes_itself_is_an_error(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text(f"include: [{path}]\njobs: [majority]\n")
    with pytest.raises(SuiteError, match="includes itself"):
        load_suite(str(path))
