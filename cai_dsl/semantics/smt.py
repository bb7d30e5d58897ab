"""The SMT encoding of the semantics (z3) and named queries over it.

Scenarios are never enumerated. Each facet becomes a bounded integer (the index
of its value; a number facet's own value, within its range), ``when``/``assume``/``given`` conditions become constraints, and
the solver answers questions such as "is there a reachable scenario where these
two principles are both active, clash, and nothing resolves the clash?" with a
witness scenario. Only principle pairs that share a behavior (found through a
behavior index) are ever sent to the solver.

:class:`ScenarioSpace` encodes conditions; :class:`DeploymentModel` encodes one
deployment (activity, clashes, winners, behavior status) and answers the named
queries (``reachable``, ``never_active``, ``clash_unresolved``, ``can_win``,
``always_loses``, ``final_always_wins``, ``unreachable_branches``, ``counterexample``, ``activity``,
``possible_statuses``), each returning a witness scenario or a verdict, never a z3
object. The same semantics on one concrete scenario live in
:mod:`cai_dsl.semantics.evaluator`; the tests cross-check the two.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Literal

import z3

from cai_dsl.lang import ast
from cai_dsl.lang.resolver import Constitution, ResolvedDeployment
from cai_dsl.semantics.budget import Budget, Undecided
from cai_dsl.semantics.evaluator import Clash, Value, clashes_between, outranks, priority_closure

Scenario = dict[str, Value]
Activity = Literal["always", "sometimes", "never", "undecided"]
Status = Literal["forbidden", "required", "free"]


class ScenarioSpace:
    """z3 encoding of the scenario space of one constitution (own z3 context)."""

    def __init__(self, constitution: Constitution):
        self.constitution = constitution
        self.ctx = z3.Context()
        self.facets = constitution.facets
        self.vars = {name: z3.Int(f"facet!{name}", self.ctx) for name in sorted(self.facets)}
        self.index = {name: {v.name: i for i, v in enumerate(f.values)} for name, f in self.facets.items()}
        self.domain = self.conj([self._bounds(name, v) for name, v in self.vars.items()])
        self._cache: dict[str, z3.BoolRef] = {}

    def _bounds(self, name: str, var: z3.ArithRef) -> z3.BoolRef:
        facet = self.facets[name]
        if facet.bounds is not None:
            return z3.And(var >= facet.bounds.low.value, var <= facet.bounds.high.value)
        return z3.And(var >= 0, var < len(facet.values))

    def true(self) -> z3.BoolRef:
        return z3.BoolVal(True, self.ctx)

    def false(self) -> z3.BoolRef:
        return z3.BoolVal(False, self.ctx)

    def conj(self, items: list) -> z3.BoolRef:
        items = [i for i in items if not z3.is_true(i)]
        if not items:
            return self.true()
        return items[0] if len(items) == 1 else z3.And(*items)

    def disj(self, items: list) -> z3.BoolRef:
        items = [i for i in items if not z3.is_false(i)]
        if not items:
            return self.false()
        return items[0] if len(items) == 1 else z3.Or(*items)

    def encode(self, expr: ast.Expr | None) -> z3.BoolRef:
        """The constraint of an expression (``None``: true). Cached by structure."""
        if expr is None:
            return self.true()
        key = json.dumps(ast.strip_spans(expr.model_dump(mode="json")), sort_keys=True)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        out = ast.fold_expr(expr, self._encode_node)
        self._cache[key] = out
        return out

    def _encode_node(self, node, values: list) -> z3.BoolRef:
        if isinstance(node, ast.BoolLiteral):
            return z3.BoolVal(node.value, self.ctx)
        if isinstance(node, ast.Not):
            return z3.Not(values[0])
        if isinstance(node, ast.And):
            return self.conj(values)
        if isinstance(node, ast.Or):
            return self.disj(values)
        var = self.vars.get(node.facet.name)
        if var is None:  # undefined facet: reported by the resolver; treat as unknown
            return z3.Bool(f"unknown!{node.facet.name}", self.ctx)
        index = self.index[node.facet.name]
        if isinstance(node, ast.Membership):
            inside = self.disj([var == index[v.name] for v in node.values if v.name in index])
            return z3.Not(inside) if node.negated else inside
        number = self.facets[node.facet.name].bounds is not None
        if number != isinstance(node.value, ast.Number):  # a kind mismatch (CAI126): false, as in the evaluator
            return self.false()
        if number:
            i = node.value.value
        elif node.value.name not in index:
            return z3.Bool(f"unknown!{node.facet.name}!{node.value.name}", self.ctx)
        else:
            i = index[node.value.name]
        return {
            "==": var == i,
            "!=": var != i,
            "<": var < i,
            "<=": var <= i,
            ">": var > i,
            ">=": var >= i,
        }[node.op]

    def scenario(self, model: z3.ModelRef) -> dict[str, str]:
        """A complete witness scenario (facet -> value name) from a model."""
        out = {}
        for name, var in self.vars.items():
            i = model.eval(var, model_completion=True).as_long()
            facet = self.facets[name]
            if facet.bounds is not None:
                out[name] = min(max(i, facet.bounds.low.value), facet.bounds.high.value)
            else:
                out[name] = facet.values[min(max(i, 0), len(facet.values) - 1)].name
        return out

    def scenario_constraint(self, scenario: dict[str, Value]) -> z3.BoolRef:
        """Constraint fixing the given (possibly partial) scenario."""
        return self.conj([self.vars[k] == self._code(k, v) for k, v in scenario.items() if k in self.vars])

    def _code(self, facet: str, value: Value) -> int:
        """The integer that stands for ``value`` of ``facet`` (a number facet's value is itself)."""
        return int(value) if self.facets[facet].bounds is not None else self.index[facet][value]


class DeploymentModel:
    """Symbolic semantics of one deployment: activity, clashes, winners, behavior status."""

    def __init__(self, space: ScenarioSpace, deployment: ResolvedDeployment, budget: Budget | None = None):
        self.space = space
        self.budget = budget
        #: queries the solver could not decide within the budget (their answer was taken as "no witness")
        self.undecided: list[Undecided] = []
        self.last_undecided = False
        self._about: tuple[str, tuple[str, ...]] = ("reachable", ())
        self._answers: dict[tuple[int, ...], tuple[list, z3.ModelRef | None]] = {}
        self._both: dict[tuple[int, int], z3.BoolRef] = {}
        self.constitution = space.constitution
        self.deployment = deployment
        self.principles = {p.id.name: p for p in deployment.principles}
        self.region = space.conj([space.domain, *(space.encode(a) for a in deployment.assumptions)])
        self.cond = {pid: space.encode(p.when) for pid, p in self.principles.items()}
        self.closure = priority_closure(deployment)
        self.rules: dict[frozenset[str], ast.Conflict] = {}
        for rule in deployment.conflicts:
            pair = frozenset((rule.left.name, rule.right.name))
            if len(pair) == 2 and pair <= set(self.principles):
                self.rules.setdefault(pair, rule)
        self.solver = z3.Solver(ctx=space.ctx)
        self.solver.add(self.region)
        self.pairs = self._clash_pairs()
        self._never_active: dict[str, bool] = {}
        self._live: list[tuple[str, str]] | None = None
        self._by_signature: dict[tuple, Scenario | None] = {}

    # -- solving
    def sat(self, *constraints: z3.BoolRef) -> z3.ModelRef | None:
        """A model of the deployment's reachable scenarios plus ``constraints``, or None.

        Answers are memoised by constraint; with a budget, a query that runs out of time (or finds
        the run's budget spent) returns None with ``last_undecided`` set and is recorded in ``undecided``."""
        self.last_undecided = False
        items = [c for c in constraints if not z3.is_true(c)]
        if any(z3.is_false(c) for c in items):
            return None
        key = tuple(sorted(c.get_id() for c in items))
        if key in self._answers:  # the stored constraints keep their ids alive
            return self._answers[key][1]
        if self.budget is not None:
            if self.budget.exhausted():
                return self._undecided(run_exhausted=True)
            self.solver.set("timeout", self.budget.timeout_ms())
        self.solver.push()
        try:
            for c in items:
                self.solver.add(c)
            result = self.solver.check()
            model = self.solver.model() if result == z3.sat else None
        finally:
            self.solver.pop()
        if result == z3.unknown:
            return self._undecided(run_exhausted=self.budget is not None and self.budget.exhausted())
        self._answers[key] = (items, model)
        return model

    def _undecided(self, run_exhausted: bool) -> None:
        self.last_undecided = True
        query, pids = self._about
        budget = self.budget or Budget()
        seconds = budget.run_seconds if run_exhausted else budget.query_seconds
        self.undecided.append(Undecided(query, pids, self.deployment.name, seconds, run_exhausted))
        return None

    def _asking(self, query: str, *pids: str) -> bool:
        """Name the query about to run (what an undecided answer is reported as); True, with the
        query recorded as undecided, when the run's budget is already spent (skip building it)."""
        self._about = (query, pids)
        self.last_undecided = False
        if self.budget is not None and self.budget.exhausted():
            self._undecided(run_exhausted=True)
            return True
        return False

    # -- clashes
    def _clash_pairs(self) -> dict[tuple[str, str], list[Clash]]:
        """Pairs of principles that clash on some behavior, via a behavior index."""
        requires: dict[str, list[str]] = {}
        forbids: dict[str, list[str]] = {}
        for pid, p in self.principles.items():
            for b in p.effect_behaviors("require"):
                requires.setdefault(b, []).append(pid)
            for b in p.effect_behaviors("forbid"):
                forbids.setdefault(b, []).append(pid)
        candidates: set[tuple[str, str]] = set()
        order = {pid: i for i, pid in enumerate(self.principles)}

        def add(a: str, b: str) -> None:
            if a != b:
                candidates.add((a, b) if order[a] < order[b] else (b, a))

        for b, reqs in requires.items():
            for f in forbids.get(b, ()):
                for r in reqs:
                    add(r, f)
        for ex in self.constitution.exclusives:
            members = [m.name for m in ex.members]
            for i, x in enumerate(members):
                for y in members[i + 1 :]:
                    for a in requires.get(x, ()):
                        for b in requires.get(y, ()):
                            add(a, b)
        pairs = {}
        for a, b in sorted(candidates, key=lambda pr: (order[pr[0]], order[pr[1]])):
            clashes = clashes_between(self.principles[a], self.principles[b], self.constitution.exclusives)
            if clashes:
                pairs[(a, b)] = clashes
        return pairs

    def rule_for(self, a: str, b: str) -> ast.Conflict | None:
        return self.rules.get(frozenset((a, b)))

    def wins(self, winner: str, loser: str) -> z3.BoolRef:
        """Scenarios where ``winner`` beats ``loser`` in their clash (rule first, then priority)."""
        space = self.space
        by_priority = outranks(self.deployment, self.closure, winner, loser) is not None
        rule = self.rule_for(winner, loser)
        if rule is None:
            return space.true() if by_priority else space.false()
        terms = []
        earlier: list[z3.BoolRef] = []
        for branch in rule.branches:
            c = space.encode(branch.condition)
            if branch.winner.name == winner:
                terms.append(space.conj([*(z3.Not(e) for e in earlier), c]))
            earlier.append(c)
        none_matched = space.conj([z3.Not(e) for e in earlier])
        if rule.otherwise is not None:
            if rule.otherwise.name == winner:
                terms.append(none_matched)
        elif by_priority:
            terms.append(none_matched)
        return space.disj(terms)

    def resolved(self, a: str, b: str) -> z3.BoolRef:
        return self.space.disj([self.wins(a, b), self.wins(b, a)])

    def both_active(self, a: str, b: str) -> z3.BoolRef:
        ca, cb = self.cond[a], self.cond[b]
        ia, ib = ca.get_id(), cb.get_id()
        key = (ia, ib) if ia <= ib else (ib, ia)  # keyed by formula: principles with the same `when` share it
        found = self._both.get(key)
        if found is None:
            found = self._both[key] = ca if ia == ib else self.space.conj([ca, cb])
        return found

    # -- behavior status, mirroring evaluator.resolved_policy
    def beaten(self, pid: str, behavior: str) -> z3.BoolRef:
        terms = []
        for (a, b), clashes in self.pairs.items():
            if pid not in (a, b) or not any(behavior in c.behaviors for c in clashes):
                continue
            other = b if pid == a else a
            terms.append(self.space.conj([self.cond[other], self.wins(other, pid)]))
        return self.space.disj(terms)

    def demanded(self, effect: str, behavior: str) -> z3.BoolRef:
        terms = []
        for pid, p in self.principles.items():
            if behavior in p.effect_behaviors(effect):
                if effect == "prefer":
                    terms.append(self.cond[pid])
                else:
                    terms.append(self.space.conj([self.cond[pid], z3.Not(self.beaten(pid, behavior))]))
        return self.space.disj(terms)

    def forbidden(self, behavior: str) -> z3.BoolRef:
        return self.demanded("forbid", behavior)

    def required(self, behavior: str) -> z3.BoolRef:
        return self.space.conj([z3.Not(self.forbidden(behavior)), self.demanded("require", behavior)])

    def preferred(self, behavior: str) -> z3.BoolRef:
        return self.demanded("prefer", behavior)

    # -- named queries: witness scenarios (facet -> value) or verdicts, never z3 objects
    def witness(self, *constraints: z3.BoolRef) -> Scenario | None:
        """A reachable scenario satisfying ``constraints``, or None."""
        model = self.sat(*constraints)
        return self.space.scenario(model) if model is not None else None

    def reachable(self, given: Scenario | None = None) -> Scenario | None:
        """A scenario the deployment's assumptions admit (extending ``given``), or None."""
        self._asking("reachable")
        return self.witness(self.space.scenario_constraint(given or {}))

    def active(self, pid: str) -> z3.BoolRef:
        """Scenarios where principle ``pid`` is active."""
        return self.cond[pid]

    def never_active(self, pid: str) -> bool:
        """No reachable scenario activates ``pid`` (cached)."""
        cached = self._never_active.get(pid)
        if cached is None:
            self._asking("never-active", pid)
            cached = not z3.is_true(self.cond[pid]) and self.sat(self.cond[pid]) is None and not self.last_undecided
            self._never_active[pid] = cached
        return cached

    def _pair_query(self, query: str, a: str, b: str, build: Callable[[], list[z3.BoolRef]]) -> Scenario | None:
        """The witness of a query about pair ``(a, b)``, shared by every pair with the same signature: no
        conflict rule, the same activity formulas and the same priority relation give the same answer, so
        a priority chain of n principles asks a handful of solver queries instead of n^2/2."""
        if self._asking(query, a, b):
            return None
        key = None
        if frozenset((a, b)) not in self.rules:
            key = (query, self.cond[a].get_id(), self.cond[b].get_id(), self._outranks(a, b), self._outranks(b, a))
            if key in self._by_signature:
                return self._by_signature[key]
        found = self.witness(*build())
        if key is not None and not self.last_undecided:
            self._by_signature[key] = found
        return found

    def _outranks(self, a: str, b: str) -> bool:
        return outranks(self.deployment, self.closure, a, b) is not None

    def co_active(self, a: str, b: str) -> Scenario | None:
        """A reachable scenario where ``a`` and ``b`` are both active, or None."""
        return self._pair_query("co-active", a, b, lambda: [self.both_active(a, b)])

    def clash_unresolved(self, a: str, b: str) -> Scenario | None:
        """A reachable scenario where ``a`` and ``b`` are both active and neither wins, or None."""
        return self._pair_query("clash", a, b, lambda: [self.both_active(a, b), z3.Not(self.resolved(a, b))])

    def can_win(self, winner: str, loser: str) -> Scenario | None:
        """A reachable scenario where both are active and ``winner`` beats ``loser``, or None."""
        return self._pair_query("can-win", winner, loser,
                                lambda: [self.both_active(winner, loser), self.wins(winner, loser)])

    def live_pairs(self) -> list[tuple[str, str]]:
        """The clashing pairs that are both active in some reachable scenario, in pair order (cached)."""
        if self._live is None:
            self._live = []
            for a, b in self.pairs:
                if self._asking("co-active", a, b):  # the run's budget is spent: the rest is undecided
                    break
                if not self.never_active(a) and not self.never_active(b) and self.co_active(a, b) is not None:
                    self._live.append((a, b))
        return list(self._live)

    def always_loses(self) -> list[str]:
        """Principles beaten in some reachable clash that win none, in principle order (a
        clash nothing ever resolves is a contradiction, not a loss)."""
        lost: set[str] = set()
        won: set[str] = set()
        for a, b in self.live_pairs():
            for w, l in ((a, b), (b, a)):
                if self.can_win(w, l) is not None:
                    won.add(w)
                    lost.add(l)
                elif self.last_undecided:  # not known to lose: never reported as shadowed
                    won.add(w)
        return sorted(lost - won, key=list(self.principles).index)

    def final_always_wins(self, pid: str) -> dict[str, Scenario]:
        """For final principle ``pid``: each principle it clashes with somewhere reachable
        and does not beat there, with the witness scenario (empty: it wins every clash)."""
        out: dict[str, Scenario] = {}
        for a, b in self.live_pairs():
            if pid in (a, b):
                other = b if pid == a else a
                if self.budget is not None and self.budget.exhausted():
                    self._asking("final", pid, other)
                    break
                found = self._pair_query("final", pid, other,
                                         lambda: [self.both_active(pid, other), z3.Not(self.wins(pid, other))])
                if found is not None:
                    out[other] = found
        return out

    def unreachable_branches(self, rule: ast.Conflict) -> list[ast.ConflictBranch | None]:
        """Branches of ``rule`` that never decide where both principles are active (after the
        branches above); ``None`` stands for an ``otherwise`` that the branches always cover."""
        region = self.both_active(rule.left.name, rule.right.name)
        if self._asking("branches", rule.left.name, rule.right.name):
            return []
        out: list[ast.ConflictBranch | None] = []
        earlier: list[z3.BoolRef] = []
        for branch in rule.branches:
            c = self.space.encode(branch.condition)
            if self.sat(region, *(z3.Not(e) for e in earlier), c) is None and not self.last_undecided:
                out.append(branch)
            earlier.append(c)
        if (
            rule.otherwise is not None
            and earlier
            and self.sat(region, *(z3.Not(e) for e in earlier)) is None
            and not self.last_undecided
        ):
            out.append(None)
        return out

    def claim(self, expect: str, subject: str, other: str | None = None) -> z3.BoolRef:
        """What a test expectation (``active``, ``winner``, ``require``, ``not_forbid`` ...) asserts;
        every name must be a principle (or behavior) of the deployment."""
        if expect in ("active", "not_active"):
            cond = self.cond[subject]
            return cond if expect == "active" else z3.Not(cond)
        if expect == "winner":
            return z3.Implies(self.both_active(subject, other), self.wins(subject, other))
        base = expect.removeprefix("not_")
        formula = {"require": self.required, "forbid": self.forbidden, "prefer": self.preferred}[base](subject)
        return z3.Not(formula) if expect.startswith("not_") else formula

    def counterexample(self, region: ast.Expr | None, claim: z3.BoolRef | bool) -> Scenario | None:
        """A reachable scenario inside ``region`` where ``claim`` fails, or None (it always holds, or, with
        ``last_undecided`` set, the budget ran out)."""
        if isinstance(claim, bool):
            claim = z3.BoolVal(claim, self.space.ctx)
        self._about = ("counterexample", ())
        return self.witness(self.space.encode(region), z3.Not(claim))

    def inhabited(self, region: ast.Expr | None) -> bool:
        """Some reachable scenario lies inside ``region`` (False, with ``last_undecided`` set, when undecided)."""
        self._about = ("inhabited", ())
        return self.witness(self.space.encode(region)) is not None

    def activity(self, pid: str, given: Scenario) -> Activity:
        """Whether ``pid`` is active in every, some or no reachable completion of ``given`` (or ``undecided``
        within the budget)."""
        fixed = self.space.scenario_constraint(given)
        self._about = ("activity", (pid,))
        if self.sat(fixed, self.cond[pid]) is None:
            return "undecided" if self.last_undecided else "never"
        if self.sat(fixed, z3.Not(self.cond[pid])) is None:
            return "undecided" if self.last_undecided else "always"
        return "sometimes"

    def possible_statuses(self, behavior: str, given: Scenario) -> dict[Status, Scenario | None]:
        """Each status ``behavior`` can have in a reachable completion of ``given``, with an example; a status
        the solver could not decide within the budget maps to None."""
        fixed = self.space.scenario_constraint(given)
        forbidden, required = self.forbidden(behavior), self.required(behavior)
        options = {"forbidden": forbidden, "required": required, "free": z3.And(z3.Not(forbidden), z3.Not(required))}
        out: dict[Status, Scenario | None] = {}
        for status, formula in options.items():
            self._about = ("status", ())
            found = self.witness(fixed, formula)
            if found is not None or self.last_undecided:
                out[status] = found
        return out
