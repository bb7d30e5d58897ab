"""CAI302 compare-not-a-question: a ``compare`` that neither contains ``?`` nor uses a
choice verb (``CHOICE_IMPERATIVE``: choose, select, pick...), or that names no choice
(``CHOICE_REFERENCE``: which, more/less, better, than, responses...)."""

from __future__ import annotations

from cai_dsl.check.operational.context import LintContext, Texts
from cai_dsl.diagnostics import Diagnostic, rules
from cai_dsl.lang import ast
from cai_dsl.check.operational.text import compare_problem

RULE = rules.COMPARE_NOT_A_QUESTION


def check(p: ast.Principle, texts: Texts, ctx: LintContext, where: dict) -> list[Diagnostic]:
    if p.compare is None:
        return []
    problem = compare_problem(p.compare.value)
    if problem is None:
        return []
    return [
        RULE(
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
