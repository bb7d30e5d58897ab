"""Hypothesis strategies: scenarios of a deployment, and random valid constitutions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hypothesis import strategies as st

from cai_dsl.semantics.evaluator import ResolvedPolicy, eval_expr, resolved_policy
from cai_dsl.lang.resolver import Constitution, resolve


class ConstitutionErrors(Exception):
    """Raised by :func:`load` when the constitution does not resolve cleanly."""


@dataclass(frozen=True)
class LoadedConstitution:
    """A resolved constitution with convenience methods for property tests."""

    constitution: Constitution

    def policy(self, deployment: str, scenario: dict[str, str]) -> ResolvedPolicy:
        """The resolved policy of a complete scenario."""
        return resolved_policy(self.constitution, self.constitution.deployments[deployment], scenario)

    def reachable(self, deployment: str, scenario: dict[str, str]) -> bool:
        d = self.constitution.deployments[deployment]
        return all(eval_expr(a, scenario, self.constitution.facets) for a in d.assumptions)


def load(path: str | Path) -> LoadedConstitution:
    """Resolve a `.const` file; raise :class:`ConstitutionErrors` with rendered errors if any."""
    from cai_dsl.diagnostics.base import render_text

    constitution = resolve(str(path))
    errors = [d for d in constitution.diagnostics if d.is_error]
    if errors:
        raise ConstitutionErrors(render_text(errors, constitution.sources))
    return LoadedConstitution(constitution)


def scenarios(loaded: LoadedConstitution | Constitution, deployment: str | None = None) -> st.SearchStrategy[dict]:
    """Complete scenarios (one value per facet); with ``deployment``, only reachable ones."""
    constitution = loaded.constitution if isinstance(loaded, LoadedConstitution) else loaded
    facets = constitution.facets
    strategy = st.fixed_dictionaries({name: st.sampled_from([v.name for v in f.values]) for name, f in sorted(facets.items())})
    if deployment is None:
        return strategy
    d = constitution.deployments[deployment]
    return strategy.filter(lambda s: all(eval_expr(a, s, facets) for a in d.assumptions))


# ---------------------------------------------------------------- random constitutions

_FACETS = {"topic": ["general", "medical", "cyber"], "risk": ["low", "medium", "high"], "intent": ["benign", "malicious"]}
_ORDERED = {"risk"}
_BEHAVIORS = ["refuse", "caveat", "detail", "partial", "cite"]


@st.composite
def _condition(draw, depth: int = 2) -> str:
    facet = draw(st.sampled_from(sorted(_FACETS)))
    values = _FACETS[facet]
    kind = draw(st.sampled_from(["cmp", "in", "bool"] + (["and", "or", "not"] if depth > 0 else [])))
    if kind == "cmp":
        ops = ["==", "!="] + (["<", "<=", ">", ">="] if facet in _ORDERED else [])
        return f"{facet} {draw(st.sampled_from(ops))} {draw(st.sampled_from(values))}"
    if kind == "in":
        chosen = draw(st.lists(st.sampled_from(values), min_size=1, max_size=2, unique=True))
        neg = draw(st.booleans())
        return f"{facet} {'not in' if neg else 'in'} {{{', '.join(chosen)}}}"
    if kind == "bool":
        return draw(st.sampled_from(["true", "false"]))
    if kind == "not":
        return f"not ({draw(_condition(depth - 1))})"
    left, right = draw(_condition(depth - 1)), draw(_condition(depth - 1))
    return f"({left}) {kind} ({right})"


@st.composite
def constitution_sources(draw, max_principles: int = 5) -> str:
    """Source text of a random valid constitution over a small scenario space.

    Random conditions, effects, an exclusive set, priorities (possibly cyclic),
    conflict rules with branches, and a deployment with random assumptions: the
    kind of input on which the SMT checker is cross-checked against enumeration.
    """
    lines = []
    for name, values in _FACETS.items():
        sep = " < " if name in _ORDERED else " | "
        lines.append(f"facet {name}: {sep.join(values)}")
    for b in _BEHAVIORS:
        lines.append(f"behavior {b}")
    lines.append("exclusive refuse, detail, partial")
    n = draw(st.integers(min_value=2, max_value=max_principles))
    ids = [f"p{i}" for i in range(n)]
    for pid in ids:
        body = []
        if draw(st.booleans()):
            body.append(f"when {draw(_condition())}")
        effects = draw(
            st.lists(st.tuples(st.sampled_from(["require", "forbid", "prefer"]), st.sampled_from(_BEHAVIORS)), min_size=1, max_size=3)
        )
        for kind, beh in effects:
            body.append(f"{kind} {beh}")
        lines.append(f"principle {pid} {{ compare \"Which response is better for {pid}?\" {' '.join(body)} }}")
    for _ in range(draw(st.integers(0, 2))):
        a, b = draw(st.lists(st.sampled_from(ids), min_size=2, max_size=2, unique=True))
        lines.append(f"priority {a} > {b}")
    ruled: set[frozenset[str]] = set()
    for _ in range(draw(st.integers(0, 2))):
        a, b = draw(st.lists(st.sampled_from(ids), min_size=2, max_size=2, unique=True))
        if frozenset((a, b)) in ruled:
            continue
        ruled.add(frozenset((a, b)))
        branches = [f"when {draw(_condition(1))}: {draw(st.sampled_from([a, b]))}" for _ in range(draw(st.integers(0, 2)))]
        if draw(st.booleans()):
            branches.append(f"otherwise: {draw(st.sampled_from([a, b]))}")
        lines.append(f"conflict {a} vs {b} {{ {' '.join(branches)} }}")
    assume = f"assume {draw(_condition(1))}" if draw(st.booleans()) else ""
    lines.append(f"deployment base {{ include * {assume} }}")
    return "\n".join(lines) + "\n"
