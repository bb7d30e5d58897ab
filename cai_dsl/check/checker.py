"""The checker's entry point: every diagnostic of a resolved constitution.

Names come from resolution (:mod:`cai_dsl.lang.resolver`), semantics per deployment
from :mod:`cai_dsl.check.semantic` (SMT queries of :mod:`cai_dsl.semantics.smt`),
operationalizability from :mod:`cai_dsl.check.operational` and observability of the
behaviors from :mod:`cai_dsl.check.observability`; then ``# cai: ignore``
comments apply (:mod:`cai_dsl.check.suppressions`), the noisy lints are summarized
(:mod:`cai_dsl.check.operational.summary`) and repeats collapse by rule scope
(:func:`cai_dsl.diagnostics.dedupe.dedupe`).
"""

from __future__ import annotations

from typing import Callable, Iterable

from cai_dsl.check.observability import lint_observability
from cai_dsl.check.operational import lint_constitution
from cai_dsl.check.operational.summary import summarize
from cai_dsl.check.semantic import check_deployment
from cai_dsl.check.suppressions import apply_suppressions
from cai_dsl.diagnostics import Diagnostic
from cai_dsl.diagnostics.dedupe import dedupe
from cai_dsl.lang.resolver import Constitution
from cai_dsl.semantics.budget import Budget
from cai_dsl.semantics.smt import ScenarioSpace

__all__ = ["check"]


def check(
    constitution: Constitution,
    deployments: Iterable[str] | None = None,
    *,
    semantic: bool = True,
    operational: bool = True,
    budget: Budget | None = None,
    strict_undecided: bool = False,
    on_stage: Callable[[str], None] | None = None,
) -> list[Diagnostic]:
    """All diagnostics of a resolved constitution: names (from resolution), semantics
    per deployment (SMT, within ``budget`` when given), operationalizability lints; suppressions
    applied, sorted. With ``strict_undecided`` an undecided query that could hide an error is an error
    (CAI220; the compiler's check). ``on_stage(label)`` is told each stage as it starts (the CLI's progress)."""
    stage = on_stage or (lambda label: None)
    diagnostics = list(constitution.diagnostics)
    names = list(deployments) if deployments is not None else list(constitution.deployments)
    if not any(d.is_error for d in constitution.diagnostics):
        if semantic:
            space = ScenarioSpace(constitution)
            for name in names:
                deployment = constitution.deployments.get(name)
                if deployment is not None:
                    stage(f"deployment {name}: contradictions (SMT)")
                    diagnostics.extend(check_deployment(space, deployment, budget, strict=strict_undecided))
        if operational:
            stage("operational and observability lints")
            diagnostics.extend(lint_constitution(constitution, deployments))
            diagnostics.extend(lint_observability(constitution, deployments))
    return sorted(dedupe(summarize(apply_suppressions(diagnostics, constitution))), key=Diagnostic.sort_key)
