"""Observability lints (CAI310, CAI311): can execution see the behaviors principles talk about?

A behavior that a principle requires, forbids or prefers reaches execution only through its
``marker``/``pattern`` detectors (the policy score) or its ``judge`` question (evaluation);
a behavior with neither constrains nothing a trainer or an evaluator can measure.

* CAI310 unobservable-behavior: a behavior used by a principle included in a deployment that
  has no marker, no pattern and no judge question; reported once, at the behavior, for the
  first deployment and principle that use it.
* CAI311 judge-not-a-question: a ``judge`` text that does not end with ``?`` (a judge model
  answers it yes or no); checked for the behaviors declared in the root file and those used
  by its deployments.
"""

from __future__ import annotations

from typing import Iterable

from cai_dsl.diagnostics import Diagnostic, Related, rules
from cai_dsl.lang import ast
from cai_dsl.lang.resolver import Constitution

_VERBS = {"require": "required", "forbid": "forbidden", "prefer": "preferred"}


def _uses(constitution: Constitution, deployments: Iterable[str]) -> dict[str, tuple[str, str, ast.Effect]]:
    """behavior name -> (deployment, principle id, effect) of its first use."""
    uses: dict[str, tuple[str, str, ast.Effect]] = {}
    for name in deployments:
        deployment = constitution.deployments.get(name)
        if deployment is None:
            continue
        for principle in deployment.principles:
            for effect in principle.effects:
                for ident in effect.behaviors:
                    uses.setdefault(ident.name, (name, principle.id.name, effect))
    return uses


def _unobservable(constitution: Constitution, uses: dict[str, tuple[str, str, ast.Effect]]) -> list[Diagnostic]:
    out = []
    for name, (deployment, pid, effect) in uses.items():
        behavior = constitution.behaviors.get(name)
        if behavior is None or (behavior.observe is not None and behavior.observe.detectable):
            continue
        verb = _VERBS[effect.effect]
        out.append(
            rules.UNOBSERVABLE_BEHAVIOR(
                f"behavior `{name}` is {verb} by `{pid}` in deployment `{deployment}` but cannot be observed: "
                "it has no marker, pattern or judge question",
                behavior.name.span,
                help=f'say how it shows in a response: `behavior {name} "..." {{ marker "..."  judge "...?" }}` '
                "(docs/language.md, Observable behaviors)",
                related=[Related(span=effect.span, message=f"{verb} by `{pid}` here")],
                principles=[pid],
                deployment=deployment,
            )
        )
    return out


def _judges_not_questions(behaviors: Iterable[ast.Behavior]) -> list[Diagnostic]:
    out = []
    for behavior in behaviors:
        for judge in behavior.observe.judges if behavior.observe is not None else ():
            if judge.value.rstrip().endswith("?"):
                continue
            out.append(
                rules.JUDGE_NOT_A_QUESTION(
                    f"judge text of behavior `{behavior.name.name}` is not a yes/no question",
                    judge.span,
                    help='ask what a yes answer confirms, ending with "?": "Does the response decline the request?"',
                )
            )
    return out


def lint_observability(constitution: Constitution, deployments: Iterable[str] | None = None) -> list[Diagnostic]:
    """CAI310 and CAI311 over every (or the named) deployment of ``constitution``."""
    names = list(constitution.deployments) if deployments is None else list(deployments)
    uses = _uses(constitution, names)
    judged = [
        b for name, b in constitution.behaviors.items() if name in uses or b.span.file == constitution.root
    ]
    return [*_unobservable(constitution, uses), *_judges_not_questions(judged)]
