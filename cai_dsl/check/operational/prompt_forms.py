"""CAI308 no-prompt-forms: no ``critique``, ``revise`` or ``compare`` at all."""

from __future__ import annotations

from cai_dsl.check.operational.context import LintContext, Texts
from cai_dsl.diagnostics import Diagnostic, rules
from cai_dsl.lang import ast

RULE = rules.NO_PROMPT_FORMS


def check(p: ast.Principle, texts: Texts, ctx: LintContext, where: dict) -> list[Diagnostic]:
    if texts:
        return []
    return [
        RULE(
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
