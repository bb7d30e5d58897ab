"""Operationalizability lints (CAI301-CAI308, CAI312): can a model actually use a principle?

A principle the model cannot evaluate constrains nothing. These lints look at each
principle of a deployment (after ``override``) with small, transparent heuristics,
one module per rule (its docstring says the heuristic, its ``RULE`` is the registry
entry, its ``check`` the lint); the word lists are in :mod:`.lexicon`. They never
call a model (the empirical check, CAI309, needs one: :mod:`cai_dsl.run.empirical`),
never enumerate scenarios, and are deterministic: the same constitution gives the
same diagnostics in the same order.

Entry points:

* :func:`lint_principles` -- one deployment's principles, every diagnostic tagged
  with the deployment's name.
* :func:`lint_constitution` -- every deployment of a constitution, repeats collapsed
  by rule scope (:func:`cai_dsl.diagnostics.dedupe.dedupe`: everything but CAI307 once
  per source location), plus the root file's principles that no deployment includes;
  also the near-duplicate pairs (CAI312, :mod:`.near_duplicate`) of each deployment.

The checker summarizes CAI306 per file and CAI307 per deployment after suppressions
(:mod:`.summary`); these entry points return one finding per principle.
"""

from __future__ import annotations

from typing import Callable, Iterable

from cai_dsl.core.gc import gc_paused
from cai_dsl.check.operational import (
    compare_question,
    compound,
    examples,
    near_duplicate,
    negative_framing,
    over_refusal,
    prompt_forms,
    unpaired,
    vague_wording,
)
from cai_dsl.check.operational.context import LintContext, Texts, prompt_texts
from cai_dsl.diagnostics import Diagnostic, Rule
from cai_dsl.diagnostics.dedupe import dedupe
from cai_dsl.lang import ast
from cai_dsl.lang.resolver import Constitution, ResolvedDeployment

__all__ = ["INTRINSIC_LINTS", "NEAR_DUPLICATE_CODE", "OPERATIONALIZABILITY_CODES", "lint_constitution", "lint_principles"]

PrincipleLint = Callable[[ast.Principle, Texts, LintContext, dict], list[Diagnostic]]

#: The lints that depend on the principle alone, in the order they run: (rule, check).
INTRINSIC_LINTS: tuple[tuple[Rule, PrincipleLint], ...] = tuple(
    (m.RULE, m.check)
    for m in (vague_wording, compare_question, compound, negative_framing, unpaired, examples, prompt_forms)
)

#: The per-principle rules of this package, CAI301-CAI308 (CAI307 is checked per deployment
#: by :mod:`.over_refusal`; the pairwise CAI312 is :data:`NEAR_DUPLICATE_CODE`).
OPERATIONALIZABILITY_CODES: tuple[str, ...] = tuple(
    sorted([rule.code for rule, _ in INTRINSIC_LINTS] + [over_refusal.RULE.code])
)

NEAR_DUPLICATE_CODE: str = near_duplicate.RULE.code


def _intrinsic(p: ast.Principle, ctx: LintContext, where: dict) -> list[Diagnostic]:
    texts = prompt_texts(p)
    return [d for _, lint in INTRINSIC_LINTS for d in lint(p, texts, ctx, where)]




def lint_principles(constitution: Constitution, deployment: ResolvedDeployment) -> list[Diagnostic]:
    """CAI301-CAI308 and CAI312 over ``deployment``'s principles (after overrides), in principle order."""
    with gc_paused():
        return _lint_principles(constitution, deployment, LintContext(constitution))


def _lint_principles(constitution: Constitution, deployment: ResolvedDeployment, ctx: LintContext) -> list[Diagnostic]:
    where = {"deployment": deployment.name}
    out: list[Diagnostic] = []
    for p in deployment.principles:
        out.extend(_intrinsic(p, ctx, where))
    out.extend(over_refusal.check_deployment(constitution, deployment, ctx))
    out.extend(near_duplicate.check_principles(deployment.principles, where))
    order = {pid: i for i, pid in enumerate(deployment.principle_ids)}
    out.sort(key=lambda d: (order.get(d.principles[0], -1) if d.principles else -1, d.code))
    return out


def lint_constitution(constitution: Constitution, deployments: Iterable[str] | None = None) -> list[Diagnostic]:
    """The lints of every (or the named) deployment, each finding once per its rule's scope.

    Principle-local findings (all but CAI307) that recur in several deployments at the
    same place are reported once, for the first deployment. Principles of the root file
    that no deployment includes are linted too, without a deployment (CAI307 needs one).
    """
    names = list(constitution.deployments) if deployments is None else list(deployments)
    out: list[Diagnostic] = []
    covered: set[str] = set()
    ctx = LintContext(constitution)
    with gc_paused():
        for name in names:
            deployment = constitution.deployments.get(name)
            if deployment is None:
                continue
            covered.update(deployment.principle_ids)
            out.extend(_lint_principles(constitution, deployment, ctx))
        if deployments is None:
            orphans = [
                p for pid, p in constitution.principles.items() if pid not in covered and p.span.file == constitution.root
            ]
            for p in orphans:
                out.extend(_intrinsic(p, ctx, {}))
            out.extend(near_duplicate.check_principles(orphans, {}))
    return dedupe(out)
