"""The language server over stdio: diagnostics, hover, navigation, symbols, completion,
formatting and the priority code action, on the standard library and on a contradiction."""

from __future__ import annotations

import re
import time
from pathlib import Path

from cai_dsl.check.checker import check
from cai_dsl.lang.formatter import format_text
from cai_dsl.lang.resolver import resolve
from cai_dsl.lsp.analysis import lint_config_for
from tests.lsp.client import uri
from tests.lsp.conftest import CONTRADICTION, STDLIB

HH = STDLIB / "harmless-helpful.const"
VOCAB = STDLIB / "vocabulary.const"


def _line(text: str, needle: str, occurrence: int = 0) -> int:
    """The 0-based line of the ``occurrence``-th ``needle`` in ``text`` (positions found, not hard-coded)."""
    index = -1
    for _ in range(occurrence + 1):
        index = text.index(needle, index + 1)
    return text.count("\n", 0, index)


def _principle_lines(text: str, id_pattern: str = r"[\w.]+", tagged: str | None = None) -> set[int]:
    """0-based lines of the top-level ``principle`` declarations whose id matches, optionally with a tag."""
    out = set()
    for m in re.finditer(rf"^principle ({id_pattern}) \{{(.*?)^\}}", text, re.M | re.S):
        if tagged is None or re.search(rf"^\s*tags\b.*\b{tagged}\b", m.group(2), re.M):
            out.add(text.count("\n", 0, m.start()))
    return out


def _codes(diagnostics):
    return sorted((d["code"], d["range"]["start"]["line"], d["range"]["start"]["character"]) for d in diagnostics)


def _apply(text: str, edit: dict) -> str:
    lines = text.split("\n")
    start, end = edit["range"]["start"], edit["range"]["end"]
    offset = lambda p: sum(len(t) + 1 for t in lines[: p["line"]]) + p["character"]  # noqa: E731 (ASCII text)
    return text[: offset(start)] + edit["newText"] + text[offset(end) :]


def _settled(server, u, predicate=lambda d: True, timeout=20.0):
    """Diagnostics once the semantic results for the current version are in (two quiet publishes)."""
    version = server.versions[u]
    found = server.diagnostics(u, predicate, version=version, timeout=timeout)
    time.sleep(0.6)
    return server.diagnostics(u, predicate, version=version, timeout=timeout) or found


# ---------------------------------------------------------------- diagnostics


def test_stdlib_diagnostics_match_cai_lint(server):
    for path in (HH, STDLIB / "anthropic-2022.const", STDLIB / "deployments" / "medical.const"):
        constitution = resolve(str(path))
        expected = lint_config_for(str(path)).apply(check(constitution))
        expected = [d for d in expected if d.span is not None and d.span.file == str(path)]
        u = server.open(path)
        got = _settled(server, u, lambda d: len(d) >= len(expected))
        assert _codes(got) == sorted((d.code, d.span.line - 1, d.span.column - 1) for d in expected)
        assert {d["message"].split("\n")[0] for d in got} == {d.message + (f" [{d.deployment}]" if d.deployment else "") for d in expected}


def test_contradiction_has_both_principles_witness_and_help(server, tmp_path):
    path = tmp_path / "clash.const"
    path.write_text(CONTRADICTION)
    u = server.open(path)
    diags = server.diagnostics(u, lambda d: any(x["code"] == "CAI201" for x in d))
    clash = next(d for d in diags if d["code"] == "CAI201")
    assert clash["severity"] == 1 and clash["source"] == "cai"
    assert clash["range"]["start"] == {"line": 5, "character": 10}  # `harm.less_harmful`, as `cai lint` shows it
    assert "witness: intent=benign, risk=high" in clash["message"]
    assert "help: add `priority harm.less_harmful > help.goals`" in clash["message"]
    related = {r["location"]["range"]["start"]["line"] for r in clash["relatedInformation"]}
    assert related == {5, 10}
    assert all(r["location"]["uri"] == u for r in clash["relatedInformation"])


def test_code_action_inserts_the_suggested_priority(server, tmp_path):
    path = tmp_path / "clash2.const"
    path.write_text(CONTRADICTION)
    u = server.open(path)
    diags = server.diagnostics(u, lambda d: any(x["code"] == "CAI201" for x in d))
    clash = [d for d in diags if d["code"] == "CAI201"]
    actions = server.request(
        "textDocument/codeAction",
        {"textDocument": {"uri": u}, "range": clash[0]["range"], "context": {"diagnostics": clash}},
    )
    titles = [a["title"] for a in actions]
    assert titles == ["Add `priority harm.less_harmful > help.goals`", "Add `priority help.goals > harm.less_harmful`"]
    assert actions[0]["isPreferred"] is True and actions[0]["kind"] == "quickfix"
    edit = actions[0]["edit"]["changes"][u][0]
    fixed = _apply(server.texts[u], edit)
    assert "priority harm.less_harmful > help.goals\n\ndeployment base" in fixed
    server.change(u, fixed)
    after = _settled(server, u)
    assert not [d for d in after if d["severity"] == 1], after
    assert format_text(fixed, str(path)).ok


def test_syntax_errors_while_typing_and_recovery(server, tmp_path):
    path = tmp_path / "typing.const"
    path.write_text(CONTRADICTION)
    u = server.open(path)
    server.diagnostics(u, version=1)
    broken = CONTRADICTION.replace("  forbid detailed_instructions\n", "  forbid \n", 1)
    version = server.change(u, broken)
    diags = server.diagnostics(u, lambda d: any(x["code"] == "CAI001" for x in d), version=version)
    error = next(d for d in diags if d["code"] == "CAI001")
    assert error["range"]["start"]["line"] == 9  # the `}` where a behavior name was expected
    # navigation still works from the last good analysis
    hover = server.request("textDocument/hover", {"textDocument": {"uri": u}, "position": server.at(u, "help.goals", 2)})
    assert "**principle** `help.goals`" in hover["contents"]["value"]
    version = server.change(u, CONTRADICTION)
    server.diagnostics(u, lambda d: any(x["code"] == "CAI201" for x in d), version=version)


def test_unsaved_imported_buffer_rechecks_its_importer(server, tmp_path):
    vocab = tmp_path / "vocab.const"
    vocab.write_text('facet risk: low < high\nbehavior refuse "declines"\n')
    root = tmp_path / "root.const"
    root.write_text(
        'import "vocab.const"\nprinciple p {\n  compare "Which response is safer?"\n  when risk == high\n  forbid refuse\n}\n'
        "deployment base { include * }\n"
    )
    vu = server.open(vocab)
    ru = server.open(root)
    assert not [d for d in _settled(server, ru) if d["severity"] == 1]
    server.change(vu, 'facet risk: low < high\nbehavior decline "declines"\n')  # not saved
    diags = server.diagnostics(ru, lambda d: any(x["code"] == "CAI106" for x in d))
    assert next(d for d in diags if d["code"] == "CAI106")["range"]["start"]["line"] == 4
    server.change(vu, 'facet risk: low < high\nbehavior refuse "declines" }\n')  # a syntax error in the import
    diags = server.diagnostics(ru, lambda d: any(x["code"] == "CAI001" for x in d))
    error = next(d for d in diags if d["code"] == "CAI001")
    assert error["range"]["start"]["line"] == 0 and error["message"].startswith("in imported file vocab.const:2:")
    assert error["relatedInformation"][0]["location"]["uri"] == vu


def test_saved_import_change_on_disk_rechecks_the_importer(server, tmp_path):
    assert any(r["method"] == "client/registerCapability" for r in server.server_requests)
    vocab = tmp_path / "vocab.const"
    vocab.write_text('behavior refuse "declines"\n')
    root = tmp_path / "root.const"
    root.write_text('import "vocab.const"\nprinciple p {\n  compare "Which response is safer?"\n  forbid refuse\n}\n')
    ru = server.open(root)
    assert not [d for d in server.diagnostics(ru, version=1) if d["severity"] == 1]
    vocab.write_text('behavior decline "declines"\n')
    server.notify("workspace/didChangeWatchedFiles", {"changes": [{"uri": uri(vocab), "type": 2}]})
    server.diagnostics(ru, lambda d: any(x["code"] == "CAI106" for x in d))


# ---------------------------------------------------------------- navigation


def test_hover_on_principle_behavior_facet_value_group_deployment(server):
    u = server.open(HH)
    server.diagnostics(u)

    def hover(needle, offset=1, occurrence=0):
        pos = server.at(u, needle, offset, occurrence)
        result = server.request("textDocument/hover", {"textDocument": {"uri": u}, "position": pos})
        return result["contents"]["value"] if result else ""

    text = hover("principle harm.less_harmful", len("principle "))
    assert "**principle** `harm.less_harmful`" in text and "Which of these assistant responses is less harmful?" in text
    assert "when `risk >= high or intent == malicious`" in text
    assert "forbid `detailed_instructions`" in text and "in deployments: `base`, `harmlessness_first`" in text
    assert "authority in `base`: outranks `help.goals`; outranked by none" in text
    assert "authority in `helpfulness_first`: outranks none; outranked by `help.answer_benign`, `help.benefit_of_doubt`" in text
    text = hover("forbid detailed_instructions", len("forbid "))
    assert "**behavior** `detailed_instructions`" in text and "exclusive with `partial_answer`, `refuse`" in text
    declared = _line(VOCAB.read_text(), "behavior detailed_instructions ") + 1
    assert f"vocabulary.const:{declared}" in text and "forbidden by `harm.less_harmful`" in text
    assert "`low < medium < high < critical`" in hover("when risk >=", len("when "))
    assert "**value** `high` of facet `risk`" in hover("risk >= high", len("risk >= "))
    text = hover("group soft_safety", len("group "))
    assert "**group** `soft_safety`" in text and "`harm.decline_dangerous`" in text
    assert "**deployment** `harmlessness_first`" in hover("deployment harmlessness_first", len("deployment "))
    assert "**glob** `harm.*`" in hover("harm.*, help.*" if "harm.*, help.*" in server.texts[u] else "#safety, harm.*", 10)


def test_definition_across_imports_selectors_and_import_paths(server):
    u = server.open(HH)
    server.diagnostics(u)

    def definition(needle, offset, occurrence=0):
        pos = server.at(u, needle, offset, occurrence)
        return server.request("textDocument/definition", {"textDocument": {"uri": u}, "position": pos})

    text = server.texts[u]
    [loc] = definition("forbid detailed_instructions", len("forbid "))
    assert loc["uri"] == uri(VOCAB) and loc["range"]["start"]["line"] == _line(VOCAB.read_text(), "behavior detailed_instructions ")
    [loc] = definition('import "vocabulary.const"', 9)
    assert loc["uri"] == uri(VOCAB)
    harm = definition("group safety = #safety, harm.*", len("group safety = #safety, h"))
    harm_lines = _principle_lines(text, r"harm\.[\w.]+")
    assert len(harm) == len(harm_lines) > 1 and all(loc["uri"] == u for loc in harm)
    assert {loc["range"]["start"]["line"] for loc in harm} == harm_lines
    tagged = definition("group hard_limits = #hard_limit", len("group hard_limits = #h"))
    hard_limits = _principle_lines(text, tagged="hard_limit")
    assert len(hard_limits) > 1 and {loc["range"]["start"]["line"] for loc in tagged} == hard_limits
    [loc] = definition("priority soft_safety > helpfulness", len("priority s"), occurrence=1)
    assert loc["range"]["start"]["line"] == _line(text, "group soft_safety =")
    [loc] = definition("in base {", 4)
    assert server.texts[u].split("\n")[loc["range"]["start"]["line"]].startswith("deployment base")


LEVELS = """\
constitution "levels" version "1.0"
authority platform > operator > user
facet risk: low < high
facet dose_mg: number [0 .. 100]
behavior refuse "declines" {
  marker "I can't help"
  judge "Does the response decline?"
  opening "I can't help with that"
}
principle p {
  compare "Which response is safer?"
  authority operator
  when risk == high or dose_mg > 50
  forbid refuse
}
principle q {
  compare "Which response is kinder?"
  final
  when risk == low
  prefer refuse
}
deployment base { include * }
deployment clinic extends base {
  authority operator
  lock p
  override p {
    narrow when dose_mg > 10
  }
}
test "refuses at high risk" in * {
  given risk == high
  expect forbid refuse
}
"""


def test_authority_levels_observed_behaviors_and_deployment_globs(server, tmp_path):
    path = tmp_path / "levels.const"
    path.write_text(LEVELS)
    u = server.open(path)
    server.diagnostics(u)

    def ask(method, needle, offset, occurrence=0):
        pos = server.at(u, needle, offset, occurrence)
        return server.request(f"textDocument/{method}", {"textDocument": {"uri": u}, "position": pos})

    def lines(locations):
        return sorted(loc["range"]["start"]["line"] for loc in locations)

    declared = _line(LEVELS, "authority platform > operator")
    # an authority level goes to the `authority A > B` declaration, from a principle and a deployment
    assert lines(ask("definition", "  authority operator", len("  authority o"))) == [declared]
    assert lines(ask("definition", "  authority operator", len("  authority o"), occurrence=1)) == [declared]
    text = ask("hover", "  authority operator", len("  authority o"))["contents"]["value"]
    assert f"**authority level** `operator` (levels.const:{declared + 1})" in text
    assert "`platform > operator > user`" in text and "principles changeable from it: `p`" in text
    assert "deployments at it: `clinic`" in text
    refs = server.request(
        "textDocument/references",
        {"textDocument": {"uri": u}, "position": server.at(u, "> operator", 2), "context": {"includeDeclaration": True}},
    )
    assert lines(refs) == sorted([declared, _line(LEVELS, "  authority operator"), _line(LEVELS, "  authority operator", 1)])
    # a principle's authority and final mark, a deployment's level and locks
    assert "changeable from authority level `operator`" in ask("hover", "principle p", len("principle "))["contents"]["value"]
    assert "- final" in ask("hover", "principle q", len("principle "))["contents"]["value"]
    text = ask("hover", "deployment clinic", len("deployment "))["contents"]["value"]
    assert "authority level `operator`" in text and "locked for the deployments extending it: `p`" in text
    assert lines(ask("definition", "lock p", len("lock "))) == [_line(LEVELS, "principle p")]
    # a behavior's observe fields
    text = ask("hover", "forbid refuse", len("forbid "))["contents"]["value"]
    assert "- marker: `I can't help`" in text and "- judge: `Does the response decline?`" in text
    assert "- opening: `I can't help with that`" in text
    # `narrow when` conditions are indexed like any condition
    assert "**facet** `dose_mg`" in ask("hover", "narrow when dose_mg", len("narrow when "))["contents"]["value"]
    # a test's `in *` goes to every deployment it matches; a deployment's references include it
    glob = _line(LEVELS, "in * {")
    assert lines(ask("definition", "in * {", 3)) == [_line(LEVELS, "deployment base"), _line(LEVELS, "deployment clinic")]
    assert "matches 2 deployment(s): `base`, `clinic`" in ask("hover", "in * {", 3)["contents"]["value"]
    refs = server.request(
        "textDocument/references",
        {"textDocument": {"uri": u}, "position": server.at(u, "deployment clinic", 11), "context": {"includeDeclaration": True}},
    )
    assert glob in lines(refs)


def test_references_of_a_principle_include_selectors(server):
    u = server.open(HH)
    server.diagnostics(u)
    pos = server.at(u, "principle harm.less_harmful", len("principle "))
    refs = server.request(
        "textDocument/references", {"textDocument": {"uri": u}, "position": pos, "context": {"includeDeclaration": True}}
    )
    lines = {r["range"]["start"]["line"] for r in refs if r["uri"] == u}
    text = server.texts[u]
    uses = (  # definition, group, glob, conflict, priority, override
        "principle harm.less_harmful {",
        "group soft_safety = harm.less_harmful",
        "group safety = #safety, harm.*",
        "conflict help.goals vs harm.less_harmful",
        "priority harm.less_harmful > help.goals",
        "override harm.less_harmful {",
    )
    assert {_line(text, needle) for needle in uses} <= lines
    refs = server.request(
        "textDocument/references",
        {"textDocument": {"uri": u}, "position": server.at(u, "risk >= high", 1), "context": {"includeDeclaration": True}},
    )
    assert any(r["uri"] == uri(VOCAB) for r in refs) and sum(r["uri"] == u for r in refs) > 5


def test_document_symbols(server):
    u = server.open(HH)
    server.diagnostics(u)
    symbols = server.request("textDocument/documentSymbol", {"textDocument": {"uri": u}})
    names = [s["name"] for s in symbols]
    assert {"harm.less_harmful", "help.goals", "hard_limits", "base", "harmlessness_first", "vocabulary.const"} <= set(names)
    base = next(s for s in symbols if s["name"] == "harmlessness_first")
    assert [c["name"] for c in base["children"]] == ["harm.less_harmful"]


def test_completion(server, tmp_path):
    path = tmp_path / "complete.const"
    path.write_text(CONTRADICTION)
    u = server.open(path)
    server.diagnostics(u)

    def labels(text: str) -> set[str]:
        server.change(u, text)
        last = text.split("\n")[-1]
        pos = {"line": text.count("\n"), "character": len(last)}
        result = server.request("textDocument/completion", {"textDocument": {"uri": u}, "position": pos})
        return {item["label"] for item in result["items"]}

    body = CONTRADICTION + "principle x {\n"
    server.change(u, body)
    assert {"detailed_instructions"} == labels(body + "  require det")
    assert {"low", "medium", "high", "critical"} == labels(body + "  when risk >= ")
    assert {"benign", "unclear", "malicious"} == labels(body + "  when intent in {benign, ")
    assert {"risk", "intent"} <= labels(body + "  when ")
    assert {"harm.less_harmful", "help.goals"} <= labels(CONTRADICTION + "priority ")
    assert {"base"} == labels(CONTRADICTION + "deployment more extends ")
    assert {"principle", "facet", "deployment", "critique", "require", "include"} <= labels(CONTRADICTION + "pri")
    levels = CONTRADICTION + "authority platform > operator > user\n"
    server.diagnostics(u, version=server.change(u, levels))  # the levels are in the last good index
    assert {"platform", "operator", "user"} == labels(levels + "principle y {\n  authority ")
    assert {"operator", "user"} <= labels(levels + "authority platform > ")
    assert {"harm.less_harmful", "help.goals"} <= labels(levels + "deployment d {\n  lock ")
    assert {"number"} == labels(CONTRADICTION + "facet dose_mg: ")
    assert {"authority", "final", "lock", "narrow", "marker", "opening"} <= labels(CONTRADICTION + "a")


# ---------------------------------------------------------------- formatting


def test_formatting_gives_cai_fmt_output_and_nothing_on_errors(server, tmp_path):
    path = tmp_path / "messy.const"
    messy = CONTRADICTION.replace("  compare", "      compare").replace("deployment base { include * }", "deployment base {include *}")
    path.write_text("")  # the buffer is unsaved: formatting uses it, not the disk
    u = server.open(path, messy)
    edits = server.request("textDocument/formatting", {"textDocument": {"uri": u}, "options": {"tabSize": 2, "insertSpaces": True}})
    assert len(edits) == 1
    assert _apply(messy, edits[0]) == format_text(messy, str(path)).output
    server.change(u, messy + "principle {")
    assert server.request("textDocument/formatting", {"textDocument": {"uri": u}, "options": {"tabSize": 2, "insertSpaces": True}}) == []
    canonical = format_text(CONTRADICTION, str(path)).output
    server.change(u, canonical)
    assert server.request("textDocument/formatting", {"textDocument": {"uri": u}, "options": {"tabSize": 2, "insertSpaces": True}}) == []


def test_close_clears_diagnostics(server, tmp_path):
    path = tmp_path / "closing.const"
    path.write_text("principle {")
    u = server.open(path)
    assert server.diagnostics(u, lambda d: bool(d))
    server.notify("textDocument/didClose", {"textDocument": {"uri": u}})
    assert server.diagnostics(u, lambda d: d == []) == []
    assert Path(path).exists()
