"""CAI304 negative-only-framing: only ``forbid`` effects and no ``require``/``prefer``;
or a critique/compare whose every demand is negated (``NEGATIVE_OPENERS``: don't,
never, avoid; in a compare also "the response that does not ...")."""

from __future__ import annotations

from cai_dsl.check.operational.context import LintContext, Texts
from cai_dsl.diagnostics import Diagnostic, rules
from cai_dsl.lang import ast
from cai_dsl.check.operational.lexicon import NEGATIVE_FRAMING_FIELDS
from cai_dsl.check.operational.text import analyze

RULE = rules.NEGATIVE_ONLY


_C3AI = (
    "C3AI (Kyrychenko et al., 2025) found that positively framed, behavior-based principles track human "
    "preferences better than negatively framed ones"
)


def check(p: ast.Principle, texts: Texts, ctx: LintContext, where: dict) -> list[Diagnostic]:
    forbids = p.effect_behaviors("forbid")
    if forbids and not p.effect_behaviors("require") and not p.effect_behaviors("prefer"):
        first = next(e for e in p.effects if e.effect == "forbid")
        return [
            RULE(
                f"`{p.id.name}` only forbids ({', '.join(forbids)}) and names no behavior to move towards",
                first.span,
                help=(
                    f"{_C3AI}; add a `prefer` (or `require`) of the behavior you want instead, "
                    "e.g. `prefer partial_answer` next to `forbid detailed_instructions`"
                ),
                principles=[p.id.name],
                **where,
            )
        ]
    for field, text in texts:
        if field not in NEGATIVE_FRAMING_FIELDS:
            continue
        facts = analyze(text.value)
        if facts.negative_only_compare if field == "compare" else facts.negative_only:
            return [
                RULE(
                    f"`{p.id.name}` {field} only says what not to do",
                    text.span,
                    help=(
                        f"{_C3AI}; name the behavior you want, e.g. \"Which response points the user to "
                        "a safer alternative?\" rather than \"Which response does not help?\""
                    ),
                    principles=[p.id.name],
                    **where,
                )
            ]
    return []
