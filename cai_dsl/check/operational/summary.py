"""Aggregation of the noisy lints, after suppressions (so an ignore comment on one
principle takes it out of the summary):

* CAI306 no-examples: one finding per file listing every principle without examples,
  on the first of them (the others as related locations);
* CAI307 over-refusal-risk: one finding per deployment listing its harm-minimizing
  principles without a counterweight, on the first of them (the deployment and the
  others as related locations).

A group of one keeps the single finding unchanged. ``cai lint --ignore CAI306`` (or
``[tool.cai] ignore``) silences a summary; ``# cai: ignore[CAI306]`` before a principle
drops that principle from it.
"""

from __future__ import annotations

from typing import Iterable

from cai_dsl.diagnostics import Diagnostic, Related, rules

__all__ = ["SUMMARIZED_CODES", "summarize"]

#: The codes merged into one finding per group, and how a group is keyed.
SUMMARIZED_CODES: tuple[str, ...] = (rules.NO_EXAMPLES.code, rules.OVER_REFUSAL_RISK.code)

_LISTED = 8  # principles named in a summary message before "and N more"


def _names(ids: list[str]) -> str:
    shown = ", ".join(f"`{i}`" for i in ids[:_LISTED])
    return shown + (f" and {len(ids) - _LISTED} more" if len(ids) > _LISTED else "")


def _key(d: Diagnostic) -> tuple:
    if d.code == rules.NO_EXAMPLES.code:
        return (d.code, d.span.file if d.span else None)
    return (d.code, d.deployment)


def _merge(group: list[Diagnostic]) -> Diagnostic:
    first = group[0]
    ids = [p for d in group for p in d.principles[:1]]
    related = [Related(span=d.span, message=f"`{d.principles[0]}` declared here") for d in group[1:] if d.span]
    if first.code == rules.NO_EXAMPLES.code:
        message = f"{len(ids)} principles in this file have no few-shot examples: {_names(ids)}"
        help_text = (
            "few-shot examples show the model what a principle means in practice, and labelled compare examples "
            "are what the empirical check measures it against; add `example { prompt response critique revision }` "
            "blocks for critique/revise principles and `example compare { prompt a b better }` for compare "
            "principles (or `# cai: ignore[CAI306]` before a principle that needs none)"
        )
        return rules.NO_EXAMPLES(
            message, first.span, help=help_text, related=related, principles=ids, deployment=first.deployment,
            severity=first.severity,
        )
    message = (
        f"{len(ids)} harm-minimizing principles have no helpfulness principle that can be active alongside them "
        f"in deployment `{first.deployment}`: {_names(ids)}"
    )
    return rules.OVER_REFUSAL_RISK(
        message, first.span, help=first.help, related=[*first.related, *related], principles=ids,
        deployment=first.deployment, severity=first.severity,
    )


def summarize(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    """``diagnostics`` with each CAI306/CAI307 group merged into its first finding's place."""
    diagnostics = list(diagnostics)
    groups: dict[tuple, list[Diagnostic]] = {}
    for d in diagnostics:
        if d.code in SUMMARIZED_CODES and d.principles:
            groups.setdefault(_key(d), []).append(d)
    out = []
    for d in diagnostics:
        group = groups.get(_key(d)) if d.code in SUMMARIZED_CODES and d.principles else None
        if group is None or len(group) == 1:
            out.append(d)
        elif group[0] is d:
            out.append(_merge(group))
    return out
