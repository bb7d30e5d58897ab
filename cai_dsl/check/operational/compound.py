"""CAI303 compound-principle: effects on more than ``MAX_BEHAVIOR_CLUSTERS`` unrelated
behaviors (behaviors of one ``exclusive`` set count as one), or a prompt text with
``MIN_COMPOUND_DEMANDS`` or more imperative clauses, or two joined by "and also", or a
critique/compare sentence joining ``MIN_JOINED_CRITERIA`` criteria, each a third-person verb
(``RESPONSE_VERBS``) after a ``CRITERION_JOINS`` word: "cites sources and states its
uncertainty" (an enumeration of harms after one verb is one criterion)."""

from __future__ import annotations

from cai_dsl.check.operational.context import LintContext, Texts
from cai_dsl.diagnostics import Diagnostic, rules
from cai_dsl.lang import ast
from cai_dsl.check.operational.lexicon import (
    CRITERIA_FIELDS,
    MAX_BEHAVIOR_CLUSTERS,
    MIN_COMPOUND_DEMANDS,
    MIN_JOINED_CRITERIA,
)
from cai_dsl.check.operational.text import analyze

RULE = rules.COMPOUND_PRINCIPLE


def check(p: ast.Principle, texts: Texts, ctx: LintContext, where: dict) -> list[Diagnostic]:
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
            RULE(
                f"`{p.id.name}` has effects on {len(clusters)} unrelated behaviors ({names})",
                span,
                help=help_text,
                principles=[p.id.name],
                **where,
            )
        ]
    for field, text in texts:
        facts = analyze(text.value)
        demands = facts.demands
        criteria = facts.criteria if field in CRITERIA_FIELDS else 0
        if criteria >= MIN_JOINED_CRITERIA and demands < MIN_COMPOUND_DEMANDS:
            message = f"`{p.id.name}` {field} joins {criteria} criteria in one sentence"
        elif demands >= MIN_COMPOUND_DEMANDS or (demands >= 2 and facts.joined_demands):
            message = f"`{p.id.name}` {field} joins {demands} separate demands"
        else:
            continue
        return [RULE(message, text.span, help=help_text, principles=[p.id.name], **where)]
    return []
