"""docs/rules/ against the rule registry: one page per rule, the generated parts (index,
page headers, suppression sections) exactly what :mod:`cai_dsl.diagnostics.docs` writes."""

from __future__ import annotations

import difflib
import re
from pathlib import Path

import pytest

from cai_dsl.diagnostics import rules
from cai_dsl.diagnostics.docs import expected_rule_docs

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "rules"


RULE_PAGE = re.compile(r"^CAI\d{3}\.md$")


def test_every_rule_has_a_page_and_every_page_a_rule():
    codes = {r.code for r in rules.all_rules()}
    pages = {p.stem for p in DOCS.glob("*.md") if RULE_PAGE.match(p.name)}
    assert sorted(codes - pages) == [], "rules without a page"
    assert sorted(pages - codes) == [], "pages without a rule"
    assert {p.name for p in DOCS.glob("*.md")} - {f"{c}.md" for c in codes} == {"README.md"}


@pytest.mark.parametrize("rule", rules.all_rules(), ids=lambda r: r.code)
def test_rule_page_content(rule):
    text = (DOCS / f"{rule.code}.md").read_text(encoding="utf-8")
    assert text.splitlines()[0] == f"# {rule.code} {rule.name}"
    assert f"**Severity:** {rule.severity}" in text
    for heading in ("## What it catches", "## Why it matters", "## Example", "## How to fix", "## How to suppress"):
        assert heading in text, heading
    assert f"# cai: ignore[{rule.code}]" in text
    assert f'ignore = ["{rule.code}"]' in text
    assert f"cai lint --ignore {rule.code}" in text


def test_rules_index_lists_every_rule():
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    for rule in rules.all_rules():
        row = f"| [{rule.code}]({rule.code}.md) | `{rule.name}` | {rule.severity} | {rule.summary} |"
        assert row in index, row


def test_rule_docs_match_the_registry():
    """Regenerate with `cai rules --sync-docs docs/rules` when this fails."""
    drift = []
    for path, expected in expected_rule_docs(DOCS).items():
        actual = path.read_text(encoding="utf-8") if path.exists() else ""
        if actual != expected:
            diff = difflib.unified_diff(actual.splitlines(True), expected.splitlines(True), str(path), "registry")
            drift.append("".join(list(diff)[:40]))
    assert not drift, "\n".join(drift)


def test_registry_groups_and_scopes():
    for rule in rules.all_rules():
        assert rule.code.startswith(rules.group_of(rule).prefix), rule.code
        assert rule.scope in ("file", "deployment")
        assert rules.rule_by_code(rule.code) is rule and rules.rule_by_code(rule.name) is rule
    assert len({r.name for r in rules.all_rules()}) == len(rules.all_rules())
