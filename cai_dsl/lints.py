"""Operationalizability lints (CAI301-CAI308): can a model actually use a principle?

A principle the model cannot evaluate constrains nothing. These lints look at each
principle of a deployment (after ``override``) with small, transparent heuristics:
every word list and pattern is a module constant below, so a reviewer can read
exactly why a principle was flagged and extend the lists. They never call a model
(the empirical check, CAI309, needs one and lives with the model tooling), never
enumerate scenarios, and are deterministic: the same constitution gives the same
diagnostics in the same order.

Entry points:

* :func:`lint_principles` -- one deployment's principles, every diagnostic tagged
  with the deployment's name.
* :func:`lint_constitution` -- every deployment of a constitution, with the
  principle-local findings (everything but CAI307) reported once per source
  location, plus the root file's principles that no deployment includes.

Heuristics, one line each (the docs at ``docs/rules/CAI30x.md`` say the same):

* CAI301 vague-wording: a prompt text with no observable cue (``OBSERVABLE_CUES`` or
  a declared behavior's name) that uses a vague evaluative term (``VAGUE_TERMS``) or
  has fewer than ``MIN_WORDS`` words.
* CAI302 compare-not-a-question: a ``compare`` that neither contains ``?`` nor uses
  a choice verb (``CHOICE_IMPERATIVE``: choose, select, pick...), or that names no
  choice (``CHOICE_REFERENCE``: which, choose, more/less, -er than, responses...).
* CAI303 compound-principle: effects on more than ``MAX_BEHAVIOR_CLUSTERS`` unrelated
  behaviors (behaviors in one ``exclusive`` set count as one), or a prompt text with
  ``MIN_COMPOUND_DEMANDS`` or more imperative clauses, or two joined by "and also".
* CAI304 negative-only-framing: only ``forbid`` effects and no ``require``/``prefer``;
  or a critique/compare whose every demand is negated (``don't``, ``never``, ``avoid``,
  "which response does not ...") and none names what to do instead.
* CAI305 unpaired-critique-revise: a ``critique`` without a ``revise``, or the reverse.
* CAI306 no-examples: prompt forms but no ``example`` / ``example compare`` block.
* CAI307 over-refusal-risk: a harm-minimizing principle (forbids, requires a refusal
  behavior, tagged ``HARM_TAGS`` or id starting ``harm``) with no other, helpfulness
  principle (tagged ``HELP_TAGS``, or requiring/preferring a non-refusal behavior, or a
  compare matching ``HELPFULNESS_CUES``) in the deployment whose ``when`` may overlap
  (per-facet projection of the conditions and the deployment's assumptions: a sound
  over-approximation, no solver).
* CAI308 no-prompt-forms: no ``critique``, ``revise`` or ``compare`` at all.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Iterable, Mapping

from cai_dsl import ast, rules
from cai_dsl.diagnostics import Diagnostic, Related
from cai_dsl.resolver import Constitution, ResolvedDeployment

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
#
# Entries are regular-expression fragments matched case-insensitively on word
# boundaries. Keep them short and obvious: a user reading a warning should be
# able to find the word that triggered it here.

#: Evaluative words that name a judgement, not something one can observe in a
#: response. Harmless when the same text also names an observable cue.
VAGUE_TERMS: tuple[str, ...] = (
    r"good(?:ness)?",
    r"better",
    r"best",
    r"bad",
    r"worse",
    r"nice(?:r|st)?",
    r"great",
    r"fine",
    r"(?:in)?appropriate(?:ly)?",
    r"(?:un)?ethical(?:ly)?",
    r"(?:im)?moral(?:ly)?",
    r"positive(?:ly)?",
    r"proper(?:ly)?",
    r"(?:un)?acceptable",
    r"suitable",
    r"reasonable",
    r"responsible",
    r"wholesome",
    r"decent",
    r"virtuous",
    r"wise",
    r"right",
    r"wrong",
    r"ideal",
    r"better person",
    r"be good",
    r"do the right thing",
)

#: Words and phrases that point at something observable in a response: a kind of
#: content (the harm categories of Bai et al. 2022 count: "harmful, unethical,
#: racist, sexist, toxic, dangerous, or illegal" is concrete enough), a concrete
#: element of an answer, a stakeholder, or a property one can check.
OBSERVABLE_CUES: tuple[str, ...] = (
    # kinds of harmful content
    r"harm(?:s|ful|fully|fulness|less|lessness)?",
    r"racis[mt]\w*",
    r"sexis[mt]\w*",
    r"toxic(?:ity)?",
    r"dangerous",
    r"danger",
    r"illegal(?:ly)?",
    r"unlawful",
    r"crim(?:e|es|inal)",
    r"violen(?:t|ce)",
    r"offensive",
    r"offend\w*",
    r"hate(?:ful)?",
    r"bias(?:ed|es)?",
    r"discriminat\w*",
    r"stereotyp\w*",
    r"insensitive",
    r"abus\w*",
    r"explicit",
    r"sexual",
    r"self[- ]harm",
    r"suicid\w*",
    r"weapons?",
    r"drugs?",
    r"privacy",
    r"personal (?:data|information|details)",
    r"misinformation",
    r"false(?:hoods?)?",
    r"inaccura\w*",
    r"accura\w*",
    r"lies",
    r"deceptive",
    r"deceiv\w*",
    r"manipulat\w*",
    r"condescend\w*",
    r"preachy",
    r"accusatory",
    r"evasive",
    r"age[- ]appropriate",
    r"family[- ]friendly",
    # elements of a response
    r"instructions?",
    r"step[- ]by[- ]step",
    r"steps?",
    r"caveats?",
    r"disclaimers?",
    r"warnings?",
    r"sources?",
    r"citations?",
    r"cites?",
    r"references?",
    r"evidence",
    r"facts?",
    r"factual(?:ly)?",
    r"claims?",
    r"examples?",
    r"uncertain(?:ty)?",
    r"confidence",
    r"limitations?",
    r"limits?",
    r"risks?",
    r"refus\w*",
    r"declin\w*",
    r"details?",
    r"detailed",
    r"specific(?:ally|s)?",
    r"concise(?:ly)?",
    r"length",
    r"brief(?:ly)?",
    r"summar(?:y|ize|ise)\w*",
    r"code",
    r"links?",
    r"numbers?",
    r"data",
    r"statistics?",
    r"quotes?",
    r"jargon",
    r"alternatives?",
    r"resources?",
    r"hotlines?",
    r"emergency",
    r"assumptions?",
    r"goals?",
    r"constraints?",
    r"requests?",
    r"quer(?:y|ies)",
    r"requested",
    r"questions?",
    r"clarif\w*",
    r"opinions?",
    # stakeholders and domains
    r"clinicians?",
    r"doctors?",
    r"physicians?",
    r"lawyers?",
    r"professionals?",
    r"experts?",
    r"children",
    r"minors?",
    r"medical",
    r"legal",
    r"financial",
)

#: A text shorter than this many words cannot state a criterion, unless it names a cue.
MIN_WORDS = 5

#: A ``compare`` that has no ``?`` must instruct a choice with one of these verbs.
CHOICE_IMPERATIVE: tuple[str, ...] = (
    r"choose",
    r"select",
    r"pick",
    r"compare",
    r"rank",
    r"decide",
    r"determine which",
    r"identify which",
    r"indicate which",
)

#: Words that show a ``compare`` asks for a choice between responses.
CHOICE_REFERENCE: tuple[str, ...] = (
    r"which(?:ever)?",
    r"choose",
    r"chosen",
    r"select",
    r"pick",
    r"prefer(?:red|able|s)?",
    r"compare",
    r"rank",
    r"more",
    r"less",
    r"fewer",
    r"better",
    r"worse",
    r"best",
    r"worst",
    r"most",
    r"least",
    r"rather",
    r"responses",
    r"options",
    r"between",
    r"either",
    r"\w+er than",
    r"a or b",
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

#: Explicit joins of two demands in one sentence ("... and also explain ...").
DEMAND_JOINS: tuple[str, ...] = (r"and also", r"as well as", r"and additionally")

#: Imperative clauses in one prompt text at which it counts as compound.
MIN_COMPOUND_DEMANDS = 3

#: Effects on more unrelated behaviors than this make a principle compound.
MAX_BEHAVIOR_CLUSTERS = 2

#: A clause that starts with one of these is a negated demand.
NEGATIVE_OPENERS: tuple[str, ...] = (
    r"do not",
    r"don'?t",
    r"never",
    r"avoid(?:s|ing)?",
    r"refrain",
    r"stop",
    r"must not",
    r"should not",
    r"shouldn'?t",
    r"no longer",
    r"not",
    r"no",
)

#: The prompt forms checked for negative-only wording (a ``revise`` asks to remove
#: problems by nature: "rewrite the response to remove ..." is not flagged).
NEGATIVE_FRAMING_FIELDS: tuple[str, ...] = ("critique", "compare")

#: After "which response" / "the response that", these make a compare criterion negative.
NEGATIVE_PREDICATES: tuple[str, ...] = (
    r"does not",
    r"doesn'?t",
    r"do not",
    r"don'?t",
    r"never",
    r"avoids?",
    r"is not",
    r"isn'?t",
    r"fails? to",
    r"contains? no",
    r"has no",
    r"refrains? from",
)

#: Tags that mark a principle as harm-minimizing (CAI307).
HARM_TAGS: frozenset[str] = frozenset({"safety", "harm", "harmless", "harmlessness", "harms"})

#: Tags that mark a principle as a helpfulness counterweight (CAI307).
HELP_TAGS: frozenset[str] = frozenset({"helpfulness", "helpful", "help", "usefulness"})

#: A behavior whose name or description matches this is a refusal.
REFUSAL_BEHAVIOR = re.compile(r"refus|declin|reject|deny|denies|withhold|abstain", re.IGNORECASE)

#: A behavior whose name or description matches this (and is not a refusal) helps.
HELPFUL_BEHAVIOR = re.compile(
    r"answer|instruction|detail|explain|explanation|inform|assist|help|complete|solution"
    r"|code|step|partial|example|comply|fulfil",
    re.IGNORECASE,
)

#: A compare that matches this is about helpfulness (CAI307).
HELPFULNESS_CUES = re.compile(
    r"\b(?:helpful\w*|helps?|goals?|useful\w*|usefulness|informative|answers? the|needs)\b", re.IGNORECASE
)

# ---------------------------------------------------------------- compiled patterns


def _alternation(parts: Iterable[str]) -> str:
    # longest first, so multi-word phrases win over their prefixes
    return "|".join(sorted(parts, key=len, reverse=True))


_FLAGS = re.IGNORECASE
_VAGUE_RE = re.compile(r"\b(?:" + _alternation(VAGUE_TERMS) + r")\b", _FLAGS)
_CUE_RE = re.compile(r"\b(?:" + _alternation(OBSERVABLE_CUES) + r")(?![\w-])", _FLAGS)
_WORD_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9'’\-]*")
_CHOICE_IMP_RE = re.compile(r"\b(?:" + _alternation(CHOICE_IMPERATIVE) + r")\b", _FLAGS)
_CHOICE_REF_RE = re.compile(r"(?:\b(?:" + _alternation(CHOICE_REFERENCE) + r")\b|\([ab]\))", _FLAGS)
_CLAUSE_SPLIT_RE = re.compile(r"[.!?;:]+(?:\s+|$)|\n+|,?\s+but\s+|,?\s+instead\b")
_FILLER_RE = re.compile(r"^(?:(?:" + _alternation(CLAUSE_FILLERS) + r")\b[\s,]*)+", _FLAGS)
_IMPERATIVE_RE = re.compile(r"^(?:" + _alternation(re.escape(v) for v in IMPERATIVE_VERBS) + r")\b", _FLAGS)
_JOIN_RE = re.compile(
    r"\b(?:" + _alternation(DEMAND_JOINS) + r")\s+(?:" + _alternation(re.escape(v) for v in IMPERATIVE_VERBS) + r")\b",
    _FLAGS,
)
_NEG_OPENER_RE = re.compile(r"^(?:" + _alternation(NEGATIVE_OPENERS) + r")\b", _FLAGS)
_NEG_PREDICATE_RE = re.compile(
    r"\b(?:which|whichever|the|a|an)\b[^.?!;]{0,60}?\b(?:response|responses|answer|answers|one|assistant)\b"
    r"(?:\s+(?:that|which|who))?\s+(?:" + _alternation(NEGATIVE_PREDICATES) + r")\b",
    _FLAGS,
)
_QUESTION_OPENER_RE = re.compile(r"^(?:which|whichever|what|how|who|does|is|are|do)\b", _FLAGS)

# ---------------------------------------------------------------- text analysis (cached by text)


@lru_cache(maxsize=65536)
def _words(text: str) -> int:
    return len(_WORD_RE.findall(text))


@lru_cache(maxsize=65536)
def _vague_terms(text: str) -> tuple[str, ...]:
    seen: list[str] = []
    for m in _VAGUE_RE.finditer(text):
        term = m.group(0).lower()
        if term not in seen:
            seen.append(term)
    return tuple(seen)


@lru_cache(maxsize=65536)
def _has_cue(text: str) -> bool:
    return _CUE_RE.search(text) is not None


def _mentions_behavior(text: str, behavior_patterns: tuple[str, ...]) -> bool:
    lowered = text.lower()
    return any(pattern in lowered for pattern in behavior_patterns)


@lru_cache(maxsize=65536)
def _clauses(text: str) -> tuple[str, ...]:
    out = []
    for raw in _CLAUSE_SPLIT_RE.split(text):
        clause = _FILLER_RE.sub("", raw.strip(" \t,\"'()"))
        if clause:
            out.append(clause)
    return tuple(out)


@lru_cache(maxsize=65536)
def _demand_count(text: str) -> int:
    count = sum(1 for clause in _clauses(text) if _IMPERATIVE_RE.match(clause))
    return count + len(_JOIN_RE.findall(text))


@lru_cache(maxsize=65536)
def _has_join(text: str) -> bool:
    return _JOIN_RE.search(text) is not None


@lru_cache(maxsize=65536)
def _text_negative_only(text: str, is_compare: bool) -> bool:
    """Every demand of ``text`` is negated and at least one is.

    A clause is negated when it opens with ``NEGATIVE_OPENERS``; in a ``compare``
    also when its criterion is ("the response that does not ...").
    """
    negative = positive = 0
    for clause in _clauses(text):
        if _NEG_OPENER_RE.match(clause) or (is_compare and _NEG_PREDICATE_RE.search(clause)):
            negative += 1
        elif _IMPERATIVE_RE.match(clause) or _QUESTION_OPENER_RE.match(clause) or _CHOICE_REF_RE.search(clause):
            positive += 1
    return negative > 0 and positive == 0


@lru_cache(maxsize=65536)
def _compare_problem(text: str) -> str | None:
    """Why ``text`` is not a question choosing between responses (None when it is)."""
    is_question = "?" in text or _CHOICE_IMP_RE.search(text.strip()) is not None
    if not is_question:
        return "is not a question or an instruction to choose between responses"
    if _CHOICE_REF_RE.search(text) is None:
        return "does not ask to choose between responses (it reads as a question about one response)"
    return None


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
    """What the lints need from the constitution, computed once per call."""

    def __init__(self, constitution: Constitution):
        self.constitution = constitution
        self.behavior_patterns = tuple(
            sorted({p for name in constitution.behaviors for p in (name.lower(), name.lower().replace("_", " "))})
        )
        # union-find of behaviors over exclusive sets: one cluster per set
        parent: dict[str, str] = {}

        def find(x: str) -> str:
            while parent.get(x, x) != x:
                x = parent[x]
            return x

        for ex in constitution.exclusives:
            members = [m.name for m in ex.members]
            for other in members[1:]:
                ra, rb = find(members[0]), find(other)
                if ra != rb:
                    parent[rb] = ra
        self._find = find
        refusal: set[str] = set()
        helpful: set[str] = set()
        for name, behavior in constitution.behaviors.items():
            label = name + " " + (behavior.description.value if behavior.description else "")
            if REFUSAL_BEHAVIOR.search(label):
                refusal.add(name)
            elif HELPFUL_BEHAVIOR.search(label):
                helpful.add(name)
        # the alternatives to refusing: other members of an exclusive set with a refusal
        for ex in constitution.exclusives:
            members = {m.name for m in ex.members}
            if members & refusal:
                helpful |= members - refusal
        self.refusal_behaviors = frozenset(refusal)
        self.helpful_behaviors = frozenset(helpful)

    def cluster(self, behavior: str) -> str:
        return self._find(behavior)


def _prompt_texts(p: ast.Principle) -> list[tuple[str, ast.Text]]:
    return [(name, getattr(p, name)) for name in PROMPT_FIELDS if getattr(p, name) is not None]


def _vague(p: ast.Principle, ctx: _Context, where: dict) -> list[Diagnostic]:
    out = []
    for field, text in _prompt_texts(p):
        value = text.value
        if _has_cue(value) or _mentions_behavior(value, ctx.behavior_patterns):
            continue
        vague = _vague_terms(value)
        words = _words(value)
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


def _compound(p: ast.Principle, ctx: _Context, where: dict) -> list[Diagnostic]:
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
    for field, text in _prompt_texts(p):
        demands = _demand_count(text.value)
        if demands >= MIN_COMPOUND_DEMANDS or (demands >= 2 and _has_join(text.value)):
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


def _negative_only(p: ast.Principle, where: dict) -> list[Diagnostic]:
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
    for field, text in _prompt_texts(p):
        if field in NEGATIVE_FRAMING_FIELDS and _text_negative_only(text.value, field == "compare"):
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
                    "request fixes it; add a `revise` that asks to rewrite the response to remove what the critique finds"
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


def _no_examples(p: ast.Principle, where: dict) -> list[Diagnostic]:
    if p.examples or not _prompt_texts(p):
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


def _no_prompt_forms(p: ast.Principle, where: dict) -> list[Diagnostic]:
    if _prompt_texts(p):
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
    return [
        *_vague(p, ctx, where),
        *_compare_question(p, where),
        *_compound(p, ctx, where),
        *_negative_only(p, where),
        *_unpaired(p, where),
        *_no_examples(p, where),
        *_no_prompt_forms(p, where),
    ]


# ---------------------------------------------------------------- over-refusal (CAI307)


def _is_harm_minimizing(p: ast.Principle, ctx: _Context) -> bool:
    tags = {t.lower() for t in p.tag_names}
    return bool(
        p.effect_behaviors("forbid")
        or set(p.effect_behaviors("require")) & ctx.refusal_behaviors
        or tags & HARM_TAGS
        or p.id.name.lower().startswith("harm")
    )


def _is_counterweight(p: ast.Principle, ctx: _Context) -> bool:
    tags = {t.lower() for t in p.tag_names}
    if tags & HELP_TAGS:
        return True
    if _is_harm_minimizing(p, ctx):
        return False
    positive = set(p.effect_behaviors("require")) | set(p.effect_behaviors("prefer"))
    if positive & ctx.helpful_behaviors:
        return True
    return p.compare is not None and HELPFULNESS_CUES.search(p.compare.value) is not None


def _over_refusal(constitution: Constitution, deployment: ResolvedDeployment, ctx: _Context) -> list[Diagnostic]:
    facets = constitution.facets
    base: Projection | None = {}
    for assumption in deployment.assumptions:
        base = _meet(base, _project(assumption, facets))
    if base is None:  # no reachable scenario: CAI204's business
        return []
    harm = [p for p in deployment.principles if _is_harm_minimizing(p, ctx)]
    if not harm:
        return []
    weights: list[tuple[str, Projection]] = []
    seen_proj: set[tuple] = set()
    for p in deployment.principles:
        if not _is_counterweight(p, ctx):
            continue
        proj = _meet(base, _project(p.when, facets))
        if proj is None:
            continue
        key = tuple(sorted((k, tuple(sorted(v))) for k, v in proj.items()))
        if key in seen_proj:
            continue
        seen_proj.add(key)
        weights.append((p.id.name, proj))
    out = []
    for p in harm:
        proj = _meet(base, _project(p.when, facets))
        if proj is None:
            continue  # never active: CAI205's business
        if any(pid != p.id.name and _meet(proj, wproj) is not None for pid, wproj in weights):
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


def lint_principles(constitution: Constitution, deployment: ResolvedDeployment) -> list[Diagnostic]:
    """CAI301-CAI308 over ``deployment``'s principles (after overrides), in principle order."""
    ctx = _context(constitution)
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
    for name in names:
        deployment = constitution.deployments.get(name)
        if deployment is None:
            continue
        covered.update(deployment.principle_ids)
        for d in lint_principles(constitution, deployment):
            key = (d.code, d.message, d.span) if d.code != rules.OVER_REFUSAL_RISK.code else (d.code, d.deployment, d.span)
            if key in seen:
                continue
            seen.add(key)
            out.append(d)
    if deployments is None:
        ctx = _context(constitution)
        for pid, p in constitution.principles.items():
            if pid not in covered and p.span.file == constitution.root:
                out.extend(_intrinsic(p, ctx, {}))
    return out


_CONTEXTS: dict[int, tuple[Constitution, _Context]] = {}


def _context(constitution: Constitution) -> _Context:
    # cache one context per constitution object (held strongly, so the id stays valid)
    hit = _CONTEXTS.get(id(constitution))
    if hit is not None and hit[0] is constitution:
        return hit[1]
    ctx = _Context(constitution)
    if len(_CONTEXTS) > 8:
        _CONTEXTS.clear()
    _CONTEXTS[id(constitution)] = (constitution, ctx)
    return ctx
