"""The hostile-input suite: every generated case against every command that reads a `.const` file.

The property (:func:`tests.hostile.cli.assert_plain`): exit code 0, 1 or 2 with a plain message, no
traceback, no internal error, bounded time (the SMT budget of every command that runs the checker is made tiny;
the ``pigeonhole`` case is hard for the solver, `test_undecided.py` has its regression tests). Imports from
outside the project never print the imported file's content.
"""

from __future__ import annotations

import os

import pytest

from tests.hostile.cases import CASES
from tests.hostile.cli import assert_plain, run_cai

SMT_BUDGET = ("--smt-timeout", "1", "--smt-budget", "3")
COMMANDS = {
    "parse": lambda f, out: ["parse", f],
    "lint": lambda f, out: ["lint", *SMT_BUDGET, f],
    "test": lambda f, out: ["test", *SMT_BUDGET, f],
    "explain": lambda f, out: ["explain", f, "-d", "base", "--given", "risk=high", *SMT_BUDGET],
    "compile": lambda f, out: ["compile", f, "-d", "base", "-o", str(out / "program.json"), *SMT_BUDGET],
    "fmt": lambda f, out: ["fmt", "--check", f],
    "export": lambda f, out: ["export", f, "-d", "base", "-f", "jsonl", "-o", str(out / "export.jsonl"), *SMT_BUDGET],
}
SECRET = "hostile-suite-secret-4f1c"


@pytest.fixture(scope="module")
def case_files(tmp_path_factory):
    """Each case built once, in its own directory."""
    files = {}
    for name, build in CASES.items():
        folder = tmp_path_factory.mktemp(name)
        files[name] = str(build(folder))
    return files


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_input_gives_a_plain_answer(case_files, case, command, tmp_path, monkeypatch):
    monkeypatch.setenv("CAI_HOSTILE_SECRET", SECRET)  # visible in /proc/self/environ
    outcome = run_cai(*COMMANDS[command](case_files[case], tmp_path))
    assert_plain(outcome)
    assert SECRET not in outcome.text
    assert "root:x:0:0" not in outcome.text
    if case in ("import_outside", "import_dotdot", "import_device") and command != "fmt":
        assert outcome.code == 1 and "CAI130" in outcome.text or "CAI007" in outcome.text


def test_every_case_is_built(case_files):
    assert sorted(case_files) == sorted(CASES)
    assert all(os.path.lexists(p) for p in case_files.values())
