"""The Model-Spec-style and Claude-style constitutions of the standard library (issue #11,
item 7): lint clean, their tests and `in *` properties pass, and the authority rules they
rely on reject a deployment that oversteps its level."""

from __future__ import annotations

from pathlib import Path

import pytest

from cai_dsl.check.checker import check
from cai_dsl.check.tests import run_tests
from cai_dsl.lang.resolver import resolve
from cai_dsl.pipeline.main import check_library

STDLIB = Path(__file__).resolve().parents[2] / "constitutions"
FILES = ("model-spec.const", "claude-style.const")


@pytest.mark.parametrize("name", FILES)
def test_lints_clean_and_tests_pass(name):
    constitution = resolve(STDLIB / name)
    assert [(d.code, d.message) for d in check(constitution)] == []
    results = run_tests(constitution)
    assert results and all(r.passed for r in results)


def test_in_the_library_check():
    result = check_library()
    checked = {Path(f.path).name: f for f in result.files}
    for name in FILES:
        assert name in checked and not checked[name].errors


@pytest.mark.parametrize(
    "name, deployment, code",
    [
        # an operator deployment may not drop a hard constraint
        ("claude-style.const", "deployment rogue extends base { authority operator  exclude hard.no_mass_casualty_uplift }", "CAI124"),
        # a user may not switch off an operator-level default
        ("claude-style.const", "deployment rogue extends clinic_user { exclude default.benefit_of_doubt }", "CAI124"),
        # ... nor a user-level default its operator locked
        ("claude-style.const", "deployment rogue extends companion { authority user  exclude default.content_warning }", "CAI124"),
        ("model-spec.const", "deployment rogue extends dev_app { exclude spec.honesty.no_fabricated_sources }", "CAI124"),
        ("model-spec.const", "deployment rogue extends user_session { exclude spec.default.no_lecture }", "CAI124"),
    ],
)
def test_overstepping_deployments_are_errors(tmp_path, name, deployment, code):
    path = tmp_path / name
    (tmp_path / "vocabulary.const").write_text((STDLIB / "vocabulary.const").read_text(encoding="utf-8"), encoding="utf-8")
    path.write_text((STDLIB / name).read_text(encoding="utf-8") + "\n" + deployment + "\n", encoding="utf-8")
    constitution = resolve(path)
    errors = [d for d in list(constitution.diagnostics) + check(constitution, semantic=False) if d.is_error]
    assert code in {d.code for d in errors}, [(d.code, d.message) for d in errors]
    assert all(len(d.related) >= 1 for d in errors if d.code == code)
