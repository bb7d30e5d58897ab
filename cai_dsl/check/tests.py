"""`cai test`: run a constitution's `test` and `property` blocks with the solver.

A test's ``given`` (a property's ``forall``) fixes some facets; each expectation
must hold in every reachable scenario of the deployment that matches it. A
failure comes with a counter-example scenario and the resolved policy there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import z3

from cai_dsl.lang import ast

from cai_dsl.diagnostics import rules
from cai_dsl.check.checker import DeploymentModel, ScenarioSpace
from cai_dsl.diagnostics.base import Diagnostic
from cai_dsl.semantics.evaluator import ResolvedPolicy, resolved_policy
from cai_dsl.lang.resolver import Constitution


@dataclass
class ExpectationResult:
    expectation: ast.Expectation
    passed: bool
    counterexample: dict[str, str] | None = None
    policy: ResolvedPolicy | None = None
    note: str | None = None

    @property
    def text(self) -> str:
        e = self.expectation
        words = e.expect.replace("_", " ")
        if e.expect == "winner":
            return f"winner {e.subject.name} over {e.other.name if e.other else '?'}"
        return f"{words} {e.subject.name}"


@dataclass
class CaseResult:
    """The outcome of one test or property."""

    case: ast.TestCase | ast.PropertyCase
    kind: str  # "test" or "property"
    results: list[ExpectationResult] = field(default_factory=list)
    vacuous: bool = False
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and all(r.passed for r in self.results)

    @property
    def name(self) -> str:
        return self.case.name.value


def _expectation_formula(model: DeploymentModel, exp: ast.Expectation) -> tuple[z3.BoolRef | None, str | None]:
    """The formula that must hold in every matching scenario (None: trivially false/true handled by note)."""
    space = model.space
    subject = exp.subject.name
    if exp.expect in ("active", "not_active"):
        if subject not in model.principles:
            return (space.false() if exp.expect == "active" else space.true()), (
                f"`{subject}` is not part of deployment `{model.deployment.name}`"
            )
        cond = model.cond[subject]
        return (cond if exp.expect == "active" else z3.Not(cond)), None
    if exp.expect == "winner":
        other = exp.other.name if exp.other else ""
        if subject not in model.principles or other not in model.principles:
            missing = subject if subject not in model.principles else other
            return space.false(), f"`{missing}` is not part of deployment `{model.deployment.name}`"
        pair = (subject, other) if (subject, other) in model.pairs else (other, subject)
        if pair not in model.pairs:
            return space.true(), f"`{subject}` and `{other}` never clash (they share no clashing behavior)"
        both = model.both_active(subject, other)
        return z3.Implies(both, model.wins(subject, other)), None
    base = exp.expect.removeprefix("not_")
    formula = {"require": model.required, "forbid": model.forbidden, "prefer": model.preferred}[base](subject)
    return (z3.Not(formula) if exp.expect.startswith("not_") else formula), None


def run_case(space: ScenarioSpace, constitution: Constitution, case: ast.TestCase | ast.PropertyCase) -> CaseResult:
    """Run one test or property and return its result."""
    kind = "test" if isinstance(case, ast.TestCase) else "property"
    result = CaseResult(case=case, kind=kind)
    deployment = constitution.deployments.get(case.deployment.name)
    if deployment is None:
        result.error = f"undefined deployment `{case.deployment.name}`"
        return result
    model = DeploymentModel(space, deployment)
    region = space.encode(case.given if isinstance(case, ast.TestCase) else case.forall)
    if model.sat(region) is None:
        result.vacuous = True
    for exp in case.expectations:
        formula, note = _expectation_formula(model, exp)
        witness_model = model.sat(region, z3.Not(formula)) if not result.vacuous else None
        if witness_model is None:
            result.results.append(ExpectationResult(exp, True, note=note))
            continue
        scenario = space.scenario(witness_model)
        policy = resolved_policy(constitution, deployment, scenario)
        result.results.append(ExpectationResult(exp, False, scenario, policy, note))
    return result


def run_tests(constitution: Constitution) -> list[CaseResult]:
    """Run every test and property of the root file, in source order."""
    space = ScenarioSpace(constitution)
    cases = sorted([*constitution.tests, *constitution.properties], key=lambda c: (c.span.line, c.span.column))
    return [run_case(space, constitution, case) for case in cases]


def failures_as_diagnostics(results: list[CaseResult]) -> list[Diagnostic]:
    """CAI401/CAI402 per failed expectation, CAI403 per vacuous case."""
    out = []
    for r in results:
        if r.vacuous:
            out.append(
                rules.VACUOUS_TEST(
                    f"{r.kind} \"{r.name}\" matches no reachable scenario of `{r.case.deployment.name}`",
                    r.case.span,
                    deployment=r.case.deployment.name,
                    help="its `given`/`forall` contradicts the deployment's assumptions",
                )
            )
        for e in r.results:
            if e.passed:
                continue
            rule = rules.TEST_FAILED if r.kind == "test" else rules.PROPERTY_REFUTED
            out.append(
                rule(
                    f"{r.kind} \"{r.name}\": expect {e.text} does not hold" + (f" ({e.note})" if e.note else ""),
                    e.expectation.span,
                    deployment=r.case.deployment.name,
                    witness=e.counterexample,
                    principles=[p for p in (e.expectation.subject.name, e.expectation.other.name if e.expectation.other else None) if p],
                    help=("resolved policy there: " + describe_policy(e.policy)) if e.policy else None,
                )
            )
    return out


def describe_policy(policy: ResolvedPolicy) -> str:
    """One-line summary of a resolved policy."""
    parts = []
    for d in policy.decisions.values():
        if d.status != "free":
            parts.append(f"{d.behavior} {d.status} by {', '.join(d.reasons)}")
    active = ", ".join(policy.active) or "none"
    unresolved = "; ".join(f"{c.first} vs {c.second} unresolved" for c in policy.unresolved)
    return f"active: {active}; " + ("; ".join(parts) or "all behaviors free") + (f"; {unresolved}" if unresolved else "")
