"""JSONL record files: one rule for a torn last line; resumable record files refuse mixed runs."""

import json

import pytest

from cai_dsl.core.records import RecordError, RecordFile, RunMismatch, read_jsonl


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


def test_torn_last_line_is_dropped_with_a_warning_and_rewritten_away(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b"}\n{"id": "c", "v": [1, 2')
    content = read_jsonl(path)
    assert content.records == [{"id": "a"}, {"id": "b"}]
    assert len(content.warnings) == 1 and f"{path}:3: dropped a half-written last line" in content.warnings[0]
    assert path.read_text().endswith("[1, 2")  # reading alone changes nothing
    rf = RecordFile(path)
    assert rf.warnings == content.warnings
    assert path.read_text() == '{"id": "a"}\n{"id": "b"}\n'
    rf.append({"id": "c"})
    assert [r["id"] for r in RecordFile(path)] == ["a", "b", "c"] and not RecordFile(path).warnings


def test_a_complete_last_line_without_newline_is_a_record(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b"}')  # an editor that does not end files with a newline
    content = read_jsonl(path)
    assert content.records == [{"id": "a"}, {"id": "b"}] and not content.warnings and not content.clean
    rf = RecordFile(path)
    rf.append({"id": "c"})  # the missing newline is added first: no two records on one line
    assert path.read_text() == '{"id": "a"}\n{"id": "b"}\n{"id": "c"}\n'


def test_a_corrupt_middle_line_is_an_error_naming_file_and_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"id": "a"}\n{"id": oops}\n{"id": "c"}\n')
    with pytest.raises(RecordError, match=r"r\.jsonl:2: invalid JSON"):
        read_jsonl(path)
    with pytest.raises(RecordError, match=r"r\.jsonl:2: invalid JSON"):
        RecordFile(path)
    assert path.read_text().endswith('{"id": "c"}\n')  # the valid record after it is not dropped
    path.write_text('{"id": "a"}\n[1, 2]\n')
    with pytest.raises(RecordError, match=r"r\.jsonl:2: expected a JSON object, got list"):
        read_jsonl(path)
    path.write_text('{"id": "a"}\n{"other": 1}\n')
    with pytest.raises(RecordError, match=r"r\.jsonl:2: record without `id`"):
        RecordFile(path)


def test_lines_split_on_newline_only(tmp_path):
    path = tmp_path / "r.jsonl"
    texts = ["line\u2028separator", "next\u0085line", "form\x0cfeed", "para\u2029graph", "cr\rinside"]
    rf = RecordFile(path)
    for i, text in enumerate(texts):
        rf.append({"id": str(i), "text": text})
    assert "\u2028" in path.read_text(encoding="utf-8")  # kept raw (ensure_ascii=False)
    assert [r["text"] for r in RecordFile(path)] == texts
    assert [n for n, _ in read_jsonl(path).rows] == [1, 2, 3, 4, 5]


def test_blank_lines_are_skipped_and_line_numbers_kept(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"id": "a"}\n\n  \n{"id": "b"}\r\n')
    assert [(n, o["id"]) for n, o in read_jsonl(path).rows] == [(1, "a"), (4, "b")]


def test_read_errors_use_the_callers_error_class(tmp_path):
    class JobError(Exception):
        pass

    with pytest.raises(JobError, match="no such file"):
        read_jsonl(tmp_path / "absent.jsonl", error=JobError)
    with pytest.raises(JobError, match="is a directory"):
        read_jsonl(tmp_path, error=JobError)
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"id": "\xff"}\n')
    with pytest.raises(JobError, match=r"bad\.jsonl:1: not UTF-8 text"):
        read_jsonl(bad, error=JobError)


def test_retain_rewrites_only_the_kept_records(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rf = RecordFile(path, key_field="step")
    for step in (1, 2, 3):
        rf.append({"step": step, "loss": 0.5})
    rf.retain(lambda r: r["step"] <= 2)
    assert [r["step"] for r in RecordFile(path, key_field="step")] == [1, 2]
