"""Artifacts: atomic writes, resumable record files survive torn lines and refuse mixed runs."""

import json

import pytest

from cai_dsl.core.artifacts import RecordFile, RunMismatch, write_atomic


def test_write_atomic_replaces_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out" / "x.json"
    write_atomic(target, "one")
    write_atomic(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["x.json"]


def test_records_resume_and_truncate_torn_line(tmp_path):
    path = tmp_path / "r.jsonl"
    rf = RecordFile(path, fingerprint={"seed": 1})
    rf.append({"id": "a", "v": 1})
    rf.append({"id": "b", "v": 2})
    with open(path, "a") as handle:
        handle.write('{"id": "c", "v"')  # killed mid-write
    again = RecordFile(path, fingerprint={"seed": 1})
    assert [r["id"] for r in again] == ["a", "b"]
    assert path.read_text().count("\n") == 2 and path.read_text().endswith("\n")
    assert again.pending([{"id": "a"}, {"id": "c"}]) == [{"id": "c"}]
    again.append({"id": "a", "v": 99})  # already done: not duplicated
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == ["a", "b"]


def test_resume_with_other_arguments_is_refused(tmp_path):
    RecordFile(tmp_path / "r.jsonl", fingerprint={"seed": 1})
    with pytest.raises(RunMismatch, match="seed"):
        RecordFile(tmp_path / "r.jsonl", fingerprint={"seed": 2})
