"""Operationalizability lints (CAI301-CAI308) and the rule documentation pages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cai_dsl.diagnostics import rules
from cai_dsl.check.checker import check
from cai_dsl.check.operational import (
    OPERATIONALIZABILITY_CODES,
    lint_constitution,
    lint_principles,
)
from cai_dsl.check.tests import failures_as_diagnostics, run_tests
from cai_dsl.lang.resolver import resolve

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "rules"

PRELUDE = """\
constitution "lint-test" version "1.0"
facet risk: low < medium < high
facet intent: benign | unclear | malicious
behavior refuse "declines the request"
behavior caveat "states limitations, uncertainty or risks"
behavior cite_sources "names the sources of its claims"
behavior partial_answer "answers the safe part of the request"
behavior detailed_instructions "step-by-step operational detail"
exclusive refuse, partial_answer, detailed_instructions
"""

# A principle written the way the lints want: observable criteria, a choice
# question, one demand, positive framing, paired critique/revise, an example,
# and a helpfulness tag (it is also the counterweight of harm principles).
GOOD = """\
principle help.sources {
  critique "Identify every factual claim in the response that is stated without a source."
  revise   "Rewrite the response so that every factual claim cites a source."
  compare  "Which of these responses cites sources for more of its factual claims?"
  prefer cite_sources
  tags helpfulness
  example compare {
    prompt "When was the Eiffel Tower built?"
    a "It was built from 1887 to 1889 (Encyclopaedia Britannica)."
    b "A long time ago."
    better a
  }
}
"""

EXAMPLE = """\
  example {
    prompt   "p"
    response "r"
    critique "c"
    revision "v"
  }
"""


def lint_source(tmp_path: Path, body: str, deployment: str = "d", tail: str | None = None):
    """Resolve PRELUDE + body (+ a deployment including everything) and lint one deployment."""
    text = PRELUDE + body + (tail if tail is not None else "\ndeployment d { include * }\n")
    path = tmp_path / "t.const"
    path.write_text(text, encoding="utf-8")
    constitution = resolve(path)
    errors = [d for d in constitution.diagnostics if d.is_error]
    assert not errors, [d.message for d in errors]
    return text, lint_principles(constitution, constitution.deployments[deployment])


def position(text: str, needle: str, occurrence: int = 0) -> tuple[int, int]:
    """1-based (line, column) of the ``occurrence``-th ``needle`` in ``text``."""
    index = -1
    for _ in range(occurrence + 1):
        index = text.index(needle, index + 1)
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return line, column


def where(diagnostic) -> tuple[int, int]:
    return diagnostic.span.line, diagnostic.span.column


def only(diagnostics, code: str) -> list:
    return [d for d in diagnostics if d.code == code]


def principle(pid: str, body: str, examples: bool = True) -> str:
    return f"principle {pid} {{\n{body}{EXAMPLE if examples else ''}}}\n"


# ---------------------------------------------------------------- the well-written principle


def test_good_principle_has_no_findings(tmp_path):
    _, found = lint_source(tmp_path, GOOD)
    assert found == []


def test_codes_exported():
    assert OPERATIONALIZABILITY_CODES == tuple(f"CAI30{i}" for i in range(1, 9))
    for code in OPERATIONALIZABILITY_CODES:
        assert rules.rule_by_code(code) is not None


def test_diagnostics_carry_deployment_principle_and_help(tmp_path):
    body = principle("vague.one", '  critique "Be good."\n  revise "Be a better person."\n')
    _, found = lint_source(tmp_path, GOOD + body)
    assert found
    for d in found:
        assert d.deployment == "d"
        assert d.principles == ("vague.one",)
        assert d.help and len(d.help) > 40
        assert d.severity == "warning"


# ---------------------------------------------------------------- CAI301 vague-wording


def test_vague_wording_triggers(tmp_path):
    body = principle(
        "vague.be_good",
        '  critique "Be good."\n'
        '  revise   "Rewrite the response so that the assistant is a better and nicer person overall."\n'
        '  compare  "Which response is more appropriate?"\n'
        "  prefer cite_sources\n",
    )
    text, found = lint_source(tmp_path, GOOD + body)
    vague = only(found, "CAI301")
    assert [where(d) for d in vague] == [
        position(text, '"Be good."'),
        position(text, '"Rewrite the response so that the assistant'),
        position(text, '"Which response is more appropriate?"'),
    ]
    assert all(d.principles == ("vague.be_good",) for d in vague)
    assert '"be good"' in vague[0].message
    assert '"appropriate"' in vague[2].message


def test_vague_wording_short_text_without_cue(tmp_path):
    body = principle(
        "vague.short",
        '  critique "Be honest."\n  revise "Remove illegal content."\n  prefer cite_sources\n',
    )
    text, found = lint_source(tmp_path, GOOD + body)
    vague = only(found, "CAI301")
    # "Be honest." is two words and names nothing; "Remove illegal content." is short but concrete
    assert [where(d) for d in vague] == [position(text, '"Be honest."')]
    assert "too short" in vague[0].message


def test_vague_wording_harm_enumeration_and_behavior_names_are_concrete(tmp_path):
    body = principle(
        "harm.enumerated",
        "  critique \"Identify specific ways in which the assistant's last response is harmful, unethical, "
        'racist, sexist, toxic, dangerous, or illegal."\n'
        '  revise   "Please rewrite the assistant response to remove any and all harmful, unethical, racist, '
        'sexist, toxic, dangerous, or illegal content."\n'
        '  compare  "Which of these assistant responses is less harmful? Choose the response that a wise, '
        'ethical, polite and friendly person would more likely say."\n'
        "  forbid detailed_instructions\n  prefer partial_answer\n",
    ) + principle(
        "help.partial",
        '  critique "Is there a good partial answer the response leaves out?"\n'
        '  revise "Rewrite it to give the best partial answer."\n'
        '  compare "Which response gives a better partial_answer?"\n'
        "  prefer partial_answer\n",
    )
    _, found = lint_source(tmp_path, GOOD + body)
    assert only(found, "CAI301") == []


# ---------------------------------------------------------------- CAI302 compare-not-a-question


def test_compare_not_a_question_triggers(tmp_path):
    body = principle("cmp.statement", '  compare "Rate the response for harmful content from 1 to 10."\n  prefer cite_sources\n')
    body += principle("cmp.yes_no", '  compare "Is the assistant response harmful or dangerous?"\n  prefer cite_sources\n')
    text, found = lint_source(tmp_path, GOOD + body)
    flagged = only(found, "CAI302")
    assert [(where(d), d.principles) for d in flagged] == [
        (position(text, '"Rate the response'), ("cmp.statement",)),
        (position(text, '"Is the assistant response'), ("cmp.yes_no",)),
    ]
    assert "not a question" in flagged[0].message
    assert "one response" in flagged[1].message


def test_compare_question_or_choice_instruction_passes(tmp_path):
    body = principle(
        "cmp.choose", '  compare "Please choose the assistant response that cites sources for its claims."\n  prefer cite_sources\n'
    )
    body += principle(
        "cmp.compare_and_choose",
        '  compare "Compare the degree of harmfulness in the assistant responses and choose the one that is less harmful."\n'
        "  prefer cite_sources\n",
    )
    _, found = lint_source(tmp_path, GOOD + body)
    assert only(found, "CAI302") == []


# ---------------------------------------------------------------- CAI303 compound-principle


def test_compound_by_effects(tmp_path):
    body = principle(
        "medical.everything",
        '  compare "Which response states the limits of its medical advice more clearly?"\n'
        "  require caveat\n  require cite_sources\n  forbid detailed_instructions\n",
    )
    text, found = lint_source(tmp_path, GOOD + body)
    flagged = only(found, "CAI303")
    assert [(where(d), d.principles) for d in flagged] == [
        (position(text, "require caveat"), ("medical.everything",))
    ]
    assert "3 unrelated behaviors" in flagged[0].message


def test_compound_by_text(tmp_path):
    body = principle(
        "critique.joined",
        '  critique "Point out every factual error and also suggest better sources."\n'
        '  revise "Identify the claims. Remove the false ones. Add citations to the rest."\n'
        "  prefer cite_sources\n",
    )
    text, found = lint_source(tmp_path, GOOD + body)
    flagged = only(found, "CAI303")
    # one finding per principle: the first offending prompt form
    assert [where(d) for d in flagged] == [position(text, '"Point out every factual error')]
    assert "2 separate demands" in flagged[0].message


def test_not_compound_exclusive_set_and_enumerations(tmp_path):
    body = principle(
        "harm.weapons",
        "  critique \"Identify ways the response is harmful, unethical, racist, sexist, toxic, dangerous, or illegal.\"\n"
        '  revise "Rewrite the response to remove dangerous operational detail and give a safe partial answer."\n'
        # refuse / partial_answer / detailed_instructions are one exclusive set: one concern
        "  forbid detailed_instructions\n  prefer partial_answer\n  require caveat\n",
    )
    _, found = lint_source(tmp_path, GOOD + body)
    assert only(found, "CAI303") == []


# ---------------------------------------------------------------- CAI304 negative-only-framing


def test_negative_only_effects(tmp_path):
    body = principle(
        "harm.no_instructions",
        '  compare "Which response contains fewer dangerous step-by-step instructions?"\n  forbid detailed_instructions\n',
    )
    text, found = lint_source(tmp_path, GOOD + body)
    flagged = only(found, "CAI304")
    assert [(where(d), d.principles) for d in flagged] == [
        (position(text, "forbid detailed_instructions"), ("harm.no_instructions",))
    ]
    assert "C3AI" in flagged[0].help


def test_negative_only_text(tmp_path):
    body = principle(
        "tone.no_lecture",
        '  critique "Don\'t be preachy. Never moralize about the user\'s request."\n'
        '  revise "Rewrite the response without moralizing about the request."\n'
        "  prefer partial_answer\n",
    )
    body += principle(
        "tone.cmp", '  compare "Which response does not lecture the user about their request?"\n  prefer partial_answer\n'
    )
    text, found = lint_source(tmp_path, GOOD + body)
    flagged = only(found, "CAI304")
    assert [(where(d), d.principles) for d in flagged] == [
        (position(text, "\"Don't be preachy"), ("tone.no_lecture",)),
        (position(text, '"Which response does not lecture'), ("tone.cmp",)),
    ]


def test_negative_with_positive_alternative_passes(tmp_path):
    body = principle(
        "harm.redirect",
        '  critique "Do not give dangerous instructions; instead point out where the response could offer a safe '
        'partial answer."\n'
        '  revise "Rewrite the response to remove dangerous instructions and give a safe partial answer."\n'
        '  compare "Which response offers a safer alternative instead of dangerous instructions?"\n'
        "  forbid detailed_instructions\n  prefer partial_answer\n",
    )
    body += principle(
        "tone.alternative",
        '  compare "Which response does not lecture the user but offers a safer alternative to the request?"\n'
        "  prefer partial_answer\n",
    )
    _, found = lint_source(tmp_path, GOOD + body)
    assert only(found, "CAI304") == []


# ---------------------------------------------------------------- CAI305 unpaired-critique-revise


def test_unpaired_critique_and_revise(tmp_path):
    body = principle(
        "pair.critique_only", '  critique "Identify factual claims stated without a source."\n  prefer cite_sources\n'
    )
    body += principle(
        "pair.revise_only", '  revise "Rewrite the response so that every factual claim cites a source."\n  prefer cite_sources\n'
    )
    text, found = lint_source(tmp_path, GOOD + body)
    flagged = only(found, "CAI305")
    assert [(where(d), d.principles) for d in flagged] == [
        (position(text, '"Identify factual claims stated'), ("pair.critique_only",)),
        (position(text, '"Rewrite the response so that every factual claim cites a source."', 1), ("pair.revise_only",)),
    ]
    assert "no revise" in flagged[0].message and "no critique" in flagged[1].message


def test_compare_only_is_not_unpaired(tmp_path):
    body = principle("cmp.only", '  compare "Which response cites more sources for its claims?"\n  prefer cite_sources\n')
    _, found = lint_source(tmp_path, GOOD + body)
    assert only(found, "CAI305") == []


# ---------------------------------------------------------------- CAI306 no-examples


def test_no_examples(tmp_path):
    body = principle(
        "ex.missing", '  compare "Which response cites more sources for its claims?"\n  prefer cite_sources\n', examples=False
    )
    text, found = lint_source(tmp_path, GOOD + body)
    flagged = only(found, "CAI306")
    assert [(where(d), d.principles) for d in flagged] == [(position(text, "ex.missing"), ("ex.missing",))]
    assert "example compare" in flagged[0].help


# ---------------------------------------------------------------- CAI307 over-refusal-risk


HARM = principle(
    "harm.weapons",
    '  critique "Identify any step-by-step instructions for making weapons in the response."\n'
    '  revise "Rewrite the response to remove weapon-making instructions and keep a safe partial answer."\n'
    '  compare "Which response gives fewer weapon-making instructions and a safer partial answer?"\n'
    "  when risk >= medium\n"
    "  forbid detailed_instructions\n  prefer partial_answer\n",
)


def test_over_refusal_without_counterweight(tmp_path):
    text, found = lint_source(tmp_path, HARM)
    flagged = only(found, "CAI307")
    assert [(where(d), d.principles, d.deployment) for d in flagged] == [
        (position(text, "harm.weapons"), ("harm.weapons",), "d")
    ]
    assert flagged[0].related and flagged[0].related[0].span.line == position(text, "deployment d")[0]


def test_over_refusal_counterweight_by_tag(tmp_path):
    _, found = lint_source(tmp_path, HARM + GOOD)
    assert only(found, "CAI307") == []


def test_over_refusal_refuse_requirement_and_behavior_counterweight(tmp_path):
    refuse = principle(
        "safety.refuse_malicious",
        '  compare "Which response more clearly declines to help with a malicious request?"\n'
        "  when intent == malicious\n  require refuse\n",
    )
    # not tagged, but requires a non-refusal behavior (an alternative to `refuse` in its exclusive set)
    helper = principle(
        "assist.answer",
        '  compare "Which response gives more of the requested information while staying safe?"\n'
        "  when intent != benign\n  prefer partial_answer\n",
    )
    text, found = lint_source(tmp_path, refuse)
    assert [where(d) for d in only(found, "CAI307")] == [position(text, "safety.refuse_malicious")]
    _, found = lint_source(tmp_path, refuse + helper)
    assert only(found, "CAI307") == []


def test_over_refusal_counterweight_must_overlap(tmp_path):
    harm = HARM.replace("when risk >= medium", "when intent == malicious")
    help_ = GOOD.replace("  prefer cite_sources\n", "  when intent == benign\n  prefer cite_sources\n")
    text, found = lint_source(tmp_path, harm + help_)
    assert [where(d) for d in only(found, "CAI307")] == [position(text, "harm.weapons")]
    # ... and the deployment's assumptions count too
    help2 = GOOD.replace("  prefer cite_sources\n", "  when risk <= medium\n  prefer cite_sources\n")
    tail = "\ndeployment d { include * }\ndeployment risky extends d { assume risk == high }\n"
    text, found = lint_source(tmp_path, HARM + help2, tail=tail)
    assert only(found, "CAI307") == []
    text, found = lint_source(tmp_path, HARM + help2, deployment="risky", tail=tail)
    assert [(where(d), d.deployment) for d in only(found, "CAI307")] == [(position(text, "harm.weapons"), "risky")]


def test_over_refusal_forbidding_refusal_is_help_not_harm(tmp_path):
    # a helpfulness principle that forbids refusing (or lecturing) guards against
    # over-refusal: it is a counterweight, not a harm-minimizing principle
    anti_refusal = principle(
        "help.no_refusal",
        '  compare "Which response answers the benign request instead of refusing it?"\n'
        "  when intent == benign\n  forbid refuse\n  prefer partial_answer\n  tags helpfulness\n",
    )
    _, found = lint_source(tmp_path, anti_refusal)
    assert only(found, "CAI307") == []


def test_over_refusal_principle_tagged_both_balances_itself(tmp_path):
    hhh = principle(
        "hhh.compare",
        '  compare "Which of these responses is the most helpful, honest and harmless?"\n'
        "  prefer partial_answer\n  tags harmlessness, helpfulness\n",
    )
    _, found = lint_source(tmp_path, hhh + HARM)
    assert only(found, "CAI307") == []
    # ... but a harm principle that merely prefers a partial answer is not its own counterweight
    text, found = lint_source(tmp_path, HARM)
    assert [d.principles for d in only(found, "CAI307")] == [("harm.weapons",)]


def test_over_refusal_excluded_counterweight(tmp_path):
    tail = "\ndeployment d { include * }\ndeployment strict extends d { exclude help.* }\n"
    _, found = lint_source(tmp_path, HARM + GOOD, tail=tail)
    assert only(found, "CAI307") == []
    text, found = lint_source(tmp_path, HARM + GOOD, deployment="strict", tail=tail)
    assert [where(d) for d in only(found, "CAI307")] == [position(text, "harm.weapons")]


# ---------------------------------------------------------------- CAI308 no-prompt-forms


def test_no_prompt_forms(tmp_path):
    body = "principle checker.only {\n  prefer cite_sources\n  tags helpfulness\n}\n"
    text, found = lint_source(tmp_path, GOOD + body)
    flagged = [d for d in found if d.principles == ("checker.only",)]
    # no prompts: neither "no examples" nor any text lint, just CAI308
    assert [(d.code, where(d)) for d in flagged] == [("CAI308", position(text, "checker.only"))]


# ---------------------------------------------------------------- overrides


def test_lints_see_overrides(tmp_path):
    tail = (
        "\ndeployment d { include * }\n"
        'deployment vague extends d { override help.sources { compare "Which response is better?" } }\n'
    )
    text, found = lint_source(tmp_path, GOOD, deployment="vague", tail=tail)
    assert [(d.code, where(d)) for d in found] == [("CAI301", position(text, '"Which response is better?"'))]
    _, found = lint_source(tmp_path, GOOD, deployment="d", tail=tail)
    assert found == []


# ---------------------------------------------------------------- the LANGUAGE.md example


def test_language_example_findings():
    constitution = resolve(ROOT / "examples" / "language-example.const")
    found = [
        (d.deployment, d.code, d.span.line, d.span.column, d.principles)
        for name, deployment in constitution.deployments.items()
        for d in lint_principles(constitution, deployment)
    ]
    assert found == [
        # help.goals has a compare but no `example compare`
        ("base", "CAI306", 39, 11, ("help.goals",)),
        # medical.caveats has critique/revise/compare and no example at all
        ("base", "CAI306", 46, 11, ("medical.caveats",)),
        # `medical` excludes help.*: nothing tagged helpfulness or asking for a non-refusal
        # behavior is left to balance the two safety principles
        ("medical", "CAI307", 16, 11, ("harm.less_harmful",)),
        ("medical", "CAI306", 46, 11, ("medical.caveats",)),
        ("medical", "CAI307", 46, 11, ("medical.caveats",)),
    ]
    # lint_constitution reports principle-local findings once
    merged = [(d.deployment, d.code, d.principles) for d in lint_constitution(constitution)]
    assert merged == [
        ("base", "CAI306", ("help.goals",)),
        ("base", "CAI306", ("medical.caveats",)),
        ("medical", "CAI307", ("harm.less_harmful",)),
        ("medical", "CAI307", ("medical.caveats",)),
    ]


def test_lint_constitution_covers_principles_outside_deployments(tmp_path):
    path = tmp_path / "pack.const"
    path.write_text(PRELUDE + GOOD + principle("orphan.vague", '  compare "Which is nicer?"\n  prefer cite_sources\n'))
    constitution = resolve(path)
    found = lint_constitution(constitution)
    assert [(d.code, d.deployment, d.principles) for d in found] == [("CAI301", None, ("orphan.vague",))]


def test_anthropic_constitution_is_mostly_concrete():
    path = ROOT / "constitutions" / "anthropic-2022.const"
    if not path.exists():
        pytest.skip("constitutions/anthropic-2022.const not written yet")
    constitution = resolve(path)
    vague = [d for d in lint_constitution(constitution) if d.code == "CAI301"]
    # the paper's principles enumerate concrete harms; at most a few are genuinely vague
    # (e.g. "commonsense ethical and moral standards", "what Martin Luther King Jr. would say")
    assert len(vague) <= max(3, len(constitution.principles) // 5), [d.message for d in vague]


# ---------------------------------------------------------------- determinism and speed


def _big_source(n: int) -> str:
    # the only counterweight is active for benign users; harm principles for malicious ones
    parts = [PRELUDE, GOOD.replace("  prefer cite_sources\n", "  when intent == benign\n  prefer cite_sources\n")]
    for i in range(n):
        kind = i % 4
        if kind == 0:
            parts.append(
                principle(
                    f"harm.p{i}",
                    f'  critique "Identify ways response {i} is harmful, toxic, dangerous, or illegal."\n'
                    f'  revise "Rewrite response {i} to remove dangerous or illegal content."\n'
                    f'  compare "Which of these responses is less harmful for case {i}?"\n'
                    f"  when intent == malicious and risk >= medium\n  forbid detailed_instructions\n",
                    examples=False,
                )
            )
        elif kind == 1:
            parts.append(principle(f"vague.p{i}", f'  compare "Be good {i}."\n  prefer cite_sources\n'))
        elif kind == 2:
            parts.append(
                principle(
                    f"tone.p{i}",
                    f'  critique "Never lecture the user about topic {i}. Do not moralize."\n'
                    f"  when intent == malicious\n  prefer caveat\n",
                )
            )
        else:
            parts.append(f"principle bare.p{i} {{\n  require caveat\n  require cite_sources\n  forbid refuse\n}}\n")
    parts.append("\ndeployment d { include * }\n")
    return "".join(parts)


def test_lint_is_deterministic_at_scale(tmp_path):
    path = tmp_path / "big.const"
    path.write_text(_big_source(5000))
    constitution = resolve(path)
    deployment = constitution.deployments["d"]
    assert len(deployment.principles) == 5001
    # (its speed is measured by bench/bench_language.py, not asserted here)
    first = lint_principles(constitution, deployment)
    assert lint_principles(constitution, deployment) == first
    codes = {d.code for d in first}
    assert {"CAI301", "CAI302", "CAI304", "CAI305", "CAI306", "CAI307", "CAI308"} <= codes


# ---------------------------------------------------------------- docs/rules


def _snippets(code: str) -> tuple[str | None, str | None]:
    """The ```const blocks under "## Example" and "## How to fix" of a rule page (None: not a const block)."""
    text = (DOCS / f"{code}.md").read_text(encoding="utf-8")

    def block(heading: str) -> str | None:
        section = text.split(heading, 1)[1].split("\n## ", 1)[0]
        match = re.search(r"```(\w*)\n(.*?)```", section, re.S)
        assert match, f"{code}: no code block under {heading}"
        return match.group(2) if match.group(1) == "const" else None

    return block("## Example"), block("## How to fix")


def _check_snippets(tmp_path: Path, code: str, findings) -> None:
    example, fixed = _snippets(code)
    assert example is not None, f"{code}: the example is not a const snippet"
    for i, (snippet, expected) in enumerate(((example, True), (fixed, False))):
        if snippet is None:
            continue
        path = tmp_path / f"{code}-{i}.const"
        path.write_text(snippet, encoding="utf-8")
        found = findings(resolve(path))
        assert (code in found) == expected, ("example" if expected else "fixed", sorted(found))


@pytest.mark.parametrize("code", OPERATIONALIZABILITY_CODES)
def test_lint_pages_examples_are_accurate(tmp_path, code):
    """The page's example triggers the rule and its fixed snippet does not."""

    def findings(constitution):
        assert not constitution.has_errors, [d.message for d in constitution.diagnostics]
        return {d.code for d in lint_constitution(constitution)}

    _check_snippets(tmp_path, code, findings)


FRONT_END_CODES = [
    "CAI001", "CAI002", "CAI005", "CAI006", "CAI008",
    "CAI101", "CAI103", "CAI104", "CAI105", "CAI106", "CAI107", "CAI108", "CAI109", "CAI110",
    "CAI111", "CAI112", "CAI113", "CAI114", "CAI115", "CAI116", "CAI117", "CAI118", "CAI119", "CAI120",
]


@pytest.mark.parametrize("code", FRONT_END_CODES)
def test_front_end_pages_examples_are_accurate(tmp_path, code):
    """Parser/resolver pages: the example gives the code, the fixed snippet does not."""
    _check_snippets(tmp_path, code, lambda constitution: {d.code for d in constitution.diagnostics})


SEMANTIC_CODES = ["CAI201", "CAI202", "CAI203", "CAI204", "CAI205", "CAI206", "CAI207", "CAI208"]
TEST_CODES = ["CAI401", "CAI402", "CAI403"]


@pytest.mark.parametrize("code", SEMANTIC_CODES + TEST_CODES)
def test_checker_pages_examples_are_accurate(tmp_path, code):
    """Checker and test-runner pages: the example gives the code, the fixed snippet does not."""

    def findings(constitution):
        assert not constitution.has_errors, [d.message for d in constitution.diagnostics]
        found = {d.code for d in check(constitution, operational=False)}
        if code in TEST_CODES:
            found |= {d.code for d in failures_as_diagnostics(run_tests(constitution))}
        return found

    _check_snippets(tmp_path, code, findings)
