"""CAI310 unobservable-behavior and CAI311 judge-not-a-question, their rule pages, and the
standard library linting clean of them (and of CAI121)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cai_dsl.check.checker import check
from cai_dsl.check.observability import lint_observability
from cai_dsl.lang.resolver import resolve

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs" / "rules"
CODES = ("CAI121", "CAI310", "CAI311")

SOURCE = """\
facet risk: low < high
behavior refuse "declines the request" {{
  {refuse}
}}
behavior caveat "states the risks of the answer"{caveat}
behavior unused "never used"
principle harm.decline {{
  compare "Which of these responses declines the dangerous request more clearly?"
  when risk == high
  require refuse
  prefer caveat
}}
principle help.other {{
  compare "Which of these responses states the risks of the answer more clearly?"
  prefer unused
}}
deployment base {{ include harm.* }}
"""


def _lint(tmp_path, refuse='marker "I can\'t help with"', caveat="", pre="") -> list:
    path = tmp_path / "t.const"
    path.write_text(pre + SOURCE.format(refuse=refuse, caveat=caveat), encoding="utf-8")
    constitution = resolve(path)
    assert not constitution.has_errors, [d.message for d in constitution.diagnostics]
    return [d for d in check(constitution) if d.code in CODES]


def test_a_used_behavior_without_detector_or_judge_is_reported_at_its_declaration(tmp_path):
    found = _lint(tmp_path)
    assert [(d.code, d.severity, d.span.line, d.span.column) for d in found] == [("CAI310", "warning", 5, 10)]
    d = found[0]
    assert d.message == (
        "behavior `caveat` is preferred by `harm.decline` in deployment `base` but cannot be observed: "
        "it has no marker, pattern or judge question"
    )
    assert d.deployment == "base" and d.principles == ("harm.decline",)
    assert [(r.span.line, r.message) for r in d.related] == [(11, "preferred by `harm.decline` here")]


@pytest.mark.parametrize(
    "caveat, expected",
    [
        (' { judge "Does the response state the risks?" }', []),
        (' { pattern "\\\\brisks?\\\\b" }', []),
        (' { opening "One risk is" }', ["CAI310"]),
        (" {}", ["CAI310"]),
    ],
)
def test_a_judge_or_a_detector_makes_it_observable(tmp_path, caveat, expected):
    assert [d.code for d in _lint(tmp_path, caveat=caveat)] == expected


def test_required_and_forbidden_behaviors_count_and_principles_outside_deployments_do_not(tmp_path):
    found = _lint(tmp_path, refuse="", caveat=' { judge "Is it?" }')
    assert [(d.code, d.message.split(" but ")[0]) for d in found] == [
        ("CAI310", "behavior `refuse` is required by `harm.decline` in deployment `base`")
    ]


def test_suppressed_on_the_behavior_or_the_principle(tmp_path):
    assert _lint(tmp_path, caveat=" # cai: ignore[CAI310] observed by hand") == []
    path = tmp_path / "u.const"
    text = SOURCE.format(refuse='marker "x"', caveat="").replace(
        "principle harm.decline", "# cai: ignore[unobservable-behavior]\nprinciple harm.decline"
    )
    path.write_text(text, encoding="utf-8")
    assert [d for d in check(resolve(path)) if d.code == "CAI310"] == []


def test_judge_that_is_not_a_question(tmp_path):
    found = _lint(tmp_path, caveat=' { judge "Check the risks."  judge "Does it state risks?  " }')
    assert [(d.code, d.span.line, d.span.column, d.message) for d in found] == [
        ("CAI311", 5, 58, "judge text of behavior `caveat` is not a yes/no question")
    ]


def test_judges_of_an_imported_vocabulary_are_checked_where_used(tmp_path):
    (tmp_path / "vocab.const").write_text(
        'behavior refuse "declines" { judge "Declines." }\nbehavior other "x" { judge "Other." }\n', encoding="utf-8"
    )
    path = tmp_path / "main.const"
    path.write_text(
        'import "vocab.const"\nprinciple p {\n  compare "Which of these responses declines more clearly?"\n'
        "  require refuse\n}\ndeployment base { include * }\n",
        encoding="utf-8",
    )
    found = lint_observability(resolve(path))
    assert [(d.code, Path(d.span.file).name, d.message) for d in found] == [
        ("CAI311", "vocab.const", "judge text of behavior `refuse` is not a yes/no question")
    ]
    assert [d.code for d in lint_observability(resolve(tmp_path / "vocab.const"))] == ["CAI311", "CAI311"]


# ---------------------------------------------------------------- rule pages


def _snippet(code: str, heading: str) -> str:
    text = (DOCS / f"{code}.md").read_text(encoding="utf-8")
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    return re.search(r"```const\n(.*?)```", section, re.S).group(1)


@pytest.mark.parametrize("code", CODES)
def test_rule_page_examples_are_accurate(tmp_path, code):
    for heading, expected in (("## Example", True), ("## How to fix", False)):
        path = tmp_path / f"{code}-{expected}.const"
        path.write_text(_snippet(code, heading), encoding="utf-8")
        found = {d.code for d in check(resolve(path))}
        assert (code in found) == expected, (heading, sorted(found))


# ---------------------------------------------------------------- the standard library


STDLIB = sorted((REPO / "constitutions").rglob("*.const"))


@pytest.mark.parametrize("path", STDLIB, ids=lambda p: str(p.relative_to(REPO)))
def test_stdlib_has_no_observability_findings(path):
    constitution = resolve(path)
    assert not constitution.has_errors
    assert [d.message for d in check(constitution, semantic=False) if d.code in CODES] == []
