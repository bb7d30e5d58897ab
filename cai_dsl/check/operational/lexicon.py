"""The word lists of the operationalizability lints, and how they match text.

Every heuristic of :mod:`cai_dsl.check.operational` reads these module constants, so a
reviewer can see exactly why a principle was flagged, and extend the lists.

Lexicon entries are lowercase words; ``word*`` matches every word starting with
``word``; an entry with a space is a phrase matched on word boundaries. Text is
split into words at anything but letters, digits, inner apostrophes and hyphens; a
hyphenated word also counts as its parts ("weapon-making" contains "weapon").
"""

from __future__ import annotations

import re
from typing import Iterable

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

#: Fixed phrases in which a ``VAGUE_TERMS`` word names a concrete thing rather than a
#: judgement ("good mental health" is a topic one can look for; "that is good" is not):
#: the vague word inside one of these does not count.
VAGUE_EXEMPT_PHRASES: tuple[str, ...] = (
    "good mental health", "good health", "good faith", "in good faith", "best practice",
    "best practices", "best interest", "best interests", "right to",
    "fine print", "fine-tuning", "fine-tuned", "good standing", "bad actor", "bad actors",
    "positive feedback", "positive reinforcement", "moral dilemma", "ethical dilemma",
)

#: A clause that is only a bare judgement -- a pronoun, a copula, an optional
#: intensifier, then nothing but ``VAGUE_TERMS`` words ("..., and that is good",
#: "this is appropriate") -- is vague even when the text names a cue elsewhere.
JUDGEMENT_SUBJECTS: tuple[str, ...] = ("that", "this", "it", "which", "that's", "this's", "it's")
JUDGEMENT_COPULAS: tuple[str, ...] = ("is", "was", "seems", "sounds", "looks", "feels", "would be", "will be", "be")
JUDGEMENT_INTENSIFIERS: tuple[str, ...] = ("very", "really", "so", "quite", "always", "all", "more", "most", "also", "not", "just")

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

#: Coordinating words that join two criteria of one compare/critique sentence when a
#: third-person verb follows ("cites sources *and states* its uncertainty").
CRITERION_JOINS: tuple[str, ...] = ("and", "and also", "as well as", "while also", "and additionally")

#: Verbs that state what a response does, in the third person ("cites", "gives"): the
#: ``IMPERATIVE_VERBS`` with ``-s``/``-es`` plus these. Two of them joined by a
#: ``CRITERION_JOINS`` word in one sentence are two criteria (CAI303).
RESPONSE_VERBS_EXTRA: tuple[str, ...] = (
    "contains", "follows", "respects", "protects", "treats", "supports", "admits", "names",
    "asks", "answers", "helps", "includes", "mentions", "offers", "shows", "uses", "gives",
)

#: Criteria joined in one sentence of a compare/critique at which it counts as compound.
MIN_JOINED_CRITERIA = 2

#: The prompt forms checked for joined criteria (a ``revise`` lists what the rewrite
#: must do, often several facets of one demand: "states its limitations and says when
#: to consult a clinician").
CRITERIA_FIELDS: tuple[str, ...] = ("critique", "compare")

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
    "refrains from", "least likely to", "less likely to", "is least likely to",
    "is less likely to", "are less likely to", "is unlikely to", "is not likely to",
    "is the least likely to", "would be least likely to", "would be less likely to",
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

TOKEN_RE = re.compile(r"[a-z0-9]+(?:['\-][a-z0-9]+)*")
# a word, or a clause break: sentence punctuation followed by a space or the end, or a newline
LEX_RE = re.compile(r"([a-z0-9]+(?:['\-][a-z0-9]+)*)|([.!?;:]+(?=\s|$)|\n)")
CLAUSE_BREAK_WORDS = frozenset({"but", "instead"})


def tokenize(text: str) -> tuple[str, ...]:
    return tuple(TOKEN_RE.findall(text.lower().replace("\u2019", "'")))


class Lexicon:
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


VAGUE = Lexicon(VAGUE_TERMS)
VAGUE_EXEMPT = tuple(" " + e + " " for e in VAGUE_EXEMPT_PHRASES)
VAGUE_EXEMPT_WORDS = frozenset(e.split()[0] for e in VAGUE_EXEMPT_PHRASES)
SUBJECTS = frozenset(JUDGEMENT_SUBJECTS)
COPULAS = Lexicon(JUDGEMENT_COPULAS)
INTENSIFIERS = frozenset(JUDGEMENT_INTENSIFIERS)
RESPONSE_VERBS = frozenset(
    [v + ("es" if v.endswith(("s", "sh", "ch", "x", "z")) else "s") for v in IMPERATIVE_VERBS if v.isalpha()]
    + [v[:-1] + "ies" for v in IMPERATIVE_VERBS if v.endswith("y") and v[-2] not in "aeiou"]
    + list(RESPONSE_VERBS_EXTRA)
) - {"dos", "bes", "nevers", "alwayss", "stops"}
CRITERION_JOIN_SEQS = tuple(sorted((tuple(j.split()) for j in CRITERION_JOINS), key=len, reverse=True))
CUES = Lexicon(OBSERVABLE_CUES)
CHOICE_IMP = Lexicon(CHOICE_IMPERATIVE)
CHOICE_REF = Lexicon(CHOICE_REFERENCE)
IMPERATIVE = frozenset(IMPERATIVE_VERBS)
FILLERS = Lexicon(CLAUSE_FILLERS)
JOINS = tuple(tuple(j.split()) for j in DEMAND_JOINS)
JOIN_WORDS = frozenset(j[0] for j in JOINS)
NEG_OPENERS = Lexicon(NEGATIVE_OPENERS)
# words that must occur for a negative compare criterion to be possible (a cheap pre-filter)
NEG_WORDS = frozenset(w for entry in NEGATIVE_PREDICATES for w in entry.split()) - {
    "is", "to", "from", "has", "do", "does", "contain", "contains"
}
NEG_PREDICATE_RE = re.compile(
    r"\b(?:which|whichever|the|a|an)\b[^.?!;]{0,60}?\b(?:response|responses|answer|answers|one|assistant)\b"
    r"(?:\s+(?:that|which|who))?\s+(?:"
    + "|".join(re.escape(p) for p in sorted(NEGATIVE_PREDICATES, key=len, reverse=True))
    + r")\b"
)
