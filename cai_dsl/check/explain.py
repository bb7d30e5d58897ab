"""`cai explain`: the resolved policy of a (possibly partial) scenario, with reasons.

For a complete scenario the plain evaluator gives each decision and the rule or
priority behind it. For a partial scenario the solver says, per principle and
per behavior, what holds in every completion and what varies (with an example
completion for each possibility). With a :class:`Budget`, each solver question that
runs out of time is listed in ``Explanation.undecided`` (never guessed).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cai_dsl.core.errors import CaiError

from cai_dsl.lang import ast
from cai_dsl.semantics.budget import Budget, Undecided
from cai_dsl.semantics.evaluator import ResolvedPolicy, Value, resolved_policy
from cai_dsl.semantics.smt import DeploymentModel, ScenarioSpace
from cai_dsl.lang.resolver import Constitution


class ScenarioError(CaiError, ValueError):
    """A `--given` text that names an unknown facet or value."""


def parse_scenario(text: str, constitution: Constitution) -> dict[str, Value]:
    """Parse ``"topic=medical, risk=high, dose_mg=600"`` (``==`` also accepted) and validate
    names; a number facet takes a whole number inside its range."""
    out: dict[str, Value] = {}
    for part in [p.strip() for p in text.replace(";", ",").split(",") if p.strip()]:
        if "=" not in part:
            raise ScenarioError(f"`{part}`: expected facet=value")
        key, value = (s.strip() for s in part.replace("==", "=").split("=", 1))
        facet = constitution.facets.get(key)
        if facet is None:
            raise ScenarioError(f"unknown facet `{key}`; facets are: {', '.join(sorted(constitution.facets))}")
        if facet.bounds is not None:
            value = _number(key, value, facet)
        elif value not in (values := [v.name for v in facet.values]):
            raise ScenarioError(f"`{value}` is not a value of `{key}`; values are: {', '.join(values)}")
        if key in out and out[key] != value:
            raise ScenarioError(f"facet `{key}` is given twice")
        out[key] = value
    return out


def _number(key: str, text: str, facet: ast.Facet) -> int:
    low, high = facet.bounds.low.value, facet.bounds.high.value
    try:
        value = int(text)
    except ValueError:
        raise ScenarioError(f"`{key}` is a number facet: expected a whole number, not `{text}`") from None
    if not low <= value <= high:
        raise ScenarioError(f"{value} is outside the range of `{key}` ({low} .. {high})")
    return value


@dataclass
class Possibility:
    status: str
    example: dict[str, Value]


@dataclass(frozen=True)
class UndecidedPart:
    """A question of the explanation the solver could not answer within its budget."""

    question: str
    seconds: float
    run_exhausted: bool = False

    @property
    def text(self) -> str:
        ran_out = " (the run's SMT budget ran out)" if self.run_exhausted else ""
        return f"could not decide within {self.seconds:g} s{ran_out} {self.question}"


@dataclass
class Explanation:
    deployment: str
    given: dict[str, Value]
    complete: bool
    reachable: bool | None  # None: undecided within the budget
    policy: ResolvedPolicy | None = None  # complete scenarios
    always_active: list[str] = field(default_factory=list)
    sometimes_active: list[str] = field(default_factory=list)
    behaviors: dict[str, list[Possibility]] = field(default_factory=dict)  # partial scenarios
    open_statuses: dict[str, list[str]] = field(default_factory=dict)  # per behavior: statuses left undecided
    undecided: list[UndecidedPart] = field(default_factory=list)

    def to_json(self) -> dict:
        out: dict = {
            "deployment": self.deployment,
            "given": self.given,
            "complete": self.complete,
            "reachable": self.reachable,
            "undecided": [{"question": u.question, "seconds": u.seconds, "run_exhausted": u.run_exhausted}
                          for u in self.undecided],
        }
        if self.policy is not None:
            out["active"] = self.policy.active
            out["behaviors"] = {
                name: {"status": d.status, "decided_by": d.reasons, "preferred_by": d.preferred_by}
                for name, d in self.policy.decisions.items()
            }
            out["wins"] = [{"winner": w, "loser": lo, "why": why} for w, lo, why in self.policy.wins]
            out["unresolved"] = [
                {"first": c.first, "second": c.second, "behaviors": list(c.behaviors)} for c in self.policy.unresolved
            ]
        else:
            out["always_active"] = self.always_active
            out["sometimes_active"] = self.sometimes_active
            out["behaviors"] = {
                name: {
                    "holds_in_every_completion": len(poss) == 1 and not self.open_statuses.get(name),
                    "undecided": self.open_statuses.get(name, []),
                    "possible": [{"status": p.status, "example": p.example} for p in poss],
                }
                for name, poss in self.behaviors.items()
            }
        return out


def explain(
    constitution: Constitution, deployment_name: str, given: dict[str, Value], budget: Budget | None = None
) -> Explanation:
    """Explain the policy of ``deployment_name`` where ``given`` holds, each solver query within ``budget``."""
    deployment = constitution.deployments[deployment_name]
    space = ScenarioSpace(constitution)
    model = DeploymentModel(space, deployment, budget)
    complete = set(given) >= set(constitution.facets)
    reachable = model.reachable(given) is not None
    result = Explanation(deployment_name, dict(given), complete, None if model.last_undecided else reachable)
    if model.last_undecided:
        result.undecided.append(_part(model.undecided[-1], f"whether this scenario is reachable in `{deployment_name}`"))
    if not reachable:
        return result
    if complete:
        result.policy = resolved_policy(constitution, deployment, given)
        return result
    for pid in model.principles:
        activity = model.activity(pid, given)
        if activity == "always":
            result.always_active.append(pid)
        elif activity == "sometimes":
            result.sometimes_active.append(pid)
        elif activity == "undecided":
            result.undecided.append(_part(model.undecided[-1], f"whether `{pid}` is active in every completion"))
    for behavior in constitution.behaviors:
        before = len(model.undecided)
        statuses = model.possible_statuses(behavior, given)
        result.behaviors[behavior] = [Possibility(s, example) for s, example in statuses.items() if example is not None]
        unknown = [s for s, example in statuses.items() if example is None]
        if unknown:
            result.open_statuses[behavior] = unknown
        for status, u in zip(unknown, model.undecided[before:]):  # one record per undecided status, in order
            result.undecided.append(_part(u, f"whether `{behavior}` can be {status}"))
    return result


def _part(u: Undecided, question: str) -> UndecidedPart:
    return UndecidedPart(question, u.seconds, u.run_exhausted)
