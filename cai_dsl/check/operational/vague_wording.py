"""CAI301 vague-wording: a prompt text that names no observable cue (``OBSERVABLE_CUES``
or a declared behavior's name) and uses a vague evaluative term (``VAGUE_TERMS``, not
inside a ``VAGUE_EXEMPT_PHRASES`` phrase such as "good mental health") or has fewer
than ``MIN_WORDS`` words; or, cue or not, a clause that is a bare judgement ("..., and
that is good": ``JUDGEMENT_SUBJECTS`` + ``JUDGEMENT_COPULAS`` + only vague terms)."""

from __future__ import annotations

from cai_dsl.check.operational.context import LintContext, Texts
from cai_dsl.diagnostics import Diagnostic, rules
from cai_dsl.lang import ast
from cai_dsl.check.operational.lexicon import MIN_WORDS
from cai_dsl.check.operational.text import analyze

RULE = rules.VAGUE_WORDING


def check(p: ast.Principle, texts: Texts, ctx: LintContext, where: dict) -> list[Diagnostic]:
    out = []
    for field, text in texts:
        facts = analyze(text.value)
        vague = facts.vague
        words = facts.words
        if facts.judgements:
            terms = ", ".join(f"\"{t}\"" for t in facts.judgements)
            message = f"`{p.id.name}` {field} judges something {terms} without saying what to observe"
        elif facts.has_cue or any(b in facts.joined for b in ctx.behavior_phrases):
            continue
        elif vague:
            terms = ", ".join(f"\"{t}\"" for t in vague)
            message = f"`{p.id.name}` {field} uses {terms} but names nothing observable in a response"
        elif words < MIN_WORDS:
            message = f"`{p.id.name}` {field} is too short ({words} words) to state an observable criterion"
        else:
            continue
        out.append(
            RULE(
                message,
                text.span,
                help=(
                    "a model cannot check an evaluative word like \"good\" or \"appropriate\" against a response; "
                    "say what to look for instead (a behavior such as a caveat, sources, step-by-step "
                    "instructions, or a concrete kind of harm such as \"dangerous or illegal\")"
                ),
                principles=[p.id.name],
                **where,
            )
        )
    return out
