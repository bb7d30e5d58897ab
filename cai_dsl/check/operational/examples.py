"""CAI306 no-examples: prompt forms but no ``example`` / ``example compare`` block."""

from __future__ import annotations

from cai_dsl.check.operational.context import LintContext, Texts
from cai_dsl.diagnostics import Diagnostic, rules
from cai_dsl.lang import ast

RULE = rules.NO_EXAMPLES


def check(p: ast.Principle, texts: Texts, ctx: LintContext, where: dict) -> list[Diagnostic]:
    if p.examples or not texts:
        return []
    wanted = []
    if p.critique is not None or p.revise is not None:
        wanted.append("`example { prompt response critique revision }`")
    if p.compare is not None:
        wanted.append("`example compare { prompt a b better }`")
    return [
        RULE(
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
