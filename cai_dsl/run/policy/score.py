"""The policy score of a response in its scenario: a compiled rule-based reward.

The resolved policy comes from :func:`cai_dsl.semantics.evaluator.resolved_policy` (the checker's
semantics); this module only reads it. A scenario that leaves some facets out stands for all its
completions within the deployment's assumptions: a behavior counts as required (forbidden) only
when it is required (forbidden) in every one of them, with the smallest deciding weight.

Score: each decided behavior that the detectors observe is satisfied (a required one present, a
forbidden one absent), weighted by the weight of the principle that decided it; the weighted share
of satisfied behaviors is mixed with the share of preferred behaviors present (``preferred_share``,
a smaller part). The score is ``None`` when the scenario decides no observable behavior, and ``0.0``
whenever a quality check fails (a degenerate or meta response is wrong in every scenario).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict

from cai_dsl.compile.conditions import facet_ir, validate_scenario
from cai_dsl.core.errors import CaiError
from cai_dsl.lang.resolver import Constitution, ResolvedDeployment
from cai_dsl.run.policy.detectors import Detection
from cai_dsl.run.policy.quality import QualityConfig, QualityReport, check_quality
from cai_dsl.semantics.evaluator import Value, facet_domain, number_constants, reachable, resolved_policy

__all__ = ["BehaviorScore", "DecidedBehavior", "PolicyError", "PolicyScore", "PolicyScorer", "ScenarioPolicy"]

Decision = Literal["required", "forbidden", "preferred"]


class PolicyError(CaiError):
    """A scenario or deployment the constitution does not define; the message names the allowed ones."""


class DecidedBehavior(BaseModel):
    """What the policy says about one behavior, and the principle (and its weight) that says it."""

    model_config = ConfigDict(frozen=True)

    behavior: str
    decision: Decision
    weight: float
    principle: str


class ScenarioPolicy(BaseModel):
    """The decided behaviors of a (possibly partial) scenario, over its reachable completions."""

    model_config = ConfigDict(frozen=True)

    scenario: tuple[tuple[str, Value], ...]
    completions: int  # reachable complete scenarios it stands for (0: outside the assumptions; a number facet counts its boundary points)
    decisions: tuple[DecidedBehavior, ...]


class BehaviorScore(BaseModel):
    """One decided behavior of a scored response; ``present`` is None when no detector observes it."""

    model_config = ConfigDict(frozen=True)

    behavior: str
    decision: Decision
    present: bool | None
    weight: float
    principle: str

    @property
    def satisfied(self) -> bool | None:
        if self.present is None:
            return None
        return self.present if self.decision != "forbidden" else not self.present


class PolicyScore(BaseModel):
    """A response's score in [0, 1] (None: nothing decided and observable), with its reasons."""

    model_config = ConfigDict(frozen=True)

    score: float | None
    per_behavior: tuple[BehaviorScore, ...]
    quality: QualityReport
    violations: tuple[str, ...]


class PolicyScorer:
    """Scores responses against one deployment of a constitution; policies memoised per scenario."""

    def __init__(
        self,
        constitution: Constitution,
        deployment_name: str,
        *,
        preferred_share: float = 0.2,
        refusal_behaviors: Iterable[str] = ("refuse",),
        quality: QualityConfig | None = None,
        max_completions: int = 4096,
    ):
        deployment = constitution.deployments.get(deployment_name)
        if deployment is None:
            known = ", ".join(sorted(constitution.deployments)) or "none"
            raise PolicyError(f"unknown deployment `{deployment_name}`; deployments are: {known}")
        if not 0.0 <= preferred_share < 1.0:
            raise PolicyError(f"preferred_share must be in [0, 1), not {preferred_share}")
        self.constitution = constitution
        self.deployment: ResolvedDeployment = deployment
        self.preferred_share = preferred_share
        self.refusal_behaviors = tuple(refusal_behaviors)
        self.quality_config = quality or QualityConfig()
        self.max_completions = max_completions
        self._policies: dict[tuple[tuple[str, Value], ...], ScenarioPolicy] = {}
        self._constants = number_constants(deployment)  # number facets enumerate these points only
        self._facet_irs = {name: facet_ir(f) for name, f in constitution.facets.items()}

    # ------------------------------------------------------------------ policy

    def validate(self, scenario: Mapping[str, Value] | None) -> tuple[tuple[str, Value], ...]:
        """The scenario as sorted pairs; unknown facets or values raise :class:`PolicyError`
        (:func:`~cai_dsl.compile.conditions.validate_scenario`, the one check)."""
        return validate_scenario(scenario, self._facet_irs, PolicyError)

    def policy(self, scenario: Mapping[str, Value] | None) -> ScenarioPolicy:
        """The decided behaviors of ``scenario`` (memoised)."""
        key = self.validate(scenario)
        if key not in self._policies:
            self._policies[key] = self._policy(key)
        return self._policies[key]

    def _completions(self, given: dict[str, Value]) -> Iterable[dict[str, Value]]:
        """The completions of ``given``; a missing number facet takes the points that decide the
        deployment's comparisons with it (:func:`~cai_dsl.semantics.evaluator.number_points`)."""
        facets = self.constitution.facets
        missing = sorted(set(facets) - set(given))
        domains = [facet_domain(facets[m], self._constants.get(m, ())) for m in missing]
        count = math.prod(len(d) for d in domains)
        if count > self.max_completions:
            raise PolicyError(
                f"the scenario leaves out {', '.join(missing)}: {count} completions (limit {self.max_completions}); "
                "tag the prompt with more facets"
            )
        for values in itertools.product(*domains):
            yield {**given, **dict(zip(missing, values))}

    def _weight(self, pid: str) -> float:
        p = self.deployment.principle(pid)
        return p.weight.value if p is not None and p.weight is not None else 1.0

    def _deciders(self, behavior: str, status: str, reasons: list[str]) -> tuple[float, str]:
        """The weightiest principle among ``reasons`` whose own effect is ``status``."""
        effect = "require" if status == "required" else "forbid"
        own = [r for r in reasons if (p := self.deployment.principle(r)) and behavior in p.effect_behaviors(effect)]
        best = max(own or reasons, key=self._weight)
        return self._weight(best), best

    def _policy(self, key: tuple[tuple[str, Value], ...]) -> ScenarioPolicy:
        facets = self.constitution.facets
        seen: dict[str, list[tuple[str, float, str]]] = {}  # behavior -> (status, weight, principle) per completion
        n = 0
        for full in self._completions(dict(key)):
            if not reachable(self.deployment, full, facets):
                continue
            n += 1
            resolved = resolved_policy(self.constitution, self.deployment, full)
            for name, d in resolved.decisions.items():
                if d.status in ("required", "forbidden"):
                    seen.setdefault(name, []).append((d.status, *self._deciders(name, d.status, d.reasons)))
                elif d.preferred_by:
                    best = max(d.preferred_by, key=self._weight)
                    seen.setdefault(name, []).append(("preferred", self._weight(best), best))
                else:
                    seen.setdefault(name, []).append(("free", 0.0, ""))
        decisions = []
        for name in self.constitution.behaviors:
            rows = seen.get(name, [])
            statuses = {r[0] for r in rows}
            if len(statuses) == 1 and statuses != {"free"}:
                status, weight, principle = min(rows, key=lambda r: r[1])
                decisions.append(DecidedBehavior(behavior=name, decision=status, weight=weight, principle=principle))
        return ScenarioPolicy(scenario=key, completions=n, decisions=tuple(decisions))

    # ------------------------------------------------------------------- score

    def score(
        self,
        response: str,
        scenario: Mapping[str, str] | None,
        detections: Mapping[str, Detection],
        *,
        prompt: str | None = None,
        finish_reason: str | None = None,
    ) -> PolicyScore:
        """Score ``response`` given its detections (from a :class:`DetectorSet`)."""
        policy = self.policy(scenario)
        refusal = any(detections[b].present for b in self.refusal_behaviors if b in detections)
        quality = check_quality(
            response, prompt, finish_reason=finish_reason, refusal=refusal, config=self.quality_config
        )
        rows = tuple(
            BehaviorScore(
                behavior=d.behavior,
                decision=d.decision,
                present=detections[d.behavior].present if d.behavior in detections else None,
                weight=d.weight,
                principle=d.principle,
            )
            for d in policy.decisions
        )
        violations = tuple(
            f"{r.decision} `{r.behavior}` {'absent' if r.decision == 'required' else 'present'} ({r.principle})"
            for r in rows
            if r.decision != "preferred" and r.satisfied is False
        )
        return PolicyScore(score=self._value(rows, quality), per_behavior=rows, quality=quality, violations=violations)

    def _value(self, rows: tuple[BehaviorScore, ...], quality: QualityReport) -> float | None:
        decided = [r for r in rows if r.decision != "preferred" and r.present is not None]
        if not quality.ok:
            return 0.0
        if not decided:
            return None
        total = sum(r.weight for r in decided)
        if total > 0:
            base = sum(r.weight for r in decided if r.satisfied) / total
        else:
            base = sum(1 for r in decided if r.satisfied) / len(decided)
        preferred = [r for r in rows if r.decision == "preferred" and r.present is not None]
        if not preferred:
            return base
        share = self.preferred_share
        return (1 - share) * base + share * sum(1 for r in preferred if r.present) / len(preferred)
