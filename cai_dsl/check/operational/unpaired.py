"""CAI305 unpaired-critique-revise: a ``critique`` without a ``revise``, or the reverse."""

from __future__ import annotations

from cai_dsl.check.operational.context import LintContext, Texts
from cai_dsl.diagnostics import Diagnostic, rules
from cai_dsl.lang import ast

RULE = rules.UNPAIRED_CRITIQUE


def check(p: ast.Principle, texts: Texts, ctx: LintContext, where: dict) -> list[Diagnostic]:
    if p.critique is not None and p.revise is None:
        return [
            RULE(
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
            RULE(
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
