"""Observable behaviors: what a behavior's ``marker`` and ``pattern`` strings mean as
detectors, and their validation (CAI121 invalid-pattern, reported by the resolver).

A *marker* is a phrase matched case-insensitively on word boundaries: it must not start or
end inside a word, any run of whitespace in the phrase matches any run of whitespace in the
response, and a straight apostrophe also matches a typographic one (``'`` and ``’``). A
*pattern* is a Python regular expression searched case-insensitively (:data:`PATTERN_FLAGS`).
Judge questions and openings are plain text, used downstream (see docs/language.md,
"Observable behaviors").
"""

from __future__ import annotations

import re

from cai_dsl.diagnostics import rules
from cai_dsl.diagnostics import Diagnostic
from cai_dsl.lang import ast

PATTERN_FLAGS = re.IGNORECASE
"""The flags every marker and pattern is compiled with."""

_APOSTROPHE = "['\u2019]"


def marker_regex(phrase: str) -> str:
    """The regular expression (compiled with :data:`PATTERN_FLAGS`) of a marker phrase."""
    words = [re.escape(word).replace("'", _APOSTROPHE) for word in phrase.split()]
    return r"(?<!\w)" + r"\s+".join(words) + r"(?!\w)"


def compile_detectors(observe: ast.Observe | None) -> tuple[re.Pattern[str], ...]:
    """The compiled markers and patterns of a behavior, in that order (invalid ones skipped:
    the resolver reports them)."""
    if observe is None:
        return ()
    sources = [marker_regex(m.value) for m in observe.markers if m.value.strip()]
    sources += [p.value for p in observe.patterns]
    compiled = []
    for source in sources:
        try:
            compiled.append(re.compile(source, PATTERN_FLAGS))
        except re.error:
            continue
    return tuple(compiled)


def validate_observe(behavior: ast.Behavior) -> list[Diagnostic]:
    """CAI121 for each empty marker and each pattern that does not compile or that matches
    the empty string (it would fire on every response)."""
    observe = behavior.observe
    if observe is None:
        return []
    name = behavior.name.name
    out = []
    for marker in observe.markers:
        if not marker.value.strip():
            out.append(
                rules.INVALID_PATTERN(
                    f"marker of behavior `{name}` is empty",
                    marker.span,
                    help="a marker is a phrase that shows the behavior, e.g. \"I can't help\"",
                )
            )
    for pattern in observe.patterns:
        try:
            compiled = re.compile(pattern.value, PATTERN_FLAGS)
        except re.error as exc:
            where = f" at position {exc.pos}" if exc.pos is not None else ""
            out.append(
                rules.INVALID_PATTERN(
                    f"pattern of behavior `{name}` is not a valid regular expression: {exc.msg}{where}",
                    pattern.span,
                    help="patterns are Python regular expressions; in a `.const` string a regex "
                    "backslash is written `\\\\` (`\"\\\\bI can't\\\\b\"`)",
                )
            )
            continue
        if compiled.search("") is not None:
            out.append(
                rules.INVALID_PATTERN(
                    f"pattern of behavior `{name}` matches the empty string, so it fires on every response",
                    pattern.span,
                    help="make at least one part of the pattern mandatory (e.g. `+` instead of `*`)",
                )
            )
    return out
