"""The semantic rules of one deployment (CAI201, CAI203-CAI208), decided by the named
queries of :mod:`cai_dsl.semantics.smt`; each finding carries a witness where one exists.

* CAI204 unsatisfiable-assumption: the deployment's assumptions admit no scenario.
* CAI208 self-contradictory-principle: a principle requires and forbids one behavior.
* CAI205 never-active: no reachable scenario activates a principle.
* CAI201 contradiction / CAI203 conflict-rule-gap: two principles clash where both are
  active and nothing (no priority, no branch of their conflict rule) resolves it.
* CAI206 shadowed-principle: a principle loses every clash it takes part in.
* CAI209 final-principle-loses: a final principle does not win a clash it takes part in
  (the witness is the scenario where it loses or nothing resolves the clash).
* CAI220 undecided: a query ran out of its time budget (per query or the run's); its
  answer is taken as "no finding" and the diagnostic says what could not be decided. With
  ``strict`` (the compiler's check), one whose answer could hide an error (:data:`HIDES_ERROR`,
  or the run's budget spent) is an error.
* CAI207 unreachable-conflict-branch: a branch (or ``otherwise``) of a conflict rule of
  the root file never decides, or the rule's pair never clashes.
"""

from __future__ import annotations

from typing import Iterable

from cai_dsl.check.priorities import priority_cycles
from cai_dsl.diagnostics import Diagnostic, Related, rules
from cai_dsl.lang import ast
from cai_dsl.lang.resolver import Constitution, ResolvedDeployment
from cai_dsl.semantics.evaluator import Clash
from cai_dsl.semantics.budget import Budget
from cai_dsl.semantics.smt import DeploymentModel, ScenarioSpace


def _clash_text(clash: Clash) -> str:
    if clash.kind == "require-forbid":
        return f"`{clash.behaviors[0]}` is both required and forbidden"
    return f"`{clash.behaviors[0]}` and `{clash.behaviors[1]}` are both required but are exclusive"


def _principle_related(constitution: Constitution, pids: Iterable[str], deployment: ResolvedDeployment) -> list[Related]:
    out = []
    for pid in pids:
        p = deployment.principle(pid) or constitution.principles.get(pid)
        if p is not None:
            out.append(Related(span=p.id.span, message=f"principle `{pid}` is defined here"))
    return out


def _unsatisfiable(constitution: Constitution, deployment: ResolvedDeployment) -> Diagnostic:
    name = deployment.name
    span = next(
        (item.span for item in constitution.deployment_decls[name].items if isinstance(item, ast.Assume)),
        deployment.span,
    )
    return rules.UNSATISFIABLE_ASSUMPTION(
        f"the assumptions of deployment `{name}` admit no scenario",
        span,
        deployment=name,
        help="relax one `assume` (assumptions of parent deployments apply too)",
    )


def _self_clashes(model: DeploymentModel, name: str) -> list[Diagnostic]:
    out = []
    for pid, p in model.principles.items():
        overlap = set(p.effect_behaviors("require")) & set(p.effect_behaviors("forbid"))
        for b in sorted(overlap):
            out.append(
                rules.SELF_CLASH(
                    f"principle `{pid}` both requires and forbids `{b}`",
                    p.id.span,
                    deployment=name,
                    principles=[pid],
                    help="keep one of the two effects",
                )
            )
    return out


def _never_active(model: DeploymentModel, name: str) -> list[Diagnostic]:
    out = []
    for pid, p in model.principles.items():
        if model.never_active(pid):
            out.append(
                rules.NEVER_ACTIVE(
                    f"principle `{pid}` is active in no reachable scenario of deployment `{name}`",
                    p.when.span if p.when is not None else p.id.span,
                    deployment=name,
                    principles=[pid],
                    help="its `when` contradicts the deployment's `assume` clauses; fix the condition or exclude it",
                )
            )
    return out


def _unresolved(model: DeploymentModel, a: str, b: str, witness: dict[str, str]) -> Diagnostic:
    constitution, deployment, name = model.constitution, model.deployment, model.deployment.name
    what = "; ".join(_clash_text(c) for c in model.pairs[(a, b)])
    related = _principle_related(constitution, (a, b), deployment)
    rule = model.rule_for(a, b)
    if rule is not None:
        related.append(Related(span=rule.span, message="this conflict rule does not cover the witness"))
        return rules.CONFLICT_GAP(
            f"conflict rule for `{a}` vs `{b}` leaves a clash unresolved: {what}",
            rule.span,
            related=related,
            deployment=name,
            principles=[a, b],
            witness=witness,
            help="add a branch covering the witness, an `otherwise:` branch, or a priority between them",
        )
    return rules.CONTRADICTION(
        f"`{a}` and `{b}` clash and nothing resolves it: {what}",
        model.principles[a].id.span,
        related=related,
        deployment=name,
        principles=[a, b],
        witness=witness,
        help=f"add `priority {a} > {b}` (or the reverse), or a `conflict {a} vs {b} {{ ... }}` rule",
    )


def _unreachable_branches(model: DeploymentModel, rule: ast.Conflict, name: str) -> list[Diagnostic]:
    out = []
    pids = [rule.left.name, rule.right.name]
    for branch in model.unreachable_branches(rule):
        if branch is None:
            message, span, help = (
                "`otherwise` can never decide: the branches above cover every scenario",
                rule.span,
                "remove the `otherwise` branch",
            )
        else:
            message, span, help = (
                "this branch can never decide: no reachable scenario where both principles are active "
                "matches it (after the branches above)",
                branch.span,
                "remove the branch or widen its condition",
            )
        out.append(rules.UNREACHABLE_BRANCH(message, span, deployment=name, principles=pids, help=help))
    return out


def _clashes(model: DeploymentModel, name: str) -> list[Diagnostic]:
    out = []
    root = model.constitution.root
    for a, b in model.live_pairs():
        witness = model.clash_unresolved(a, b)
        if witness is not None:
            out.append(_unresolved(model, a, b, witness))
        rule = model.rule_for(a, b)
        if rule is not None and rule.span.file == root:
            # an imported rule's branches may be unreachable under this file's assumptions: not a finding
            out.extend(_unreachable_branches(model, rule, name))
    return out


def _shadowed(model: DeploymentModel, name: str) -> list[Diagnostic]:
    return [
        rules.SHADOWED(
            f"principle `{pid}` loses every clash it takes part in, in deployment `{name}`",
            model.principles[pid].id.span,
            deployment=name,
            principles=[pid],
            help="its demands never take effect where they matter; narrow the other principles, "
            "reorder priorities, or remove it",
        )
        for pid in model.always_loses()
    ]


def _final_loses(model: DeploymentModel, name: str) -> list[Diagnostic]:
    out = []
    for pid in model.deployment.final_ids:
        for other, witness in model.final_always_wins(pid).items():
            out.append(
                rules.FINAL_LOSES(
                    f"final principle `{pid}` does not win its clash with `{other}` in deployment `{name}`",
                    model.principles[pid].id.span,
                    related=_principle_related(model.constitution, (other,), model.deployment),
                    deployment=name,
                    principles=[pid, other],
                    witness=witness,
                    help=f"rank it above: `priority {pid} > {other}`, or give `{other}` a lower `authority`",
                )
            )
    return out


def _idle_rules(model: DeploymentModel, name: str) -> list[Diagnostic]:
    """Conflict rules of the root file whose pair never clashes in this deployment."""
    out = []
    for pair, rule in model.rules.items():
        a, b = sorted(pair, key=list(model.principles).index)
        if (a, b) not in model.pairs and rule.span.file == model.constitution.root:
            out.append(
                rules.UNREACHABLE_BRANCH(
                    f"conflict rule for `{a}` vs `{b}` never decides anything: they share no clashing behavior",
                    rule.span,
                    deployment=name,
                    principles=[a, b],
                    help="remove the rule, or give the principles the effects that clash",
                )
            )
    return out


_QUESTIONS = {
    "reachable": "whether its assumptions admit any scenario",
    "never-active": "whether {0} is ever active",
    "co-active": "whether {0} and {1} are ever both active",
    "clash": "whether the clash of {0} and {1} is always resolved",
    "can-win": "whether {0} can win its clash with {1}",
    "final": "whether final {0} always beats {1}",
    "branches": "which branches of the conflict rule for {0} vs {1} can decide",
}


#: The queries whose undecided answer could hide an error: CAI204 (reachable), CAI201/CAI203 (co-active,
#: clash), CAI209 (final). The others could hide a warning only (an undecided never-active principle is
#: still checked as active).
HIDES_ERROR = frozenset({"reachable", "co-active", "clash", "final"})

_REFUSED = " (the answer could hide an error)"


def _undecided(model: DeploymentModel, strict: bool = False) -> list[Diagnostic]:
    """CAI220 per query the solver could not decide in time (one for all skipped once the run's budget ran out);
    with ``strict``, an error where the answer could hide one."""
    out = []
    seen: set[tuple[str, tuple[str, ...]]] = set()
    skipped = [u for u in model.undecided if u.run_exhausted]
    name = model.deployment.name
    for u in model.undecided:
        if u.run_exhausted or (u.query, u.principles) in seen:
            continue
        seen.add((u.query, u.principles))
        question = _QUESTIONS[u.query].format(*(f"`{p}`" for p in u.principles))
        principle = model.principles.get(u.principles[0]) if u.principles else None
        refused = strict and u.query in HIDES_ERROR
        out.append(
            rules.UNDECIDED(
                f"could not decide within {u.seconds:g} s {question} in deployment `{name}`" + (_REFUSED if refused else ""),
                principle.id.span if principle is not None else model.deployment.span,
                severity="error" if refused else None,
                deployment=name,
                principles=list(u.principles),
                help="raise the per-query budget (`--smt-timeout`, `[tool.cai] smt-timeout`) or simplify the conditions",
            )
        )
    if skipped:
        first = skipped[0]
        about = " and ".join(f"`{p}`" for p in first.principles) or "its assumptions"
        out.append(
            rules.UNDECIDED(
                f"could not decide within {first.seconds:g} s (the run's SMT budget ran out): the remaining checks of "
                f"deployment `{name}` were skipped, starting with {about}" + (_REFUSED if strict else ""),
                model.deployment.span,
                severity="error" if strict else None,
                deployment=name,
                principles=list(first.principles),
                help="raise the run's budget (`--smt-budget`, `[tool.cai] smt-budget`) or lint fewer files at once",
            )
        )
    return out


def check_deployment(
    space: ScenarioSpace, deployment: ResolvedDeployment, budget: Budget | None = None, *, strict: bool = False
) -> list[Diagnostic]:
    """Semantic diagnostics of one deployment (CAI2xx), each with a witness where one exists; with a
    ``budget``, queries that run out of time become CAI220 diagnostics instead of findings (errors, with
    ``strict``, where they could hide one)."""
    model = DeploymentModel(space, deployment, budget)
    name = deployment.name
    if model.reachable() is None:
        return _undecided(model, strict) if model.last_undecided else [_unsatisfiable(space.constitution, deployment)]
    return [
        *priority_cycles(deployment),
        *_self_clashes(model, name),
        *_never_active(model, name),
        *_clashes(model, name),
        *_shadowed(model, name),
        *_final_loses(model, name),
        *_idle_rules(model, name),
        *_undecided(model, strict),
    ]
