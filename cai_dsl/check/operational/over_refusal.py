"""CAI307 over-refusal-risk: a harm-minimizing principle (tagged ``HARM_TAGS``, id
starting ``harm``, requires a refusal behavior, or forbids a non-refusal behavior
without a ``HELP_TAGS`` tag) with no helpfulness principle (tagged ``HELP_TAGS``,
itself included; or, not harm-minimizing, requiring/preferring a non-refusal behavior
or with a compare naming ``HELPFULNESS_CUES``) in the deployment whose ``when`` may
overlap (a per-facet projection of the conditions and the deployment's assumptions:
a sound over-approximation, no solver). Checked per deployment, not per principle.
"""

from __future__ import annotations

from cai_dsl.check.operational.context import LintContext
from cai_dsl.diagnostics import Diagnostic, Related, rules
from cai_dsl.lang import ast
from cai_dsl.lang.resolver import Constitution, ResolvedDeployment
from cai_dsl.semantics.projection import Projection, meet, project

RULE = rules.OVER_REFUSAL_RISK


def check_deployment(constitution: Constitution, deployment: ResolvedDeployment, ctx: LintContext) -> list[Diagnostic]:
    facets = constitution.facets
    base: Projection | None = {}
    for assumption in deployment.assumptions:
        base = meet(base, project(assumption, facets))
    if base is None:  # no reachable scenario: CAI204's business
        return []
    harm: list[ast.Principle] = []
    counter: list[ast.Principle] = []
    for p in deployment.principles:
        minimizing = ctx.is_harm_minimizing(p)
        if minimizing:
            harm.append(p)
        if ctx.is_counterweight(p, minimizing):
            counter.append(p)
    if not harm:
        return []
    # a principle tagged both safety and helpfulness ("most helpful, honest and harmless")
    # is its own counterweight; a harm principle is a counterweight only by its tag
    weights: list[Projection] = []
    seen_proj: set[tuple] = set()
    for p in counter:
        proj = meet(base, project(p.when, facets))
        if proj is None:
            continue
        key = tuple(sorted((k, tuple(sorted(v))) for k, v in proj.items()))
        if key in seen_proj:
            continue
        seen_proj.add(key)
        weights.append(proj)
    out = []
    for p in harm:
        proj = meet(base, project(p.when, facets))
        if proj is None:
            continue  # never active: CAI205's business
        if any(meet(proj, wproj) is not None for wproj in weights):
            continue
        out.append(
            RULE(
                f"`{p.id.name}` minimizes harm but no helpfulness principle can be active alongside it "
                f"in deployment `{deployment.name}`",
                p.id.span,
                help=(
                    "optimizing harmlessness alone rewards refusing and evasive answers (over-refusal, a Goodhart "
                    "failure); include a principle tagged `helpfulness` or one that requires/prefers a "
                    "non-refusal behavior (e.g. `partial_answer`) whose `when` can hold together with this one "
                    "(checked per facet, not with the solver)"
                ),
                related=[Related(span=deployment.span, message=f"deployment `{deployment.name}` declared here")],
                principles=[p.id.name],
                deployment=deployment.name,
            )
        )
    return out
