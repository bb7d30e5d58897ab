"""`cai test`: run a constitution's `test` and `property` blocks with the solver.

A test's ``given`` (a property's ``forall``) fixes some facets; each expectation
must hold in every reachable scenario of the deployment that matches it. A
failure comes with a counter-example scenario and the resolved policy there.
A case whose ``in`` is a glob (``in *``, ``in acme*``) runs once per matching
deployment; each result names its deployment. A vacuous case (nothing reachable
matches it) passes, with a CAI403 warning. With a :class:`Budget`, an expectation
the solver cannot decide in time is undecided (CAI404, never a pass); a case whose
vacuity alone is undecided passes, with a CAI220 warning.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cai_dsl.lang import ast

from cai_dsl.diagnostics import rules
from cai_dsl.diagnostics import Diagnostic
from cai_dsl.semantics.budget import Budget, Undecided
from cai_dsl.semantics.evaluator import ResolvedPolicy, resolved_policy
from cai_dsl.semantics.smt import DeploymentModel, ScenarioSpace
from cai_dsl.lang.resolver import Constitution


@dataclass
class ExpectationResult:
    expectation: ast.Expectation
    passed: bool
    counterexample: dict[str, str | int] | None = None
    policy: ResolvedPolicy | None = None
    note: str | None = None
    undecided: Undecided | None = None  # the solver ran out of its budget: neither passed nor refuted

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
    deployment: str = ""  # the deployment it ran in (one per match of a glob)
    results: list[ExpectationResult] = field(default_factory=list)
    vacuous: bool = False
    vacuity_undecided: Undecided | None = None  # every expectation holds; whether any scenario matches is unknown
    error: str | None = None

    @property
    def passed(self) -> bool:
        """No error and every expectation holds (a vacuous case passes: CAI403 warns)."""
        return self.error is None and all(r.passed for r in self.results)

    @property
    def outcome(self) -> str:
        """``passed``, ``failed`` (an error or a counter-example) or ``undecided`` (only budget-outs)."""
        if self.passed:
            return "passed"
        if self.error is None and all(r.passed or r.undecided for r in self.results):
            return "undecided"
        return "failed"

    @property
    def name(self) -> str:
        return self.case.name.value


def _expectation_claim(model: DeploymentModel, exp: ast.Expectation) -> tuple[object, str | None]:
    """The claim that must hold in every matching scenario (a bool when names are missing), and a note."""
    subject = exp.subject.name
    if exp.expect in ("active", "not_active"):
        if subject not in model.principles:
            return exp.expect != "active", f"`{subject}` is not part of deployment `{model.deployment.name}`"
        return model.claim(exp.expect, subject), None
    if exp.expect == "winner":
        other = exp.other.name if exp.other else ""
        if subject not in model.principles or other not in model.principles:
            missing = subject if subject not in model.principles else other
            return False, f"`{missing}` is not part of deployment `{model.deployment.name}`"
        if (subject, other) not in model.pairs and (other, subject) not in model.pairs:
            return True, f"`{subject}` and `{other}` never clash (they share no clashing behavior)"
        return model.claim("winner", subject, other), None
    return model.claim(exp.expect, subject), None


def run_case(
    space: ScenarioSpace,
    constitution: Constitution,
    case: ast.TestCase | ast.PropertyCase,
    deployment_name: str | None = None,
    budget: Budget | None = None,
) -> CaseResult:
    """Run one test or property in one deployment (default: the one it names), each query within ``budget``."""
    kind = "test" if isinstance(case, ast.TestCase) else "property"
    name = deployment_name or case.deployment.name
    result = CaseResult(case=case, kind=kind, deployment=name)
    deployment = constitution.deployments.get(name)
    if deployment is None:
        result.error = f"undefined deployment `{name}`"
        return result
    model = DeploymentModel(space, deployment, budget)
    region = case.given if isinstance(case, ast.TestCase) else case.forall
    for exp in case.expectations:
        claim, note = _expectation_claim(model, exp)
        scenario = model.counterexample(region, claim)
        if model.last_undecided:
            result.results.append(ExpectationResult(exp, False, note=note, undecided=model.undecided[-1]))
        elif scenario is None:
            result.results.append(ExpectationResult(exp, True, note=note))
        else:
            policy = resolved_policy(constitution, deployment, scenario)
            result.results.append(ExpectationResult(exp, False, scenario, policy, note))
    if result.passed:  # (a counter-example already shows that some scenario matches)
        inhabited = model.inhabited(region)
        if model.last_undecided:
            result.vacuity_undecided = model.undecided[-1]
        else:
            result.vacuous = not inhabited
    return result


def run_tests(constitution: Constitution, budget: Budget | None = None) -> list[CaseResult]:
    """Run every test and property of the root file, in source order, once per deployment it names; every
    query within ``budget`` (shared by the whole run) when one is given."""
    space = ScenarioSpace(constitution)
    cases = sorted([*constitution.tests, *constitution.properties], key=lambda c: (c.span.line, c.span.column))
    return [
        run_case(space, constitution, case, name, budget)
        for case in cases
        for name in (constitution.deployments_for(case) or [case.deployment.name])
    ]


def _within(u: Undecided) -> str:
    return f"within {u.seconds:g} s" + (" (the run's SMT budget ran out)" if u.run_exhausted else "")


def _budget_help(u: Undecided) -> str:
    if u.run_exhausted:
        return "raise the run's budget (`--smt-budget`, `[tool.cai] smt-budget`) or test fewer files at once"
    return "raise the per-query budget (`--smt-timeout`, `[tool.cai] smt-timeout`) or simplify the conditions"


def failures_as_diagnostics(results: list[CaseResult]) -> list[Diagnostic]:
    """CAI401/CAI402 per failed expectation, CAI404 per undecided one, CAI403 per vacuous case (CAI220 when
    that could not be decided)."""
    out = []
    for r in results:
        if r.vacuity_undecided is not None:
            u = r.vacuity_undecided
            out.append(
                rules.UNDECIDED(
                    f"{r.kind} \"{r.name}\": could not decide {_within(u)} whether it matches any reachable scenario "
                    f"of `{r.deployment}` (its expectations hold)",
                    r.case.span,
                    deployment=r.deployment,
                    help=_budget_help(u),
                )
            )
        if r.vacuous:
            out.append(
                rules.VACUOUS_TEST(
                    f"{r.kind} \"{r.name}\" matches no reachable scenario of `{r.deployment}`",
                    r.case.span,
                    deployment=r.deployment,
                    help="its `given`/`forall` contradicts the deployment's assumptions",
                )
            )
        for e in r.results:
            if e.passed:
                continue
            if e.undecided is not None:
                out.append(
                    rules.TEST_UNDECIDED(
                        f"{r.kind} \"{r.name}\" in deployment `{r.deployment}`: could not decide {_within(e.undecided)} "
                        f"whether expect {e.text} holds",
                        e.expectation.span,
                        deployment=r.deployment,
                        help=_budget_help(e.undecided),
                    )
                )
                continue
            rule = rules.TEST_FAILED if r.kind == "test" else rules.PROPERTY_REFUTED
            out.append(
                rule(
                    f"{r.kind} \"{r.name}\" in deployment `{r.deployment}`: expect {e.text} does not hold"
                    + (f" ({e.note})" if e.note else ""),
                    e.expectation.span,
                    deployment=r.deployment,
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
