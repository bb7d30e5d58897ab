"""CAI312 near-duplicate-principle: two principles of one deployment (or of the root
file) whose prompt texts are near-identical.

A principle's *shingles* are the word bigrams of each of its prompt texts (critique,
revise, compare), tagged with the field, after the lints' normalisation (lowercase,
words only: :func:`~cai_dsl.check.operational.lexicon.tokenize`); a one-word text is
its one word. Two principles are near-duplicates when the Jaccard similarity of their
shingle sets is at least ``NEAR_DUPLICATE_THRESHOLD``. Candidates come from a prefix
filter (rarest shingles first), so the check stays near-linear on large files and is
exact: every pair over the threshold is found, within a budget of comparisons (``MAX_COMPARISONS``; past it a
warning names the first principle not compared). The finding is reported once per later
principle, against its closest earlier twin (the next ones as related locations, at most
``MAX_RELATED``), so a file of n copies gets n - 1 warnings, not n(n - 1)/2.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Iterable

from cai_dsl.check.operational.context import prompt_texts
from cai_dsl.check.operational.lexicon import tokenize
from cai_dsl.diagnostics import Diagnostic, Related, rules
from cai_dsl.lang import ast

RULE = rules.NEAR_DUPLICATE

#: Jaccard similarity of two principles' shingle sets at or above which they are near-duplicates.
NEAR_DUPLICATE_THRESHOLD = 0.7
#: At most this many further earlier near-duplicates are named as related locations.
MAX_RELATED = 3


def shingles(p: ast.Principle) -> frozenset[tuple[str, str, str]]:
    """The (field, word, next word) bigrams of ``p``'s prompt texts."""
    out: set[tuple[str, str, str]] = set()
    for field, text in prompt_texts(p):
        words = tokenize(text.value)
        if len(words) == 1:
            out.add((field, words[0], ""))
        out.update((field, a, b) for a, b in zip(words, words[1:]))
    return frozenset(out)


def jaccard(a: frozenset, b: frozenset) -> float:
    if not (a or b):
        return 0.0
    common = len(a & b)
    return common / (len(a) + len(b) - common)


#: The most shingle-set comparisons one check makes: a file of thousands of templated principles (all of them
#: candidates of each other) would otherwise take minutes; past it the rest is not checked, and a warning says so.
MAX_COMPARISONS = 1_000_000


def near_duplicates(
    principles: Iterable[ast.Principle], budget: int | None = None
) -> tuple[list[tuple[ast.Principle, ast.Principle, float]], tuple[int, int, ast.Principle] | None]:
    """Every pair (earlier, later) at or above the threshold, in source order of the later one, and, when the
    ``budget`` of comparisons ran out, (principles checked, principles in all, the first one not checked)."""
    budget = MAX_COMPARISONS if budget is None else budget
    vocabulary: dict[tuple, int] = {}
    items = [(p, frozenset(vocabulary.setdefault(sh, len(vocabulary)) for sh in shingles(p))) for p in principles]
    items = [(p, s) for p, s in items if s]
    frequency: dict[tuple, int] = defaultdict(int)
    for _, s in items:
        for sh in s:
            frequency[sh] += 1
    index: dict[int, list[int]] = defaultdict(list)
    out = []
    compared = 0
    for i, (p, s) in enumerate(items):
        ordered = sorted(s, key=lambda sh: (frequency[sh], sh))
        prefix = ordered[: len(ordered) - math.ceil(NEAR_DUPLICATE_THRESHOLD * len(ordered)) + 1]
        candidates = sorted({j for sh in prefix for j in index[sh]})
        compared += len(candidates)
        if compared > budget:
            return out, (i, len(items), p)
        for j in candidates:
            other, other_s = items[j]
            score = jaccard(s, other_s)
            if score >= NEAR_DUPLICATE_THRESHOLD and other.id.name != p.id.name:
                out.append((other, p, score))
        for sh in prefix:
            index[sh].append(i)
    return out, None


def _finding(later: ast.Principle, twins: list[tuple[ast.Principle, float]], where: dict) -> Diagnostic:
    """One warning on ``later``: its closest earlier twin first, the next ones as related locations."""
    (earlier, score), others = twins[0], twins[1:]
    more = f"; also near-identical to {len(others)} other earlier principle(s)" if others else ""
    return RULE(
        f"`{later.id.name}` has near-identical prompts to `{earlier.id.name}` ({score:.0%} of word pairs shared){more}",
        later.id.span,
        help=(
            "two principles that say the same thing are sampled and weighed twice, and a later edit to one "
            "silently diverges from the other; merge them (keep one and `override` its fields where a "
            f"deployment needs a variant), or make their criteria distinct (threshold {NEAR_DUPLICATE_THRESHOLD:.0%})"
        ),
        related=[
            Related(span=p.id.span, message=f"`{p.id.name}` declared here ({s:.0%})" if i else f"`{p.id.name}` declared here")
            for i, (p, s) in enumerate(twins[: MAX_RELATED + 1])
        ],
        principles=[later.id.name, earlier.id.name],
        **where,
    )


def check_principles(principles: Iterable[ast.Principle], where: dict) -> list[Diagnostic]:
    """One CAI312 per principle with an earlier near-duplicate, in source order of the later one."""
    twins: dict[str, tuple[ast.Principle, list[tuple[ast.Principle, float]]]] = {}
    pairs, cut = near_duplicates(principles)
    for earlier, later, score in pairs:
        twins.setdefault(later.id.name, (later, []))[1].append((earlier, score))
    out = []
    for later, found in twins.values():
        order = {id(p): i for i, (p, _) in enumerate(found)}  # source order breaks ties
        out.append(_finding(later, sorted(found, key=lambda t: (-t[1], order[id(t[0])])), where))
    if cut is not None:
        checked, total, first = cut
        out.append(RULE(
            f"near-duplicate check stopped after {MAX_COMPARISONS:,} comparisons: {checked:,} of {total:,} principles "
            f"checked; `{first.id.name}` and the {total - checked - 1:,} after it were not compared",
            first.id.span,
            help="so many principles share most of their wording that every one is a candidate twin of every other; "
                 "write their prompts as distinct criteria, or split the file",
            **where,
        ))
    return out
