"""Hashing and the fingerprint/resume scheme."""

import hashlib
from pathlib import Path

import pytest

from cai_dsl.core.hashing import RunMismatch, canonical_json, changed_inputs, check_resume, fingerprint, sha256_file, sha256_text


def test_hashers_agree_with_hashlib(tmp_path):
    f = tmp_path / "w.bin"
    f.write_bytes(b"x" * (5 << 20))
    assert sha256_file(f) == hashlib.sha256(f.read_bytes()).hexdigest()
    assert sha256_text("é") == hashlib.sha256("é".encode()).hexdigest()


def test_fingerprint_is_canonical():
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}\n'
    assert fingerprint({"a": 1, "b": (1, 2)}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"path": Path("x")}) == fingerprint({"path": "x"})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})


def test_resume_refuses_other_inputs_naming_them():
    check_resume(None, {"seed": 1}, "out/")
    check_resume({"seed": 1, "model": "m"}, {"model": "m", "seed": 1}, "out/")
    assert changed_inputs({"seed": 1, "a": [1]}, {"seed": 2, "a": (1,)}) == ["seed"]
    with pytest.raises(RunMismatch, match=r"out/ was written by a run with different arguments \(model, seed\)"):
        check_resume({"seed": 1, "model": "a"}, {"seed": 2, "model": "b"}, "out/")
