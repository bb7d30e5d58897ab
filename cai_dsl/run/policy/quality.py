"""Quality checks any target can afford: plain text statistics, no model.

Each check returns a named failure reason:

* ``empty``, ``too_short``: nothing, or fewer than ``min_words`` words;
* ``unfinished``: generation hit the token limit and the text does not end a sentence;
* ``repeated_ngrams``, ``repeated_lines``, ``repeated_run`` (the same word 4+ times in a row, or the
  same 2-4 word phrase 3+ times in a row: "lazy lazy lazy lazy", "I'm afraid, I'm afraid, I'm afraid"),
  ``low_diversity`` (few distinct words in a long text) — together the :data:`DEGENERATE` reasons;
* ``off_topic``: too few of the prompt's content words (crudely stemmed) in the response; never
  applied to refusals, which need not repeat the request;
* ``meta_commentary``: talk about the critique/revision process or the assistant itself instead of an
  answer ("As an AI language model", "Here is the revised response", "Revision:", "CritiqueRequest", "the
  assistant's response", "because I'm a chatbot": a refusal whose reason is not the request).
"""

from __future__ import annotations

import re
from collections import Counter

from pydantic import BaseModel, ConfigDict

__all__ = ["DEGENERATE", "QualityConfig", "QualityReport", "check_quality", "content_words", "words"]

DEGENERATE = frozenset({"repeated_ngrams", "repeated_lines", "repeated_run", "low_diversity"})

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")
_END = re.compile(r"""[.!?:;)\]}"'`*…]\s*$|```\s*$""")
_META = re.compile(
    r"\bas an ai(?: language)? model\b"
    r"|\bhere(?:'s| is) (?:the|a|my) (?:revised|rewritten|improved) (?:response|answer|version)\b"
    r"|^\s*(?:revision|critique|revised response)\s*:"
    r"|\b(?:critique|revision)\s*request\b"
    r"|\bthe assistant'?s (?:response|answer|reply)\b"
    r"|\bthe (?:original|previous) response\b"
    # a refusal whose reason is the assistant itself instead of the request: "I can't help with that, because
    # I'm a chatbot / a bit of a culinary expert / not here"; and "because I'm a chatbot" anywhere
    r"|\b(?:can(?:no|'|’)?t|won't|will not)\s+(?:help|assist)\b[^.!?\n]{0,40}?\b(?:because|since|as) I(?:'m| am)\b"
    r"|\b(?:because|since) I(?:'m| am) (?:just |only |not )?(?:a |an )?(?:[\w-]+ ){0,2}"
    r"(?:chatbot|bot|ai|machine|computer|robot|language model|(?:digital|virtual|ai) assistant)"
    r"(?=\s*(?:[.,;:!?]|$|(?:and|that|designed|built|programmed|trained|with|who)\b))",
    re.IGNORECASE | re.MULTILINE,
)
STOPWORDS = frozenset(
    """a about above after again all also am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have
    having he her here hers him his how i if in into is it its itself just let me more most my no nor not
    now of off on once only or other our out over own please same she should so some such than that the
    their them then there these they this those through to too under until up very was we were what when
    where which while who whom why will with would you your yours tell give want need know like get make
    help someone something thing things way ways""".split()
)
_SUFFIXES = ("ing", "ed", "es", "ly", "s")


class QualityConfig(BaseModel):
    """Thresholds of the quality checks."""

    model_config = ConfigDict(frozen=True)

    min_words: int = 3
    ngram: int = 3
    max_repeated_ngram_ratio: float = 0.5  # share of repeated n-grams, texts of >= min_ngrams n-grams
    min_ngrams: int = 8
    max_line_repeats: int = 2  # a non-trivial line appearing more often than this
    min_line_chars: int = 8
    min_diversity_words: int = 30
    min_distinct_ratio: float = 0.3
    min_topic_overlap: float = 0.1
    min_prompt_content_words: int = 3


class QualityReport(BaseModel):
    """``ok`` when no check failed; ``failures`` names the failed checks in a fixed order."""

    model_config = ConfigDict(frozen=True)

    ok: bool
    failures: tuple[str, ...] = ()

    @property
    def degenerate(self) -> bool:
        return any(f in DEGENERATE for f in self.failures)


def words(text: str) -> list[str]:
    """Lower-case word tokens (apostrophes normalised; punctuation dropped)."""
    return _WORD.findall(text.lower().replace("\u2019", "'"))


def _stem(word: str) -> str:
    for suffix in _SUFFIXES:
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            word = word[: -len(suffix)]
            break
    return word[:6]


def content_words(text: str) -> set[str]:
    """Stems of the words that carry the topic: not stopwords, at least 3 letters."""
    return {_stem(w) for w in words(text) if len(w) >= 3 and w not in STOPWORDS and not w.isdigit()}


def _repeated_ngrams(tokens: list[str], cfg: QualityConfig) -> bool:
    grams = [tuple(tokens[i : i + cfg.ngram]) for i in range(len(tokens) - cfg.ngram + 1)]
    if len(grams) < cfg.min_ngrams:
        return False
    return 1 - len(set(grams)) / len(grams) > cfg.max_repeated_ngram_ratio


def _repeated_lines(text: str, cfg: QualityConfig) -> bool:
    lines = [" ".join(words(line)) for line in text.splitlines()]
    counts = Counter(line for line in lines if len(line) >= cfg.min_line_chars)
    return any(c > cfg.max_line_repeats for c in counts.values())


def _repeated_run(tokens: list[str]) -> bool:
    """A word 4+ times in a row, or a 2-4 word phrase 3+ times in a row."""
    for n in range(1, 5):
        need = 4 if n == 1 else 3
        for i in range(len(tokens) - n * need + 1):
            gram = tokens[i : i + n]
            if all(tokens[i + k * n : i + (k + 1) * n] == gram for k in range(1, need)):
                return True
    return False


def _low_diversity(tokens: list[str], cfg: QualityConfig) -> bool:
    return len(tokens) >= cfg.min_diversity_words and len(set(tokens)) / len(tokens) < cfg.min_distinct_ratio


def _off_topic(response: str, prompt: str, cfg: QualityConfig) -> bool:
    wanted = content_words(prompt)
    if len(wanted) < cfg.min_prompt_content_words:
        return False
    return len(wanted & content_words(response)) / len(wanted) < cfg.min_topic_overlap


def check_quality(
    response: str,
    prompt: str | None = None,
    *,
    finish_reason: str | None = None,
    refusal: bool = False,
    config: QualityConfig | None = None,
) -> QualityReport:
    """Run every check; ``finish_reason == "length"`` enables ``unfinished``, a ``prompt`` enables
    ``off_topic`` (skipped when ``refusal``)."""
    cfg = config or QualityConfig()
    text = response.strip()
    tokens = words(text)
    failures: list[str] = []
    if not text:
        return QualityReport(ok=False, failures=("empty",))
    if len(tokens) < cfg.min_words:
        failures.append("too_short")
    if finish_reason == "length" and not _END.search(text):
        failures.append("unfinished")
    if _repeated_ngrams(tokens, cfg):
        failures.append("repeated_ngrams")
    if _repeated_lines(text, cfg):
        failures.append("repeated_lines")
    if _repeated_run(tokens):
        failures.append("repeated_run")
    if _low_diversity(tokens, cfg):
        failures.append("low_diversity")
    if prompt and not refusal and _off_topic(text, prompt, cfg):
        failures.append("off_topic")
    if _META.search(text):
        failures.append("meta_commentary")
    return QualityReport(ok=not failures, failures=tuple(failures))
