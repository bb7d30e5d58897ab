"""What the lints need to know about one prompt text: words, vague terms, cues,
imperative demands and negative framing, computed once per text (cached)."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import NamedTuple

from cai_dsl.check.operational.lexicon import (
    CHOICE_IMP,
    CHOICE_REF,
    CLAUSE_BREAK_WORDS,
    CRITERION_JOIN_SEQS,
    CUES,
    FILLERS,
    IMPERATIVE,
    JOIN_WORDS,
    JOINS,
    LEX_RE,
    NEG_OPENERS,
    NEG_PREDICATE_RE,
    NEG_WORDS,
    JUDGEMENT_COPULAS,
    JUDGEMENT_INTENSIFIERS,
    QUESTION_OPENERS,
    RESPONSE_VERBS,
    VAGUE,
    VAGUE_EXEMPT,
    VAGUE_EXEMPT_WORDS,
    VAGUE_TERMS,
)

# a bare judgement: "..., and that is good", "this is appropriate." (see JUDGEMENT_SUBJECTS)
_VAGUE_WORD = "(?:" + "|".join(re.escape(t) for t in VAGUE_TERMS if " " not in t) + ")"
JUDGEMENT_RE = re.compile(
    r"(?:^|[,;:.!?]\s*|\b(?:and|but|so)\s+)(?:that|this|it|(?<=, )which)"
    r"(?:'s|\s+(?:" + "|".join(re.escape(c) for c in JUDGEMENT_COPULAS) + r"))"
    r"(?:\s+(?:" + "|".join(JUDGEMENT_INTENSIFIERS) + r"))*"
    r"\s+(" + _VAGUE_WORD + r"(?:\s*(?:,|and|or)\s*" + _VAGUE_WORD + r")*)\s*(?=[,;:.!?)]|$)"
)
_SENTENCE_RE = re.compile(r"[.!?;:]+(?=\s|$)|\n")


class TextFacts(NamedTuple):
    """What the lints need to know about one prompt text (computed once per text)."""

    words: int
    vague: tuple[str, ...]
    has_cue: bool
    demands: int
    joined_demands: bool
    negative_only: bool  # every clause is a negated demand (openers only)
    negative_only_compare: bool  # ... also counting "the response that does not ..."
    judgements: tuple[str, ...]  # bare judgements ("that is good"), vague even beside a cue
    criteria: int  # most criteria one sentence joins ("cites sources and states ...")
    tokens: frozenset[str]
    joined: str


def _strip_fillers(tokens: tuple[str, ...]) -> tuple[str, ...]:
    while tokens:
        n = FILLERS.opens(tokens)
        if not n:
            break
        tokens = tokens[n:]
    return tokens


def _opens_join(tokens: tuple[str, ...], i: int) -> int:
    for join in JOINS:
        if tokens[i : i + len(join)] == join:
            return len(join)
    return 0


def _clause_facts(clause: tuple[str, ...], contrast: bool) -> tuple[int, int, bool, bool, bool]:
    """(imperative demands, joined demands, negated, positive, negated in a compare) of one clause.

    A ``contrast`` clause follows "but" or "instead" ("does not lecture but offers an
    alternative"): unless negated itself, it names what to do and counts as positive.
    """
    clause = _strip_fillers(clause)
    if not clause:
        return 0, 0, False, False, False
    imperative = clause[0] in IMPERATIVE
    joins = 0
    if not JOIN_WORDS.isdisjoint(clause):
        for i in range(1, len(clause) - 1):
            n = _opens_join(clause, i)
            if n and i + n < len(clause) and clause[i + n] in IMPERATIVE:
                joins += 1
    negated = NEG_OPENERS.opens(clause) > 0
    text = " ".join(clause)
    positive = not negated and (
        contrast or imperative or clause[0] in QUESTION_OPENERS or CHOICE_REF.any(clause, f" {text} ")
    )
    negated_cmp = negated or (
        (not NEG_WORDS.isdisjoint(clause) or "n't" in text) and NEG_PREDICATE_RE.search(text) is not None
    )
    return int(imperative), joins, negated, positive, negated_cmp


def _vague_terms(words: tuple[str, ...], joined: str) -> tuple[str, ...]:
    """The vague terms of a text, not counting those inside ``VAGUE_EXEMPT_PHRASES``."""
    if not VAGUE_EXEMPT_WORDS.isdisjoint(words):
        for phrase in VAGUE_EXEMPT:
            joined = joined.replace(phrase, " ")
        words = tuple(joined.split())
    return VAGUE.found(words, joined)


def _joined_criteria(lowered: str) -> int:
    """The most third-person criteria one sentence joins with ``CRITERION_JOINS`` (0, or 2+)."""
    best = 0
    for sentence in _SENTENCE_RE.split(lowered):
        words = tuple(w for w, _ in LEX_RE.findall(sentence) if w)
        if RESPONSE_VERBS.isdisjoint(words):
            continue
        seen_verb = False
        count = 0
        i = 0
        while i < len(words):
            if words[i] in RESPONSE_VERBS and not seen_verb:
                seen_verb = True
                count = 1
            elif seen_verb:
                for join in CRITERION_JOIN_SEQS:
                    n = len(join)
                    if words[i : i + n] == join and i + n < len(words):
                        nxt = words[i + n + 1] if words[i + n] == "also" and i + n + 1 < len(words) else words[i + n]
                        if nxt in RESPONSE_VERBS:
                            count += 1
                        break
            i += 1
        if count >= 2:
            best = max(best, count)
    return best


@lru_cache(maxsize=65536)
def analyze(text: str) -> TextFacts:
    # one pass: words, and clause breaks at sentence punctuation, `;`, `:`, newlines,
    # and the words "but" and "instead"
    tokens: list[str] = []
    clauses: list[tuple[tuple[str, ...], bool]] = []
    current: list[str] = []
    contrast = False
    lowered = text.lower().replace("\u2019", "'")
    for word, brk in LEX_RE.findall(lowered):
        if brk or word in CLAUSE_BREAK_WORDS:
            if current:
                clauses.append((tuple(current), contrast))
                current = []
            contrast = bool(word)
            if word:
                tokens.append(word)
            continue
        tokens.append(word)
        current.append(word)
    if current:
        clauses.append((tuple(current), contrast))
    expanded = set(tokens)
    for t in tokens:
        if "-" in t:
            expanded.update(t.split("-"))
    words = tuple(tokens)
    joined = " " + " ".join(words) + " "
    demands = joins = neg = pos = neg_cmp = pos_cmp = 0
    for clause, after_contrast in clauses:
        d, j, negated, positive, negated_cmp = _clause_facts(clause, after_contrast)
        demands += d
        joins += j
        neg += negated
        pos += positive
        neg_cmp += negated_cmp
        pos_cmp += positive and not negated_cmp
    return TextFacts(
        words=len(words),
        vague=_vague_terms(words, joined),
        has_cue=CUES.any(expanded, joined),
        demands=demands + joins,
        joined_demands=joins > 0,
        negative_only=neg > 0 and pos == 0,
        negative_only_compare=neg_cmp > 0 and pos_cmp == 0,
        tokens=frozenset(expanded),
        joined=joined,
        judgements=tuple(m.group(1) for m in JUDGEMENT_RE.finditer(lowered)),
        criteria=_joined_criteria(lowered) if not RESPONSE_VERBS.isdisjoint(expanded) else 0,
    )


@lru_cache(maxsize=65536)
def compare_problem(text: str) -> str | None:
    """Why ``text`` is not a question choosing between responses (None when it is)."""
    facts = analyze(text)
    if "?" not in text and not CHOICE_IMP.any(facts.tokens, facts.joined):
        return "is not a question or an instruction to choose between responses"
    if not CHOICE_REF.any(facts.tokens, facts.joined):
        return "does not ask to choose between responses (it reads as a question about one response)"
    return None
