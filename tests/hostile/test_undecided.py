"""Issue #13: `cai test`, `cai explain`, `cai compile`, `cai export`, `cai run`'s checks and
`assert_constitution_passes` within the SMT budget of `cai lint` (one regression test per case).

The input is the pigeonhole set (15 facets over 14 values, pairwise distinct), which z3 takes minutes to refute.
The command-line cases run `cai` in a subprocess whose timeout is the guard: with the budget the command
finishes in seconds; without it, it would hang past the guard.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from cai_dsl.check.explain import explain
from cai_dsl.check.tests import failures_as_diagnostics, run_tests
from cai_dsl.lang.resolver import resolve
from cai_dsl.semantics.budget import Budget
from tests.hostile.cases import pigeonhole_text
from tests.hostile.cli import assert_plain, run_cai

ROOT = Path(__file__).resolve().parents[2]
GUARD_S = 120  # generous: the commands below take a few seconds


def _write(tmp_path: Path, where: str) -> Path:
    path = tmp_path / f"pigeonhole-{where}.const"
    path.write_text(pigeonhole_text(where), encoding="utf-8")
    return path


def _cai(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CAI_NO_PROGRESS": "1"}
    return subprocess.run([sys.executable, "-c", "from cai_dsl.cli import main; main()", *args], cwd=cwd or ROOT,
                          env=env, capture_output=True, text=True, timeout=GUARD_S)


def test_cai_test_undecided_expectation_is_reported_never_passed_and_exits_1(tmp_path):
    path = _write(tmp_path, "when")
    proc = _cai("test", "--smt-timeout", "0.1", "--smt-budget", "20", str(path))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f'UNDECIDED {path}:' in proc.stdout and 'test "hard" [base]' in proc.stdout
    assert ('error[CAI404]: test "hard" in deployment `base`: could not decide within 0.1 s whether expect not '
            "active hard.p holds") in proc.stdout
    assert f'PASS {path}:' in proc.stdout and "1 passed, 0 failed, 1 undecided" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_cai_test_json_counts_undecided_apart_from_passed(tmp_path):
    path = _write(tmp_path, "assume")
    proc = _cai("test", "--format", "json", "--smt-timeout", "0.1", str(path))
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    assert data["summary"] == {"passed": 1, "failed": 0, "undecided": 1}
    hard, easy = data["files"][0]["cases"]
    assert hard["outcome"] == "undecided" and hard["passed"] is False and hard["expectations"][0]["undecided"] is True
    assert [u["code"] for u in hard["undecided"]] == ["CAI404"]
    # its expectation holds (decided), only whether any scenario matches it is not: a pass, with CAI220
    assert easy["outcome"] == "passed" and [u["code"] for u in easy["undecided"]] == ["CAI220"]


def test_cai_test_smt_timeout_from_tool_cai(tmp_path):
    path = _write(tmp_path, "when")
    (tmp_path / "pyproject.toml").write_text("[tool.cai]\nsmt-timeout = 0.1\n", encoding="utf-8")
    proc = _cai("test", str(path), cwd=tmp_path)
    assert proc.returncode == 1 and "could not decide within 0.1 s" in proc.stdout, proc.stdout + proc.stderr


def test_cai_explain_names_the_question_it_could_not_decide_and_exits_1(tmp_path):
    path = _write(tmp_path, "when")
    proc = _cai("explain", str(path), "-d", "base", "--given", "risk=high", "--smt-timeout", "0.1")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "undecided: could not decide within 0.1 s whether `hard.p` is active in every completion" in proc.stdout
    assert "undecided: could not decide within 0.1 s whether `caveat` can be required" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_cai_explain_undecided_reachability_in_json(tmp_path):
    path = _write(tmp_path, "assume")
    proc = _cai("explain", str(path), "-d", "base", "--given", "risk=high", "--json", "--smt-timeout", "0.1")
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    assert data["reachable"] is None
    assert data["undecided"] == [{"question": "whether this scenario is reachable in `base`", "seconds": 0.1,
                                  "run_exhausted": False}]


def test_run_tests_with_a_spent_run_budget_leaves_every_expectation_undecided(tmp_path):
    constitution = resolve(_write(tmp_path, "when"))
    results = run_tests(constitution, Budget(query_seconds=1e-6, run_seconds=1e-6))
    assert [r.outcome for r in results] == ["undecided", "undecided"] and not any(r.passed for r in results)
    diags = failures_as_diagnostics(results)
    assert {d.code for d in diags} == {"CAI404"} and all(d.is_error for d in diags)
    assert all("the run's SMT budget ran out" in d.message and "`--smt-budget`" in d.help for d in diags)


def test_explain_with_a_spent_run_budget_decides_nothing(tmp_path):
    constitution = resolve(_write(tmp_path, "when"))
    result = explain(constitution, "base", {"risk": "high"}, Budget(query_seconds=1e-6, run_seconds=1e-6))
    assert result.reachable is None and [u.run_exhausted for u in result.undecided] == [True]


def test_lint_test_explain_on_the_pigeonhole_set_are_bounded(tmp_path):
    """The hostile-input property for the commands with an SMT budget, on input that is hard for z3."""
    path = str(_write(tmp_path, "assume"))
    budget = ("--smt-timeout", "0.5", "--smt-budget", "3")
    for args in (("lint", *budget, path), ("test", *budget, path), ("explain", path, "-d", "base", "--given", "risk=high", *budget)):
        outcome = run_cai(*args)
        assert_plain(outcome, bound_s=60)
        assert outcome.code == 1 or args[0] == "lint", outcome.text[-2000:]
        assert "could not decide within" in outcome.text, outcome.text[-2000:]


# -- cai compile, cai export, cai run's stages, assert_constitution_passes: an undecided check that could hide an
#    error refuses (CAI220 as an error, exit 1), one that could hide a warning only does not


REFUSED = ("error[CAI220] undecided: could not decide within 0.5 s whether its assumptions admit any scenario in "
           "deployment `base` (the answer could hide an error)")


def test_pigeonhole_compile_refuses_with_undecided_error_and_writes_nothing(tmp_path):
    path, out = _write(tmp_path, "assume"), tmp_path / "program.json"
    proc = _cai("compile", str(path), "-d", "base", "-o", str(out), "--smt-timeout", "0.5", "--smt-budget", "20")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert REFUSED in proc.stderr and "`--smt-timeout`" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr and not out.exists()


def test_pigeonhole_compile_all_with_the_default_budget_is_bounded(tmp_path):
    path = _write(tmp_path, "assume")
    proc = _cai("compile", str(path), "--all", "-o", str(tmp_path / "out"))  # 10 s per query, 300 s in all
    assert proc.returncode == 1 and "error[CAI220]" in proc.stderr and "within 10 s" in proc.stderr, proc.stderr
    assert not (tmp_path / "out" / "base.json").exists()


def test_pigeonhole_export_refuses_with_undecided_error(tmp_path):
    path, out = _write(tmp_path, "assume"), tmp_path / "export.jsonl"
    proc = _cai("export", str(path), "-d", "base", "-f", "jsonl", "-o", str(out), "--smt-timeout", "0.5")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert REFUSED in proc.stderr and "Traceback" not in proc.stderr and not out.exists()


def test_pigeonhole_export_smt_timeout_from_tool_cai(tmp_path):
    path = _write(tmp_path, "assume")
    (tmp_path / "pyproject.toml").write_text("[tool.cai]\nsmt-timeout = 0.5\n", encoding="utf-8")
    proc = _cai("export", str(path), "-d", "base", "-f", "jsonl", cwd=tmp_path)
    assert proc.returncode == 1 and REFUSED in proc.stderr, proc.stdout + proc.stderr


def test_pigeonhole_compile_proceeds_when_only_a_warning_is_undecided(tmp_path):
    """``when``: only whether `hard.p` is ever active (CAI205, a warning) is hard; the program does not depend on it."""
    path, out = _write(tmp_path, "when"), tmp_path / "program.json"
    proc = _cai("compile", str(path), "-d", "base", "-o", str(out), "--warnings", "--smt-timeout", "0.5")
    assert proc.returncode == 0, proc.stderr
    assert ("warning[CAI220] undecided: could not decide within 0.5 s whether `hard.p` is ever active in deployment "
            "`base` [base]") in proc.stderr and "could hide an error" not in proc.stderr and out.is_file()


def test_compile_with_a_spent_run_budget_refuses_naming_the_skipped_checks(tmp_path):
    from cai_dsl.compile.compiler import compile_file

    program, diags = compile_file(_write(tmp_path, "when"), "base", budget=Budget(query_seconds=1e-6, run_seconds=1e-6))
    assert program is None
    [d] = [d for d in diags if d.is_error]
    assert d.code == "CAI220" and "the run's SMT budget ran out" in d.message and "`--smt-budget`" in d.help


def test_assert_constitution_passes_fails_on_the_pigeonhole_set(tmp_path):
    import pytest

    from cai_dsl.testing.pytest_plugin import assert_constitution_passes

    with pytest.raises(pytest.fail.Exception) as failed:
        assert_constitution_passes(_write(tmp_path, "assume"), Budget(query_seconds=0.5, run_seconds=5))
    assert "CAI220" in str(failed.value) and "CAI404" in str(failed.value)


def test_cai_run_library_check_counts_undecided_as_failed(tmp_path):
    from cai_dsl.pipeline.main import check_library

    _write(tmp_path, "assume")
    library = check_library(tmp_path, Budget(query_seconds=0.5, run_seconds=5))
    assert not library.ok and {d.code for f in library.files for d in f.errors} == {"CAI220"}


def test_pigeonhole_compile_goes_on_only_where_an_ignore_comment_accepts_the_undecided_check(tmp_path):
    from cai_dsl.compile.compiler import compile_file

    path = tmp_path / "accepted.const"
    path.write_text(pigeonhole_text("assume").replace("deployment base {", "# cai: ignore[CAI220]\ndeployment base {"),
                    encoding="utf-8")
    program, diags = compile_file(path, "base", budget=Budget(query_seconds=0.5, run_seconds=5))
    assert program is not None and not any(d.code == "CAI220" for d in diags)


def test_library_check_has_a_budget_by_default(tmp_path, monkeypatch):
    """`cai_dsl.check(...)` without ``budget=`` ran unbounded (minutes on this set); now it runs within the CLI's
    default budget, and a given budget answers CAI220 in about its time."""
    import time

    import cai_dsl
    import cai_dsl.check.checker as checker

    constitution = cai_dsl.load(_write(tmp_path, "assume"))
    started = time.monotonic()
    codes = {d.code for d in cai_dsl.check(constitution, budget=Budget(query_seconds=0.2, run_seconds=3))}
    assert "CAI220" in codes and time.monotonic() - started < 60
    seen = []
    monkeypatch.setattr(checker, "check", lambda c, d=None, **kw: seen.append(kw.get("budget")) or [])
    cai_dsl.check(constitution)
    assert len(seen) == 1 and isinstance(seen[0], Budget)
    assert (seen[0].query_seconds, seen[0].run_seconds) == (Budget().query_seconds, Budget().run_seconds) == (10.0, 300.0)
