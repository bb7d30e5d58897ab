"""A plain evaluator of the shared semantics on concrete scenarios.

Used by the compiler (which principles apply to a tagged prompt), by `cai explain`
on complete scenarios, and, by enumeration over small domains, as the reference
that the SMT checker is cross-checked against in tests. It never decides anything
over all scenarios of a real constitution: that is the solver's job.

A scenario maps each facet to a value name, or to a whole number for a number facet.
Enumeration stays finite for number facets (:func:`number_points`): conditions only
compare a facet with constants, so every value between two consecutive constants
satisfies the same atoms; the range ends and ``c-1, c, c+1`` for each constant ``c``
meet every such interval, which makes enumeration over these points exact.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Mapping

from pydantic import BaseModel

from cai_dsl.lang import ast
from cai_dsl.lang.resolver import Constitution, ResolvedDeployment

Value = str | int  # a facet value name, or a number facet's number
Scenario = Mapping[str, Value]


def eval_expr(expr: ast.Expr | None, scenario: Scenario, facets: Mapping[str, ast.Facet]) -> bool:
    """Truth of ``expr`` in a complete scenario (``None`` is true: no condition)."""
    if expr is None:
        return True

    def combine(node: ast.Expr, values: list[bool]) -> bool:
        if isinstance(node, ast.BoolLiteral):
            return node.value
        if isinstance(node, ast.Comparison):
            return _compare(node, scenario, facets)
        if isinstance(node, ast.Membership):
            return (scenario[node.facet.name] in {v.name for v in node.values}) != node.negated
        if isinstance(node, ast.Not):
            return not values[0]
        return all(values) if isinstance(node, ast.And) else any(values)

    return ast.fold_expr(expr, combine)


def _compare(node: ast.Comparison, scenario: Scenario, facets: Mapping[str, ast.Facet]) -> bool:
    actual = scenario[node.facet.name]
    if (facets[node.facet.name].bounds is not None) != isinstance(node.value, ast.Number):
        return False  # a kind mismatch (CAI126), false as in the SMT encoding
    if isinstance(node.value, ast.Number):
        return ast.NUMBER_COMPARATORS[node.op](int(actual), node.value.value)
    if node.op == "==":
        return actual == node.value.name
    if node.op == "!=":
        return actual != node.value.name
    order = [v.name for v in facets[node.facet.name].values]
    a, b = order.index(actual), order.index(node.value.name)
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[node.op]


def number_constants(*nodes: BaseModel) -> dict[str, set[int]]:
    """Per number facet, the numbers it is compared with anywhere in ``nodes`` (ASTs, a
    :class:`Constitution`...)."""
    out: dict[str, set[int]] = {}
    stack: list[object] = list(nodes)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Comparison):
            if isinstance(node.value, ast.Number):
                out.setdefault(node.facet.name, set()).add(node.value.value)
        elif isinstance(node, BaseModel):
            stack.extend(getattr(node, name) for name in type(node).model_fields)
        elif isinstance(node, (tuple, list)):
            stack.extend(node)
        elif isinstance(node, dict):
            stack.extend(node.values())
    return out


def number_points(facet: ast.Facet, constants: Iterable[int] = ()) -> list[int]:
    """The values of number facet ``facet`` that enumeration visits: its range ends and
    ``c-1, c, c+1`` for each constant ``c`` it is compared with, inside the range (exact
    for comparisons of the facet with constants; see the module docstring)."""
    low, high = facet.bounds.low.value, facet.bounds.high.value
    points = {low, high}
    for c in constants:
        points.update(p for p in (c - 1, c, c + 1) if low <= p <= high)
    return sorted(points)


def facet_domain(facet: ast.Facet, constants: Iterable[int] = ()) -> list[Value]:
    """The values of ``facet`` enumeration visits: every value name, or :func:`number_points`."""
    return number_points(facet, constants) if facet.bounds is not None else [v.name for v in facet.values]


def all_scenarios(
    facets: Mapping[str, ast.Facet], constants: Mapping[str, Iterable[int]] | None = None
) -> Iterator[dict[str, Value]]:
    """Every assignment of one value per facet (exponential: small domains only); number
    facets take the points of :func:`number_points` for ``constants`` (see
    :func:`number_constants`), which is exact for the conditions those constants come from."""
    names = sorted(facets)
    constants = constants or {}
    for values in itertools.product(*(facet_domain(facets[n], constants.get(n, ())) for n in names)):
        yield dict(zip(names, values))


def reachable(deployment: ResolvedDeployment, scenario: Scenario, facets: Mapping[str, ast.Facet]) -> bool:
    return all(eval_expr(a, scenario, facets) for a in deployment.assumptions)


def active_principles(
    deployment: ResolvedDeployment, scenario: Scenario, facets: Mapping[str, ast.Facet]
) -> list[ast.Principle]:
    """The deployment's principles whose ``when`` holds in ``scenario``."""
    return [p for p in deployment.principles if eval_expr(p.when, scenario, facets)]


class PriorityOrder:
    """The transitive closure of a deployment's priority edges, as one reachability bitset per principle:
    ``(higher, lower) in order``. Built in time linear in the edges times n/64 words (a chain of 2,000
    levels: milliseconds), where the set of (higher, lower) pairs has n^2/2 entries."""

    def __init__(self, edges: Iterable[tuple[str, str]]):
        succ: dict[str, list[str]] = {}
        index: dict[str, int] = {}
        for higher, lower in edges:
            succ.setdefault(higher, []).append(lower)
            for name in (higher, lower):
                index.setdefault(name, len(index))
        self._index = index
        self._reach: dict[str, int] = {}
        for start in succ:  # iterative depth-first search; a node's bits are final once all successors are
            if start in self._reach:
                continue
            stack: list[tuple[str, int]] = [(start, 0)]
            on_stack = {start}
            while stack:
                node, i = stack[-1]
                children = succ.get(node, ())
                if i < len(children):
                    stack[-1] = (node, i + 1)
                    child = children[i]
                    if child not in self._reach and child not in on_stack:
                        stack.append((child, 0))
                        on_stack.add(child)
                    continue
                stack.pop()
                on_stack.discard(node)
                bits = 0
                for child in children:
                    bits |= (1 << index[child]) | self._reach.get(child, 0)
                self._reach[node] = bits
        if any(self._cyclic(n) for n in succ):  # a cycle (a lint error elsewhere): plain reachability for all
            self._reach = {n: self._search(succ, n) for n in succ}

    def _cyclic(self, node: str) -> bool:
        return bool(self._reach.get(node, 0) >> self._index[node] & 1)

    def _search(self, succ: dict[str, list[str]], start: str) -> int:
        bits, stack, seen = 0, list(succ.get(start, ())), set()
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            bits |= 1 << self._index[node]
            stack.extend(succ.get(node, ()))
        return bits

    def __contains__(self, pair: object) -> bool:
        higher, lower = pair  # type: ignore[misc]
        bits = self._reach.get(higher)
        return bits is not None and lower in self._index and bool(bits >> self._index[lower] & 1)


def priority_closure(deployment: ResolvedDeployment) -> PriorityOrder:
    """Transitive closure of the deployment's priority edges: ``(higher, lower) in closure``."""
    return PriorityOrder((e.higher, e.lower) for e in deployment.priorities)


def outranks(deployment: ResolvedDeployment, closure: PriorityOrder, a: str, b: str) -> str | None:
    """Why ``a`` ranks above ``b`` where no conflict rule decides: ``"authority"`` (its
    level is higher), ``"priority"`` (same level, the priority order), or None."""
    ra, rb = deployment.rank(a), deployment.rank(b)
    if ra != rb:
        return "authority" if ra < rb else None
    return "priority" if (a, b) in closure and (b, a) not in closure else None


@dataclass(frozen=True)
class Clash:
    """Two principles that demand incompatible things about ``behaviors``."""

    first: str
    second: str
    behaviors: tuple[str, ...]  # (B,) for require/forbid; (B1, B2) for an exclusive pair
    kind: str  # "require-forbid" or "exclusive"


def clashes_between(a: ast.Principle, b: ast.Principle, exclusives: tuple[ast.Exclusive, ...]) -> list[Clash]:
    """The ways principles ``a`` and ``b`` clash, whatever the scenario."""
    out: list[Clash] = []
    ra, fa = set(a.effect_behaviors("require")), set(a.effect_behaviors("forbid"))
    rb, fb = set(b.effect_behaviors("require")), set(b.effect_behaviors("forbid"))
    for beh in sorted((ra & fb) | (rb & fa)):
        out.append(Clash(a.id.name, b.id.name, (beh,), "require-forbid"))
    for ex in exclusives:
        members = [m.name for m in ex.members]
        for x in sorted(ra & set(members)):
            for y in sorted(rb & set(members)):
                if x != y:
                    out.append(Clash(a.id.name, b.id.name, (x, y), "exclusive"))
    return out


def conflict_winner(
    constitution: Constitution, deployment: ResolvedDeployment, a: str, b: str, scenario: Scenario
) -> tuple[str | None, str]:
    """Who wins a clash between ``a`` and ``b`` in ``scenario``, and why.

    A conflict rule for the pair decides first (first matching branch, then
    ``otherwise``); else the higher authority level; else the priority order; else
    nobody (a contradiction).
    """
    for rule in deployment.conflicts:
        if {rule.left.name, rule.right.name} == {a, b}:
            for branch in rule.branches:
                if eval_expr(branch.condition, scenario, constitution.facets):
                    return branch.winner.name, f"conflict rule at {rule.span}"
            if rule.otherwise is not None:
                return rule.otherwise.name, f"conflict rule (otherwise) at {rule.span}"
            break  # one rule per pair (a second one is a resolution error)
    closure = priority_closure(deployment)
    for winner, loser in ((a, b), (b, a)):
        why = outranks(deployment, closure, winner, loser)
        if why is not None:
            return winner, why
    return None, "unresolved"


@dataclass
class BehaviorDecision:
    behavior: str
    status: str  # "required", "forbidden", "free"
    reasons: list[str] = field(default_factory=list)  # principle ids that decided it
    preferred_by: list[str] = field(default_factory=list)


@dataclass
class ResolvedPolicy:
    """The resolved policy of one complete scenario."""

    scenario: dict[str, Value]
    active: list[str]
    decisions: dict[str, BehaviorDecision]
    unresolved: list[Clash]
    wins: list[tuple[str, str, str]]  # (winner, loser, why)


def resolved_policy(constitution: Constitution, deployment: ResolvedDeployment, scenario: Scenario) -> ResolvedPolicy:
    """Per behavior: required, forbidden or free, with the deciding principles."""
    active = active_principles(deployment, scenario, constitution.facets)
    losers: set[str] = set()
    unresolved: list[Clash] = []
    wins: list[tuple[str, str, str]] = []
    # losing a clash removes only the demands involved in that clash
    beaten: set[tuple[str, str]] = set()  # (principle, behavior) demands overridden
    for i, a in enumerate(active):
        for b in active[i + 1 :]:
            for clash in clashes_between(a, b, constitution.exclusives):
                winner, why = conflict_winner(constitution, deployment, a.id.name, b.id.name, scenario)
                if winner is None:
                    unresolved.append(clash)
                    continue
                loser = b.id.name if winner == a.id.name else a.id.name
                losers.add(loser)
                wins.append((winner, loser, why))
                for beh in clash.behaviors:
                    beaten.add((loser, beh))
    decisions: dict[str, BehaviorDecision] = {
        name: BehaviorDecision(name, "free") for name in constitution.behaviors
    }
    for p in active:
        pid = p.id.name
        for beh in p.effect_behaviors("require"):
            if (pid, beh) not in beaten and beh in decisions:
                d = decisions[beh]
                d.status = "required" if d.status != "forbidden" else d.status
                d.reasons.append(pid)
        for beh in p.effect_behaviors("forbid"):
            if (pid, beh) not in beaten and beh in decisions:
                d = decisions[beh]
                d.status = "forbidden"
                d.reasons.append(pid)
        for beh in p.effect_behaviors("prefer"):
            if beh in decisions:
                decisions[beh].preferred_by.append(pid)
    return ResolvedPolicy(
        scenario=dict(scenario),
        active=[p.id.name for p in active],
        decisions=decisions,
        unresolved=unresolved,
        wins=wins,
    )
