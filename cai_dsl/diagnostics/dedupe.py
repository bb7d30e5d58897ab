"""The one de-duplication pass: a finding seen several times (from several deployments,
or from several root files importing the same file) is kept once per its rule's scope."""

from __future__ import annotations

from typing import Iterable

from cai_dsl.diagnostics.model import Diagnostic
from cai_dsl.diagnostics.rules import rule_by_code


def dedupe_key(d: Diagnostic) -> tuple:
    """Identity of a finding under its rule's scope (unknown codes: per deployment).

    A ``file``-scoped finding is one per code, message and location; its message may
    name the deployment it was found in (`` in deployment `X` ``), which is ignored.
    A ``deployment``-scoped finding is one per code, message, location and deployment.
    """
    rule = rule_by_code(d.code)
    if rule is None or rule.scope == "deployment":
        return (d.code, d.message, d.span, d.deployment)
    message = d.message.replace(f" in deployment `{d.deployment}`", "") if d.deployment else d.message
    return (d.code, message, d.span)


def dedupe(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    """``diagnostics`` without repeats (see :func:`dedupe_key`), first occurrence kept, order kept."""
    seen: set[tuple] = set()
    out: list[Diagnostic] = []
    for d in diagnostics:
        key = dedupe_key(d)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out
