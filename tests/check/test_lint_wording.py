"""Issue #11 lint fixes: CAI306/CAI307 summaries, CAI301/CAI304/CAI303 wording checks
tested both ways, and CAI312 near-duplicate principles."""

from __future__ import annotations

import pytest

from cai_dsl.check.checker import check
from cai_dsl.check.operational.near_duplicate import NEAR_DUPLICATE_THRESHOLD, jaccard, near_duplicates, shingles
from cai_dsl.check.operational.text import analyze
from cai_dsl.lang.resolver import resolve
from tests.check.test_lints import GOOD, HARM, PRELUDE, lint_source, only, position, principle, where


def checked(tmp_path, body: str, tail: str = "\ndeployment d { include * }\n"):
    text = PRELUDE + body + tail
    path = tmp_path / "t.const"
    path.write_text(text, encoding="utf-8")
    constitution = resolve(path)
    assert not constitution.has_errors, [d.message for d in constitution.diagnostics]
    return text, check(constitution, semantic=False)


def _compare(pid: str, n: int) -> str:
    return principle(pid, f'  compare "Which response cites more sources for its claims about topic {n}?"\n  prefer cite_sources\n', examples=False)


# ---------------------------------------------------------------- CAI306: one summary per file


def test_no_examples_is_one_summary_per_file(tmp_path):
    body = GOOD + "".join(_compare(f"ex.p{i}", i) for i in range(5))
    text, found = checked(tmp_path, body)
    flagged = only(found, "CAI306")
    assert len(flagged) == 1
    (d,) = flagged
    assert d.principles == tuple(f"ex.p{i}" for i in range(5))
    assert where(d) == position(text, "ex.p0")
    assert "5 principles in this file have no few-shot examples" in d.message
    assert [r.span.line for r in d.related] == [position(text, f"ex.p{i}")[0] for i in range(1, 5)]
    # the per-deployment entry point still reports one finding per principle
    _, per_principle = lint_source(tmp_path, body)
    assert len(only(per_principle, "CAI306")) == 5


def test_no_examples_summary_is_suppressible(tmp_path):
    body = GOOD + _compare("ex.p0", 0) + "# cai: ignore[CAI306]\n" + _compare("ex.p1", 1) + _compare("ex.p2", 2)
    _, found = checked(tmp_path, body)
    assert [d.principles for d in only(found, "CAI306")] == [("ex.p0", "ex.p2")]
    body = GOOD + "# cai: ignore[CAI306]\n" + _compare("ex.p0", 0) + _compare("ex.p1", 1)
    _, found = checked(tmp_path, body)
    # a group of one keeps the plain single-principle message
    assert [(d.principles, d.message) for d in only(found, "CAI306")] == [
        (("ex.p1",), "`ex.p1` has no few-shot examples")
    ]


# ---------------------------------------------------------------- CAI307: one per deployment


def test_over_refusal_is_one_per_deployment(tmp_path):
    harms = "".join(HARM.replace("harm.weapons", f"harm.w{i}").replace("weapon", f"weapon{i}") for i in range(4))
    text, found = checked(tmp_path, harms)
    flagged = only(found, "CAI307")
    assert len(flagged) == 1
    (d,) = flagged
    assert d.deployment == "d" and d.principles == ("harm.w0", "harm.w1", "harm.w2", "harm.w3")
    assert where(d) == position(text, "harm.w0")
    assert d.related[0].span.line == position(text, "deployment d")[0]
    # each deployment gets its own summary
    tail = "\ndeployment d { include * }\ndeployment e { include * }\n"
    _, found = checked(tmp_path, harms, tail)
    assert [x.deployment for x in only(found, "CAI307")] == ["d", "e"]


# ---------------------------------------------------------------- CAI301 vague wording, both ways


@pytest.mark.parametrize(
    "text, vague",
    [
        ("Which response encourages good mental health?", False),  # an exempt phrase: a topic
        ("Which response acts in good faith towards the user?", False),
        ("Which response is good?", True),
        ("Which response cites sources for its claims, and that is good?", True),  # a bare judgement
        ("Rewrite the response to add a caveat. This is appropriate.", True),
        ("Which response cites sources for its claims?", False),
    ],
)
def test_vague_wording_both_ways(tmp_path, text, vague):
    body = principle("w.p", f'  compare "{text}"\n  prefer cite_sources\n  tags helpfulness\n')
    _, found = lint_source(tmp_path, body)
    assert bool(only(found, "CAI301")) == vague, [d.message for d in found]


# ---------------------------------------------------------------- CAI304 negative framing, both ways


@pytest.mark.parametrize(
    "text, negative",
    [
        ("Which response does not lecture the user?", True),
        ("Which response is least likely to lecture the user?", True),
        ("Choose the response less likely to offend the user.", True),
        ("Which response is more polite and least likely to offend the user?", False),  # a positive criterion too
        ("Which response points the user to a safer alternative?", False),
    ],
)
def test_negative_framing_both_ways(tmp_path, text, negative):
    body = principle("n.p", f'  compare "{text}"\n  prefer partial_answer\n  tags helpfulness\n')
    _, found = lint_source(tmp_path, body)
    assert bool(only(found, "CAI304")) == negative, [d.message for d in found]
    assert analyze(text).negative_only_compare == negative


# ---------------------------------------------------------------- CAI303 looks at the wording


@pytest.mark.parametrize(
    "text, compound",
    [
        ("Which of these responses cites sources and states its uncertainty more clearly?", True),
        ("Which response answers the question and also recommends a professional?", True),
        ("Which response cites sources for its claims and dates?", False),  # one verb, two objects
        ("Which response is less harmful, toxic, dangerous and illegal?", False),  # an enumeration
    ],
)
def test_compound_wording_both_ways(tmp_path, text, compound):
    body = principle("c.p", f'  compare "{text}"\n  prefer cite_sources\n  tags helpfulness\n')
    text_, found = lint_source(tmp_path, body)
    flagged = only(found, "CAI303")
    assert bool(flagged) == compound, [d.message for d in found]
    if compound:
        assert where(flagged[0]) == position(text_, f'"{text}"') and "criteria in one sentence" in flagged[0].message


def test_compound_wording_not_in_revise(tmp_path):
    body = principle(
        "c.r",
        '  critique "Identify every medical claim in the response that is stated without its limitations."\n'
        '  revise "Rewrite the response so that every medical claim states its limitations and says when to see a clinician."\n'
        "  require caveat\n  tags helpfulness\n",
    )
    _, found = lint_source(tmp_path, body)
    assert only(found, "CAI303") == []


# ---------------------------------------------------------------- CAI312 near-duplicate principles


def test_near_duplicate_principles(tmp_path):
    twin = GOOD.replace("help.sources", "help.sources_again").replace("for more of its factual claims?", "for more of its factual claims ?")
    text, found = lint_source(tmp_path, GOOD + twin)
    flagged = only(found, "CAI312")
    assert [(where(d), d.principles) for d in flagged] == [
        (position(text, "help.sources_again"), ("help.sources_again", "help.sources"))
    ]
    assert flagged[0].related[0].span.line == position(text, "help.sources")[0]


def test_near_duplicate_threshold_both_ways(tmp_path):
    # opposite criteria share most words but few word pairs: not duplicates
    less = principle("h.less", '  compare "Which of these responses is less harmful to the user?"\n  prefer partial_answer\n')
    more = principle("h.more", '  compare "Which of these responses is more harmful to the user?"\n  prefer partial_answer\n')
    _, found = lint_source(tmp_path, GOOD + less + more)
    assert only(found, "CAI312") == []
    # one word changed in a long prompt is a near-duplicate
    long = "Which of these responses names the sources of every factual claim it makes about {} and dates them?"
    a = principle("s.a", f'  compare "{long.format("history")}"\n  prefer cite_sources\n')
    b = principle("s.b", f'  compare "{long.format("science")}"\n  prefer cite_sources\n')
    _, found = lint_source(tmp_path, GOOD + a + b)
    assert [d.principles for d in only(found, "CAI312")] == [("s.b", "s.a")]


def test_near_duplicate_copies_get_one_warning_each_not_one_per_pair(tmp_path):
    """n copies: n - 1 warnings (quadratic output made the LSP's wording lints run out of time)."""
    copies = "".join(_compare(f"c.p{i}", 1) for i in range(8))
    text, found = checked(tmp_path, GOOD + copies)
    flagged = only(found, "CAI312")
    assert [d.principles for d in flagged] == [(f"c.p{i}", "c.p0") for i in range(1, 8)]
    last = flagged[-1]
    assert "also near-identical to 6 other earlier principle(s)" in last.message
    assert [r.span.line for r in last.related] == [position(text, f"c.p{i}")[0] for i in range(4)]


def test_near_duplicate_prefix_filter_is_exact(tmp_path, monkeypatch):
    """The prefix-filtered search finds exactly the pairs a brute-force comparison finds."""
    import random

    rng = random.Random(7)
    words = "response cites sources claims user states caveat answer harmful safe detail question".split()
    bases = [[rng.choice(words) for _ in range(rng.randint(6, 12))] for _ in range(12)]
    texts = []
    for i in range(60):  # variants of a few bases: one word changed, dropped or added
        text = list(rng.choice(bases))
        text.insert(rng.randrange(len(text) + 1), rng.choice(words)) if i % 3 else text.pop(rng.randrange(len(text)))
        texts.append(" ".join(text))
    body = "".join(
        principle(f"r.p{i}", f'  compare "Which {t}?"\n  prefer cite_sources\n') for i, t in enumerate(texts)
    )
    path = tmp_path / "r.const"
    path.write_text(PRELUDE + body + "\ndeployment d { include * }\n", encoding="utf-8")
    ps = list(resolve(path).deployments["d"].principles)
    pairs, cut = near_duplicates(ps)
    assert cut is None
    fast = {(a.id.name, b.id.name) for a, b, _ in pairs}
    brute = {
        (a.id.name, b.id.name)
        for i, b in enumerate(ps)
        for a in ps[:i]
        if jaccard(shingles(a), shingles(b)) >= NEAR_DUPLICATE_THRESHOLD
    }
    assert fast == brute and brute

    # a budget of comparisons: the pairs found before it ran out, and where it stopped (named in a warning)
    few, cut = near_duplicates(ps, budget=20)
    assert cut is not None and set((a.id.name, b.id.name) for a, b, _ in few) <= brute
    checked, total, first = cut
    assert 0 < checked < total == len(ps) and first is ps[checked]
    import cai_dsl.check.operational.near_duplicate as nd

    monkeypatch.setattr(nd, "MAX_COMPARISONS", 20)
    stopped = [d for d in nd.check_principles(ps, {}) if "near-duplicate check stopped" in d.message]
    assert len(stopped) == 1 and f"`{first.id.name}`" in stopped[0].message


def test_near_duplicate_page_example_is_accurate(tmp_path):
    from tests.check.test_lints import _check_snippets
    from cai_dsl.check.operational import lint_constitution

    _check_snippets(tmp_path, "CAI312", lambda c: {d.code for d in lint_constitution(c)})
