"""Operationalizability lints (CAI301-CAI308): can a model actually use a principle?

A principle the model cannot evaluate constrains nothing. These lints look at each
principle of a deployment (after ``override``) with small, transparent heuristics:
every word list is a module constant below, so a reviewer can read exactly why a
principle was flagged, and extend the lists. They never call a model (the empirical
check, CAI309, needs one), never enumerate scenarios, and are deterministic: the
same constitution gives the same diagnostics in the same order.

Entry points:

* :func:`lint_principles` -- one deployment's principles, every diagnostic tagged
  with the deployment's name.
* :func:`lint_constitution` -- every deployment of a constitution, with the
  principle-local findings (everything but CAI307) reported once per source
  location, plus the root file's principles that no deployment includes.

Heuristics, one line each (``docs/rules/CAI30x.md`` say the same):

* CAI301 vague-wording: a prompt text that names no observable cue (``OBSERVABLE_CUES``
  or a declared behavior's name) and uses a vague evaluative term (``VAGUE_TERMS``) or
  has fewer than ``MIN_WORDS`` words.
* CAI302 compare-not-a-question: a ``compare`` that neither contains ``?`` nor uses a
  choice verb (``CHOICE_IMPERATIVE``: choose, select, pick...), or that names no choice
  (``CHOICE_REFERENCE``: which, more/less, better, than, responses...).
* CAI303 compound-principle: effects on more than ``MAX_BEHAVIOR_CLUSTERS`` unrelated
  behaviors (behaviors of one ``exclusive`` set count as one), or a prompt text with
  ``MIN_COMPOUND_DEMANDS`` or more imperative clauses, or two joined by "and also".
* CAI304 negative-only-framing: only ``forbid`` effects and no ``require``/``prefer``;
  or a critique/compare whose every demand is negated (``NEGATIVE_OPENERS``: don't,
  never, avoid; in a compare also "the response that does not ...").
* CAI305 unpaired-critique-revise: a ``critique`` without a ``revise``, or the reverse.
* CAI306 no-examples: prompt forms but no ``example`` / ``example compare`` block.
* CAI307 over-refusal-risk: a harm-minimizing principle (tagged ``HARM_TAGS``, id
  starting ``harm``, requires a refusal behavior, or forbids a non-refusal behavior
  without a ``HELP_TAGS`` tag) with no helpfulness principle (tagged ``HELP_TAGS``,
  itself included; or, not harm-minimizing, requiring/preferring a non-refusal behavior
  or with a compare naming ``HELPFULNESS_CUES``) in the deployment whose ``when`` may
  overlap (a per-facet projection of the conditions and the deployment's assumptions:
  a sound over-approximation, no solver).
* CAI308 no-prompt-forms: no ``critique``, ``revise`` or ``compare`` at all.

Lexicon entries are lowercase words; ``word*`` matches every word starting with
``word``; an entry with a space is a phrase matched on word boundaries. Text is
split into words at anything but letters, digits, inner apostrophes and hyphens; a
hyphenated word also counts as its parts ("weapon-making" contains "weapon").
"""

from __future__ import annotations

import gc
import re
from contextlib import contextmanager
from functools import lru_cache
from typing import Iterable, Iterator, Mapping, NamedTuple

from cai_dsl.lang import ast

from cai_dsl.diagnostics import rules
from cai_dsl.diagnostics.base import Diagnostic, Related
from cai_dsl.lang.resolver import Constitution, ResolvedDeployment

OPERATIONALIZABILITY_CODES: tuple[str, ...] = (
    "CAI301",
    "CAI302",
    "CAI303",
    "CAI304",
    "CAI305",
    "CAI306",
    "CAI307",
    "CAI308",
)

PROMPT_FIELDS: tuple[str, ...] = ("critique", "revise", "compare")

# ---------------------------------------------------------------- lexicons

#: Evaluative words that name a judgement, not something one can observe in a
#: response. Harmless when the same text also names an observable cue.
VAGUE_TERMS: tuple[str, ...] = (
    "be good", "do the right thing", "better person", "good person",
    "good", "goodness", "better", "best", "bad", "worse", "nice", "nicer", "nicest",
    "great", "fine", "appropriate", "appropriately", "inappropriate", "ethical",
    "ethically", "unethical", "moral", "morally", "immoral", "positive", "positively",
    "proper", "properly", "acceptable", "unacceptable", "suitable", "reasonable",
    "responsible", "wholesome", "decent", "virtuous", "wise", "right", "wrong", "ideal",
)

#: Words that point at something observable in a response: a kind of content (the
#: harm categories of Bai et al. 2022 count: "harmful, unethical, racist, sexist,
#: toxic, dangerous, or illegal" is concrete enough), an element of an answer, a
#: stakeholder or domain, or a property one can check.
OBSERVABLE_CUES: tuple[str, ...] = (
    # kinds of harmful content
    "harm*", "racis*", "sexis*", "toxic*", "danger*", "illegal*", "unlawful", "crime",
    "crimes", "criminal*", "violen*", "offensive", "offend*", "hate", "hateful", "bias",
    "biased", "biases", "discriminat*", "stereotyp*", "insensitive", "abus*", "explicit",
    "sexual*", "self-harm", "suicid*", "weapon*", "drug*", "privacy", "personal data",
    "personal information", "personal details", "misinformation", "false", "falsehood*",
    "inaccura*", "accura*", "lies", "deceptive", "deceiv*", "decept*", "manipulat*",
    "condescend*", "preachy", "accusatory", "evasive", "age-appropriate",
    "family-friendly", "misogyn*",
    # elements of a response
    "instruction*", "step-by-step", "step", "steps", "caveat*", "disclaimer*", "warning*",
    "source", "sources", "citation*", "cite", "cites", "cited", "reference*", "evidence",
    "fact", "facts", "factual*", "claim", "claims", "example*", "uncertain*",
    "confidence", "limitation*", "limit", "limits", "risk", "risks", "refus*", "declin*",
    "detail", "details", "detailed", "specific", "specifics", "specifically", "concise*",
    "length", "brief", "briefly", "summar*", "code", "link", "links", "number",
    "numbers", "data", "statistic*", "quote*", "jargon", "alternative*", "resource*",
    "hotline*", "emergency", "assumption*", "goal", "goals", "constraint*", "request",
    "requests", "requested", "query", "queries", "question", "questions", "clarif*",
    "opinion*",
    # stakeholders and domains
    "clinician*", "doctor*", "physician*", "lawyer*", "professional*", "expert*",
    "children", "minor", "minors", "medical", "legal", "financial",
)

#: A text shorter than this many words cannot state a criterion, unless it names a cue.
MIN_WORDS = 5

#: A ``compare`` without ``?`` must instruct a choice with one of these.
CHOICE_IMPERATIVE: tuple[str, ...] = (
    "choose", "select", "pick", "compare", "rank", "decide which", "determine which",
    "identify which", "indicate which",
)

#: Words that show a ``compare`` asks for a choice between responses.
CHOICE_REFERENCE: tuple[str, ...] = (
    "which", "whichever", "choose", "chosen", "select", "pick", "prefer*", "compare",
    "rank", "more", "less", "fewer", "better", "worse", "best", "worst", "most", "least",
    "rather", "than", "responses", "options", "between", "either", "a or b",
)

#: Verbs that open an imperative demand in a prompt ("Identify ...", "Rewrite ...").
IMPERATIVE_VERBS: tuple[str, ...] = (
    "acknowledge", "add", "address", "admit", "answer", "ask", "avoid", "be", "check",
    "choose", "cite", "clarify", "compare", "consider", "correct", "delete", "describe",
    "discuss", "do", "edit", "encourage", "ensure", "explain", "express", "fix", "flag",
    "focus", "give", "identify", "include", "keep", "limit", "list", "make", "mention",
    "note", "offer", "pick", "point", "prefer", "provide", "rank", "recommend", "refuse",
    "remove", "replace", "respond", "return", "revise", "rewrite", "say", "select", "show",
    "state", "stay", "suggest", "summarize", "summarise", "tell", "translate", "use",
    "warn", "write", "never", "always", "don't", "dont", "refrain", "stop",
)

#: Words skipped at the start of a clause before looking for its verb.
CLAUSE_FILLERS: tuple[str, ...] = (
    "please", "also", "and", "then", "furthermore", "additionally", "moreover", "finally",
    "first", "second", "third", "next", "lastly", "in addition", "above all", "but", "so",
    "instead", "rather",
)

#: Explicit joins of two demands in one sentence, when an imperative verb follows
#: ("... and also explain ...").
DEMAND_JOINS: tuple[str, ...] = ("and also", "as well as", "and additionally")

#: Imperative clauses in one prompt text at which it counts as compound.
MIN_COMPOUND_DEMANDS = 3

#: Effects on more unrelated behaviors than this make a principle compound.
MAX_BEHAVIOR_CLUSTERS = 2

#: A clause that opens with one of these is a negated demand.
NEGATIVE_OPENERS: tuple[str, ...] = (
    "do not", "don't", "dont", "never", "avoid", "avoids", "avoiding", "refrain", "stop",
    "must not", "should not", "shouldn't", "no longer", "not", "no",
)

#: The prompt forms checked for negative-only wording (a ``revise`` asks to remove
#: problems by nature: "rewrite the response to remove ..." is not flagged).
NEGATIVE_FRAMING_FIELDS: tuple[str, ...] = ("critique", "compare")

#: In a compare, these right after "the response (that)" make the criterion negative.
NEGATIVE_PREDICATES: tuple[str, ...] = (
    "does not", "doesn't", "do not", "don't", "never", "avoid", "avoids", "is not", "isn't",
    "fail to", "fails to", "contain no", "contains no", "has no", "refrain from",
    "refrains from",
)

#: Question words that open a positive compare clause.
QUESTION_OPENERS: frozenset[str] = frozenset({"which", "whichever", "what", "how", "who", "does", "is", "are", "do"})

#: Tags that mark a principle as harm-minimizing (CAI307).
HARM_TAGS: frozenset[str] = frozenset({"safety", "harm", "harmless", "harmlessness", "harms"})

#: Tags that mark a principle as a helpfulness counterweight (CAI307).
HELP_TAGS: frozenset[str] = frozenset({"helpfulness", "helpful", "help", "usefulness"})

#: A behavior whose name or description matches this is a refusal.
REFUSAL_BEHAVIOR = re.compile(r"refus|declin|reject|deny|denies|withhold|abstain", re.IGNORECASE)

#: A behavior whose name or description matches this (and is not a refusal) is a way of
#: helping; so is every other member of an ``exclusive`` set that contains a refusal.
HELPFUL_BEHAVIOR = re.compile(
    r"answer|instruction|detail|explain|explanation|inform|assist|help|complete|solution"
    r"|code|step|partial|example|comply|fulfil",
    re.IGNORECASE,
)

#: A compare that matches this is about helpfulness (CAI307).
HELPFULNESS_CUES = re.compile(
    r"\b(?:helpful\w*|helps?|goals?|useful\w*|usefulness|informative|answers? the|needs)\b", re.IGNORECASE
)

# ---------------------------------------------------------------- lexicon matching

_TOKEN_RE = re.compile(r"[a-z0-9]+(?:['\-][a-z0-9]+)*")
# a word, or a clause break: sentence punctuation followed by a space or the end, or a newline
_LEX_RE = re.compile(r"([a-z0-9]+(?:['\-][a-z0-9]+)*)|([.!?;:]+(?=\s|$)|\n)")
_CLAUSE_BREAK_WORDS = frozenset({"but", "instead"})


def _tokenize(text: str) -> tuple[str, ...]:
    return tuple(_TOKEN_RE.findall(text.lower().replace("\u2019", "'")))


class _Lexicon:
    """A word list compiled for fast lookup: exact words, ``word*`` prefixes, phrases."""

    def __init__(self, entries: Iterable[str]):
        entries = tuple(entries)
        self.words = frozenset(e for e in entries if " " not in e and not e.endswith("*"))
        self.prefixes = tuple(e[:-1] for e in entries if " " not in e and e.endswith("*"))
        self.phrases = tuple(" " + e + " " for e in entries if " " in e)
        self._openers: dict[str, tuple[tuple[str, ...], ...]] = {}
        for e in entries:
            if " " in e:
                parts = tuple(e.split())
                self._openers[parts[0]] = (*self._openers.get(parts[0], ()), parts)

    def hit(self, word: str) -> bool:
        return word in self.words or (bool(self.prefixes) and word.startswith(self.prefixes))

    def any(self, words: Iterable[str], joined: str) -> bool:
        if not self.words.isdisjoint(words):
            return True
        prefixes = self.prefixes
        if prefixes and any(w.startswith(prefixes) for w in words):
            return True
        return any(p in joined for p in self.phrases)

    def found(self, tokens: tuple[str, ...], joined: str) -> tuple[str, ...]:
        """The entries found, phrases first, each once, words inside a found phrase skipped."""
        phrases = [p.strip() for p in self.phrases if p in joined]
        if not phrases and not self.prefixes and self.words.isdisjoint(tokens):
            return ()
        inside = {w for p in phrases for w in p.split()}
        out = list(phrases)
        for w in tokens:
            if w not in inside and w not in out and self.hit(w):
                out.append(w)
        return tuple(out)

    def opens(self, tokens: tuple[str, ...]) -> int:
        """How many leading tokens form an entry (0: none)."""
        if not tokens:
            return 0
        for parts in self._openers.get(tokens[0], ()):
            if tokens[: len(parts)] == parts:
                return len(parts)
        return 1 if self.hit(tokens[0]) else 0


_VAGUE = _Lexicon(VAGUE_TERMS)
_CUES = _Lexicon(OBSERVABLE_CUES)
_CHOICE_IMP = _Lexicon(CHOICE_IMPERATIVE)
_CHOICE_REF = _Lexicon(CHOICE_REFERENCE)
_IMPERATIVE = frozenset(IMPERATIVE_VERBS)
_FILLERS = _Lexicon(CLAUSE_FILLERS)
_JOINS = tuple(tuple(j.split()) for j in DEMAND_JOINS)
_JOIN_WORDS = frozenset(j[0] for j in _JOINS)
_NEG_OPENERS = _Lexicon(NEGATIVE_OPENERS)
# words that must occur for a negative compare criterion to be possible (a cheap pre-filter)
_NEG_WORDS = frozenset(w for entry in NEGATIVE_PREDICATES for w in entry.split()) - {
    "is", "to", "from", "has", "do", "does", "contain", "contains"
}
_NEG_PREDICATE_RE = re.compile(
    r"\b(?:which|whichever|the|a|an)\b[^.?!;]{0,60}?\b(?:response|responses|answer|answers|one|assistant)\b"
    r"(?:\s+(?:that|which|who))?\s+(?:"
    + "|".join(re.escape(p) for p in sorted(NEGATIVE_PREDICATES, key=len, reverse=True))
    + r")\b"
)


class _Text(NamedTuple):
    """What the lints need to know about one prompt text (computed once per text)."""

    words: int
    vague: tuple[str, ...]
    has_cue: bool
    demands: int
    joined_demands: bool
    negative_only: bool  # every clause is a negated demand (openers only)
    negative_only_compare: bool  # ... also counting "the response that does not ..."
    tokens: frozenset[str]
    joined: str


def _strip_fillers(tokens: tuple[str, ...]) -> tuple[str, ...]:
    while tokens:
        n = _FILLERS.opens(tokens)
        if not n:
            break
        tokens = tokens[n:]
    return tokens


def _opens_join(tokens: tuple[str, ...], i: int) -> int:
    for join in _JOINS:
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
    imperative = clause[0] in _IMPERATIVE
    joins = 0
    if not _JOIN_WORDS.isdisjoint(clause):
        for i in range(1, len(clause) - 1):
            n = _opens_join(clause, i)
            if n and i + n < len(clause) and clause[i + n] in _IMPERATIVE:
                joins += 1
    negated = _NEG_OPENERS.opens(clause) > 0
    text = " ".join(clause)
    positive = not negated and (
        contrast or imperative or clause[0] in QUESTION_OPENERS or _CHOICE_REF.any(clause, f" {text} ")
    )
    negated_cmp = negated or (
        (not _NEG_WORDS.isdisjoint(clause) or "n't" in text) and _NEG_PREDICATE_RE.search(text) is not None
    )
    return int(imperative), joins, negated, positive, negated_cmp


@lru_cache(maxsize=65536)
def _analyze(text: str) -> _Text:
    # one pass: words, and clause breaks at sentence punctuation, `;`, `:`, newlines,
    # and the words "but" and "instead"
    tokens: list[str] = []
    clauses: list[tuple[tuple[str, ...], bool]] = []
    current: list[str] = []
    contrast = False
    for word, brk in _LEX_RE.findall(text.lower().replace("\u2019", "'")):
        if brk or word in _CLAUSE_BREAK_WORDS:
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
    return _Text(
        words=len(words),
        vague=_VAGUE.found(words, joined),
        has_cue=_CUES.any(expanded, joined),
        demands=demands + joins,
        joined_demands=joins > 0,
        negative_only=neg > 0 and pos == 0,
        negative_only_compare=neg_cmp > 0 and pos_cmp == 0,
        tokens=frozenset(expanded),
        joined=joined,
    )


@lru_cache(maxsize=65536)
def _compare_problem(text: str) -> str | None:
    """Why ``text`` is not a question choosing between responses (None when it is)."""
    facts = _analyze(text)
    if "?" not in text and not _CHOICE_IMP.any(facts.tokens, facts.joined):
        return "is not a question or an instruction to choose between responses"
    if not _CHOICE_REF.any(facts.tokens, facts.joined):
        return "does not ask to choose between responses (it reads as a question about one response)"
    return None


# ---------------------------------------------------------------- condition projections (CAI307)

Projection = dict[str, frozenset[str]]  # facet -> values a scenario may take; absent = any


def _atom_values(node: ast.Comparison | ast.Membership, facets: Mapping[str, ast.Facet]) -> frozenset[str] | None:
    facet = facets.get(node.facet.name)
    if facet is None:
        return None
    domain = [v.name for v in facet.values]
    if isinstance(node, ast.Membership):
        chosen = {v.name for v in node.values}
        return frozenset(v for v in domain if (v in chosen) != node.negated)
    value = node.value.name
    if node.op == "==":
        return frozenset(v for v in domain if v == value)
    if node.op == "!=":
        return frozenset(v for v in domain if v != value)
    if value not in domain:
        return None
    k = domain.index(value)
    pick = {
        "<": lambda i: i < k,
        "<=": lambda i: i <= k,
        ">": lambda i: i > k,
        ">=": lambda i: i >= k,
    }[node.op]
    return frozenset(v for i, v in enumerate(domain) if pick(i))


def _project(expr: ast.Expr | None, facets: Mapping[str, ast.Facet]) -> Projection | None:
    """Per facet, a superset of the values any scenario satisfying ``expr`` takes.

    Returns None when ``expr`` is certainly unsatisfiable on some facet. ``and``
    intersects, ``or`` unites facet by facet, ``not`` of an atom complements it and
    ``not`` of anything else constrains nothing (an over-approximation).
    """
    if expr is None:
        return {}
    # iterative post-order, like the evaluator, so deep expressions cannot overflow
    results: dict[int, Projection | None] = {}
    stack: list[tuple[ast.Expr, bool]] = [(expr, False)]
    while stack:
        node, expanded = stack.pop()
        if isinstance(node, (ast.And, ast.Or)) and not expanded:
            stack.append((node, True))
            stack.extend((c, False) for c in node.operands)
            continue
        result: Projection | None
        if isinstance(node, ast.BoolLiteral):
            result = {} if node.value else None
        elif isinstance(node, (ast.Comparison, ast.Membership)):
            values = _atom_values(node, facets)
            result = {} if values is None else ({node.facet.name: values} if values else None)
        elif isinstance(node, ast.Not):
            inner = node.operand
            if isinstance(inner, (ast.Comparison, ast.Membership)):
                values = _atom_values(inner, facets)
                facet = facets.get(inner.facet.name)
                if values is None or facet is None:
                    result = {}
                else:
                    rest = frozenset(v.name for v in facet.values) - values
                    result = {inner.facet.name: rest} if rest else None
            elif isinstance(inner, ast.BoolLiteral):
                result = None if inner.value else {}
            else:
                result = {}
        elif isinstance(node, ast.And):
            result = {}
            for child in node.operands:
                sub = results[id(child)]
                if sub is None:
                    result = None
                    break
                result = _meet(result, sub)
                if result is None:
                    break
        else:  # Or
            parts = [results[id(c)] for c in node.operands]
            parts = [p for p in parts if p is not None]
            if not parts:
                result = None
            else:
                keys = set(parts[0]).intersection(*parts[1:])
                result = {k: frozenset().union(*(p[k] for p in parts)) for k in keys}
        results[id(node)] = result
    return results[id(expr)]


def _meet(a: Projection | None, b: Projection | None) -> Projection | None:
    if a is None or b is None:
        return None
    out = dict(a)
    for facet, values in b.items():
        merged = out[facet] & values if facet in out else values
        if not merged:
            return None
        out[facet] = merged
    return out


# ---------------------------------------------------------------- per-principle lints


class _Context:
    """What the lints need from the constitution's vocabulary, computed once."""

    def __init__(self, constitution: Constitution):
        self.constitution = constitution
        # a behavior is mentioned by name, with or without underscores ("partial answer")
        self.behavior_phrases = tuple(
            sorted({" " + " ".join(_tokenize(name.replace("_", " "))) + " " for name in constitution.behaviors})
        )
        # union-find of behaviors over exclusive sets: one cluster per connected set
        self._parent: dict[str, str] = {}
        for ex in constitution.exclusives:
            members = [m.name for m in ex.members]
            for other in members[1:]:
                ra, rb = self.cluster(members[0]), self.cluster(other)
                if ra != rb:
                    self._parent[rb] = ra
        refusal: set[str] = set()
        helpful: set[str] = set()
        for name, behavior in constitution.behaviors.items():
            label = name + " " + (behavior.description.value if behavior.description else "")
            if REFUSAL_BEHAVIOR.search(label):
                refusal.add(name)
            elif HELPFUL_BEHAVIOR.search(label):
                helpful.add(name)
        # the alternatives to refusing: the other members of an exclusive set with a refusal
        for ex in constitution.exclusives:
            members = {m.name for m in ex.members}
            if members & refusal:
                helpful |= members - refusal
        self.refusal_behaviors = frozenset(refusal)
        self.helpful_behaviors = frozenset(helpful)

    def cluster(self, behavior: str) -> str:
        parent = self._parent
        while parent.get(behavior, behavior) != behavior:
            behavior = parent[behavior]
        return behavior

    def is_harm_minimizing(self, p: ast.Principle) -> bool:
        """Tagged as safety, id ``harm...``, requires a refusal, or forbids something.

        Forbidding a refusal (``forbid refuse``) is the opposite of minimizing harm, and
        a principle tagged only as helpfulness is not counted for what it forbids
        (``forbid lecture`` in a helpfulness principle guards against over-refusal).
        """
        tags = {t.lower() for t in p.tag_names}
        if tags & HARM_TAGS or p.id.name.lower().startswith("harm"):
            return True
        if set(p.effect_behaviors("require")) & self.refusal_behaviors:
            return True
        if tags & HELP_TAGS:
            return False
        return any(b not in self.refusal_behaviors for b in p.effect_behaviors("forbid"))

    def is_counterweight(self, p: ast.Principle, harm_minimizing: bool) -> bool:
        """Tagged as helpfulness; or, not minimizing harm, asks for a way of helping."""
        tags = {t.lower() for t in p.tag_names}
        if tags & HELP_TAGS:
            return True
        if harm_minimizing:
            return False
        positive = set(p.effect_behaviors("require")) | set(p.effect_behaviors("prefer"))
        if positive & self.helpful_behaviors:
            return True
        return p.compare is not None and HELPFULNESS_CUES.search(p.compare.value) is not None


def _prompt_texts(p: ast.Principle) -> list[tuple[str, ast.Text]]:
    return [(name, getattr(p, name)) for name in PROMPT_FIELDS if getattr(p, name) is not None]


def _vague(p: ast.Principle, texts: list[tuple[str, ast.Text]], ctx: _Context, where: dict) -> list[Diagnostic]:
    out = []
    for field, text in texts:
        facts = _analyze(text.value)
        if facts.has_cue or any(b in facts.joined for b in ctx.behavior_phrases):
            continue
        vague = facts.vague
        words = facts.words
        if vague:
            terms = ", ".join(f"\"{t}\"" for t in vague)
            message = f"`{p.id.name}` {field} uses {terms} but names nothing observable in a response"
        elif words < MIN_WORDS:
            message = f"`{p.id.name}` {field} is too short ({words} words) to state an observable criterion"
        else:
            continue
        out.append(
            rules.VAGUE_WORDING(
                message,
                text.span,
                help=(
                    "a model cannot check an evaluative word like \"good\" or \"appropriate\" against a response; "
                    "say what to look for instead (a behavior such as a caveat, sources, step-by-step "
                    "instructions, or a concrete kind of harm such as \"dangerous or illegal\")"
                ),
                principles=[p.id.name],
                **where,
            )
        )
    return out


def _compare_question(p: ast.Principle, where: dict) -> list[Diagnostic]:
    if p.compare is None:
        return []
    problem = _compare_problem(p.compare.value)
    if problem is None:
        return []
    return [
        rules.COMPARE_NOT_A_QUESTION(
            f"`{p.id.name}` compare {problem}",
            p.compare.span,
            help=(
                "comparison programs score the model's choice between two responses, so the prompt must ask for "
                "one; phrase it as \"Which of these responses ...?\" or \"Choose the response that ...\""
            ),
            principles=[p.id.name],
            **where,
        )
    ]


def _compound(p: ast.Principle, texts: list[tuple[str, ast.Text]], ctx: _Context, where: dict) -> list[Diagnostic]:
    behaviors: list[str] = []
    for effect in p.effects:
        for b in effect.behaviors:
            if b.name not in behaviors:
                behaviors.append(b.name)
    clusters: dict[str, list[str]] = {}
    for b in behaviors:
        clusters.setdefault(ctx.cluster(b), []).append(b)
    help_text = (
        "a principle that asks for several unrelated things gives the model one mixed signal and hides which "
        "demand a comparison was decided on; split it into one principle per demand (a `group` can keep them together)"
    )
    if len(clusters) > MAX_BEHAVIOR_CLUSTERS:
        names = ", ".join(f"`{b}`" for b in behaviors)
        span = p.effects[0].span if p.effects else p.id.span
        return [
            rules.COMPOUND_PRINCIPLE(
                f"`{p.id.name}` has effects on {len(clusters)} unrelated behaviors ({names})",
                span,
                help=help_text,
                principles=[p.id.name],
                **where,
            )
        ]
    for field, text in texts:
        facts = _analyze(text.value)
        demands = facts.demands
        if demands >= MIN_COMPOUND_DEMANDS or (demands >= 2 and facts.joined_demands):
            return [
                rules.COMPOUND_PRINCIPLE(
                    f"`{p.id.name}` {field} joins {demands} separate demands",
                    text.span,
                    help=help_text,
                    principles=[p.id.name],
                    **where,
                )
            ]
    return []


_C3AI = (
    "C3AI (Kyrychenko et al., 2025) found that positively framed, behavior-based principles track human "
    "preferences better than negatively framed ones"
)


def _negative_only(p: ast.Principle, texts: list[tuple[str, ast.Text]], where: dict) -> list[Diagnostic]:
    forbids = p.effect_behaviors("forbid")
    if forbids and not p.effect_behaviors("require") and not p.effect_behaviors("prefer"):
        first = next(e for e in p.effects if e.effect == "forbid")
        return [
            rules.NEGATIVE_ONLY(
                f"`{p.id.name}` only forbids ({', '.join(forbids)}) and names no behavior to move towards",
                first.span,
                help=(
                    f"{_C3AI}; add a `prefer` (or `require`) of the behavior you want instead, "
                    "e.g. `prefer partial_answer` next to `forbid detailed_instructions`"
                ),
                principles=[p.id.name],
                **where,
            )
        ]
    for field, text in texts:
        if field not in NEGATIVE_FRAMING_FIELDS:
            continue
        facts = _analyze(text.value)
        if facts.negative_only_compare if field == "compare" else facts.negative_only:
            return [
                rules.NEGATIVE_ONLY(
                    f"`{p.id.name}` {field} only says what not to do",
                    text.span,
                    help=(
                        f"{_C3AI}; name the behavior you want, e.g. \"Which response points the user to "
                        "a safer alternative?\" rather than \"Which response does not help?\""
                    ),
                    principles=[p.id.name],
                    **where,
                )
            ]
    return []


def _unpaired(p: ast.Principle, where: dict) -> list[Diagnostic]:
    if p.critique is not None and p.revise is None:
        return [
            rules.UNPAIRED_CRITIQUE(
                f"`{p.id.name}` has a critique but no revise",
                p.critique.span,
                help=(
                    "a critique/revision round needs both: the critique finds the problem and the revise "
                    "request fixes it; add a `revise` that asks to rewrite the response to remove what the "
                    "critique finds"
                ),
                principles=[p.id.name],
                **where,
            )
        ]
    if p.revise is not None and p.critique is None:
        return [
            rules.UNPAIRED_CRITIQUE(
                f"`{p.id.name}` has a revise but no critique",
                p.revise.span,
                help=(
                    "a revision without a critique has no stated problem to fix, so the model rewrites blindly; "
                    "add a `critique` that asks to identify the specific problem the revise removes"
                ),
                principles=[p.id.name],
                **where,
            )
        ]
    return []


def _no_examples(p: ast.Principle, texts: list[tuple[str, ast.Text]], where: dict) -> list[Diagnostic]:
    if p.examples or not texts:
        return []
    wanted = []
    if p.critique is not None or p.revise is not None:
        wanted.append("`example { prompt response critique revision }`")
    if p.compare is not None:
        wanted.append("`example compare { prompt a b better }`")
    return [
        rules.NO_EXAMPLES(
            f"`{p.id.name}` has no few-shot examples",
            p.id.span,
            help=(
                "few-shot examples show the model what the principle means in practice, and labelled compare "
                "examples are what the empirical check measures it against; add " + " and ".join(wanted)
            ),
            principles=[p.id.name],
            **where,
        )
    ]


def _no_prompt_forms(p: ast.Principle, texts: list[tuple[str, ast.Text]], where: dict) -> list[Diagnostic]:
    if texts:
        return []
    return [
        rules.NO_PROMPT_FORMS(
            f"`{p.id.name}` has no critique, revise or compare prompt",
            p.id.span,
            help=(
                "the checker uses its effects, but the model never sees the principle, so training cannot "
                "teach it; add at least a `compare` question (and a `critique`/`revise` pair)"
            ),
            principles=[p.id.name],
            **where,
        )
    ]


def _intrinsic(p: ast.Principle, ctx: _Context, where: dict) -> list[Diagnostic]:
    """Every lint that depends on the principle alone (all but CAI307)."""
    texts = _prompt_texts(p)
    return [
        *_vague(p, texts, ctx, where),
        *_compare_question(p, where),
        *_compound(p, texts, ctx, where),
        *_negative_only(p, texts, where),
        *_unpaired(p, where),
        *_no_examples(p, texts, where),
        *_no_prompt_forms(p, texts, where),
    ]


# ---------------------------------------------------------------- over-refusal (CAI307)


def _over_refusal(constitution: Constitution, deployment: ResolvedDeployment, ctx: _Context) -> list[Diagnostic]:
    facets = constitution.facets
    base: Projection | None = {}
    for assumption in deployment.assumptions:
        base = _meet(base, _project(assumption, facets))
    if base is None:  # no reachable scenario: CAI204's business
        return []
    harm: list[ast.Principle] = []
    counter: list[ast.Principle] = []
    for p in deployment.principles:
        minimizing = ctx.is_harm_minimizing(p)
        if minimizing:
            harm.append(p)
        if ctx.is_counterweight(p, minimizing):
            counter.append(p)
    if not harm:
        return []
    # a principle tagged both safety and helpfulness ("most helpful, honest and harmless")
    # is its own counterweight; a harm principle is a counterweight only by its tag
    weights: list[Projection] = []
    seen_proj: set[tuple] = set()
    for p in counter:
        proj = _meet(base, _project(p.when, facets))
        if proj is None:
            continue
        key = tuple(sorted((k, tuple(sorted(v))) for k, v in proj.items()))
        if key in seen_proj:
            continue
        seen_proj.add(key)
        weights.append(proj)
    out = []
    for p in harm:
        proj = _meet(base, _project(p.when, facets))
        if proj is None:
            continue  # never active: CAI205's business
        if any(_meet(proj, wproj) is not None for wproj in weights):
            continue
        out.append(
            rules.OVER_REFUSAL_RISK(
                f"`{p.id.name}` minimizes harm but no helpfulness principle can be active alongside it "
                f"in deployment `{deployment.name}`",
                p.id.span,
                help=(
                    "optimizing harmlessness alone rewards refusing and evasive answers (over-refusal, a Goodhart "
                    "failure); include a principle tagged `helpfulness` or one that requires/prefers a "
                    "non-refusal behavior (e.g. `partial_answer`) whose `when` can hold together with this one "
                    "(checked per facet, not with the solver)"
                ),
                related=[Related(span=deployment.span, message=f"deployment `{deployment.name}` declared here")],
                principles=[p.id.name],
                deployment=deployment.name,
            )
        )
    return out


# ---------------------------------------------------------------- entry points


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while linting.

    Linting allocates only short-lived, acyclic objects (reference counting frees
    them), but after resolving a large constitution a full collection over its AST
    can be triggered by those allocations and cost more than the lints themselves.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def lint_principles(constitution: Constitution, deployment: ResolvedDeployment) -> list[Diagnostic]:
    """CAI301-CAI308 over ``deployment``'s principles (after overrides), in principle order."""
    with _gc_paused():
        return _lint_principles(constitution, deployment, _Context(constitution))


def _lint_principles(constitution: Constitution, deployment: ResolvedDeployment, ctx: "_Context") -> list[Diagnostic]:
    where = {"deployment": deployment.name}
    out: list[Diagnostic] = []
    for p in deployment.principles:
        out.extend(_intrinsic(p, ctx, where))
    out.extend(_over_refusal(constitution, deployment, ctx))
    order = {pid: i for i, pid in enumerate(deployment.principle_ids)}
    out.sort(key=lambda d: (order.get(d.principles[0], -1) if d.principles else -1, d.code))
    return out


def lint_constitution(constitution: Constitution, deployments: Iterable[str] | None = None) -> list[Diagnostic]:
    """The lints of every (or the named) deployment, principle-local findings once each.

    Principle-local findings (all but CAI307) that recur in several deployments at the
    same place are reported once, for the first deployment. Principles of the root file
    that no deployment includes are linted too, without a deployment (CAI307 needs one).
    """
    names = list(constitution.deployments) if deployments is None else list(deployments)
    out: list[Diagnostic] = []
    seen: set[tuple] = set()
    covered: set[str] = set()
    ctx = _Context(constitution)
    for name in names:
        deployment = constitution.deployments.get(name)
        if deployment is None:
            continue
        covered.update(deployment.principle_ids)
        with _gc_paused():
            found = _lint_principles(constitution, deployment, ctx)
        for d in found:
            per_deployment = d.code == rules.OVER_REFUSAL_RISK.code
            key = (d.code, d.deployment, d.span) if per_deployment else (d.code, d.message, d.span)
            if key in seen:
                continue
            seen.add(key)
            out.append(d)
    if deployments is None:
        with _gc_paused():
            for pid, p in constitution.principles.items():
                if pid not in covered and p.span.file == constitution.root:
                    out.extend(_intrinsic(p, ctx, {}))
    return out


