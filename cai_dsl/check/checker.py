"""The checker: semantic analysis of deployments with an SMT solver (z3).

Scenarios are never enumerated. Each facet becomes a bounded integer (the index
of its value), ``when``/``assume``/``given`` conditions become constraints, and
the solver answers questions such as "is there a reachable scenario where these
two principles are both active, clash, and nothing resolves the clash?" with a
witness model. Only principle pairs that share a behavior (found through a
behavior index) are ever sent to the solver.

The same semantics, evaluated on one concrete scenario, live in
:mod:`cai_dsl.semantics.evaluator`; the tests cross-check the two.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Iterable

import z3

from cai_dsl.lang import ast

from cai_dsl.diagnostics import rules
from cai_dsl.diagnostics.base import Diagnostic, Related
from cai_dsl.semantics.evaluator import Clash, clashes_between, priority_closure, resolved_policy
from cai_dsl.lang.resolver import Constitution, ResolvedDeployment


# ---------------------------------------------------------------- encoding


class ScenarioSpace:
    """z3 encoding of the scenario space of one constitution (own z3 context)."""

    def __init__(self, constitution: Constitution):
        self.constitution = constitution
        self.ctx = z3.Context()
        self.facets = constitution.facets
        self.vars = {name: z3.Int(f"facet!{name}", self.ctx) for name in sorted(self.facets)}
        self.index = {name: {v.name: i for i, v in enumerate(f.values)} for name, f in self.facets.items()}
        self.domain = self.conj(
            [z3.And(v >= 0, v < len(self.facets[name].values)) for name, v in self.vars.items()]
        )
        self._cache: dict[str, z3.BoolRef] = {}

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
        if node.value.name not in index:
            return z3.Bool(f"unknown!{node.facet.name}!{node.value.name}", self.ctx)
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
            values = self.facets[name].values
            out[name] = values[min(max(i, 0), len(values) - 1)].name
        return out

    def scenario_constraint(self, scenario: dict[str, str]) -> z3.BoolRef:
        """Constraint fixing the given (possibly partial) scenario."""
        return self.conj([self.vars[k] == self.index[k][v] for k, v in scenario.items() if k in self.vars])


class DeploymentModel:
    """Symbolic semantics of one deployment: activity, clashes, winners, behavior status."""

    def __init__(self, space: ScenarioSpace, deployment: ResolvedDeployment):
        self.space = space
        self.constitution = space.constitution
        self.deployment = deployment
        self.principles = {p.id.name: p for p in deployment.principles}
        self.reachable = space.conj([space.domain, *(space.encode(a) for a in deployment.assumptions)])
        self.cond = {pid: space.encode(p.when) for pid, p in self.principles.items()}
        self.closure = priority_closure(deployment)
        self.rules: dict[frozenset[str], ast.Conflict] = {}
        for rule in deployment.conflicts:
            pair = frozenset((rule.left.name, rule.right.name))
            if len(pair) == 2 and pair <= set(self.principles):
                self.rules.setdefault(pair, rule)
        self.solver = z3.Solver(ctx=space.ctx)
        self.solver.add(self.reachable)
        self.pairs = self._clash_pairs()

    # -- solving
    def sat(self, *constraints: z3.BoolRef) -> z3.ModelRef | None:
        """A model of the deployment's reachable scenarios plus ``constraints``, or None."""
        self.solver.push()
        try:
            for c in constraints:
                self.solver.add(c)
            result = self.solver.check()
            return self.solver.model() if result == z3.sat else None
        finally:
            self.solver.pop()

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
        by_priority = (winner, loser) in self.closure and (loser, winner) not in self.closure
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
        return self.space.conj([self.cond[a], self.cond[b]])

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


# ---------------------------------------------------------------- analysis


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


def check_deployment(space: ScenarioSpace, deployment: ResolvedDeployment) -> list[Diagnostic]:
    """Semantic diagnostics of one deployment (CAI2xx), each with a witness where one exists."""
    constitution = space.constitution
    name = deployment.name
    out: list[Diagnostic] = []
    model = DeploymentModel(space, deployment)
    if model.sat() is None:
        span = deployment.span
        for decl_item in constitution.deployment_decls[name].items:
            if isinstance(decl_item, ast.Assume):
                span = decl_item.span
                break
        out.append(
            rules.UNSATISFIABLE_ASSUMPTION(
                f"the assumptions of deployment `{name}` admit no scenario",
                span,
                deployment=name,
                help="relax one `assume` (assumptions of parent deployments apply too)",
            )
        )
        return out
    out.extend(_priority_cycles(deployment))

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
    active_somewhere: dict[str, bool] = {}
    for pid in model.principles:
        if z3.is_true(model.cond[pid]):
            active_somewhere[pid] = True
            continue
        active_somewhere[pid] = model.sat(model.cond[pid]) is not None
        if not active_somewhere[pid]:
            p = model.principles[pid]
            out.append(
                rules.NEVER_ACTIVE(
                    f"principle `{pid}` is active in no reachable scenario of deployment `{name}`",
                    p.when.span if p.when is not None else p.id.span,
                    deployment=name,
                    principles=[pid],
                    help="its `when` contradicts the deployment's `assume` clauses; fix the condition or exclude it",
                )
            )

    took_part: set[str] = set()
    won_somewhere: set[str] = set()
    for (a, b), clashes in model.pairs.items():
        if not (active_somewhere.get(a) and active_somewhere.get(b)):
            continue
        region = model.both_active(a, b)
        if model.sat(region) is None:
            continue
        took_part.update((a, b))
        rule = model.rule_for(a, b)
        unresolved = model.sat(region, z3.Not(model.resolved(a, b)))
        for winner, loser in ((a, b), (b, a)):
            if model.sat(region, model.wins(winner, loser)) is not None:
                won_somewhere.add(winner)
        if unresolved is not None:
            witness = space.scenario(unresolved)
            what = "; ".join(_clash_text(c) for c in clashes)
            related = _principle_related(constitution, (a, b), deployment)
            if rule is not None:
                related.append(Related(span=rule.span, message="this conflict rule does not cover the witness"))
                out.append(
                    rules.CONFLICT_GAP(
                        f"conflict rule for `{a}` vs `{b}` leaves a clash unresolved: {what}",
                        rule.span,
                        related=related,
                        deployment=name,
                        principles=[a, b],
                        witness=witness,
                        help="add a branch covering the witness, an `otherwise:` branch, or a priority between them",
                    )
                )
            else:
                first = model.principles[a]
                out.append(
                    rules.CONTRADICTION(
                        f"`{a}` and `{b}` clash and nothing resolves it: {what}",
                        first.id.span,
                        related=related,
                        deployment=name,
                        principles=[a, b],
                        witness=witness,
                        help=f"add `priority {a} > {b}` (or the reverse), or a `conflict {a} vs {b} {{ ... }}` rule",
                    )
                )
        if rule is not None and rule.span.file == constitution.root:
            # an imported rule's branches may be unreachable under this file's assumptions: not a finding
            out.extend(_unreachable_branches(model, rule, region, name))

    for pid in sorted(took_part - won_somewhere, key=list(model.principles).index):
        p = model.principles[pid]
        out.append(
            rules.SHADOWED(
                f"principle `{pid}` loses every clash it takes part in, in deployment `{name}`",
                p.id.span,
                deployment=name,
                principles=[pid],
                help="its demands never take effect where they matter; narrow the other principles, "
                "reorder priorities, or remove it",
            )
        )
    # conflict rules whose pair never clashes in this deployment
    for pair, rule in model.rules.items():
        a, b = sorted(pair, key=list(model.principles).index)
        if (a, b) not in model.pairs and rule.span.file == constitution.root:
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


def _unreachable_branches(model: DeploymentModel, rule: ast.Conflict, region, name: str) -> list[Diagnostic]:
    out = []
    earlier: list[z3.BoolRef] = []
    for branch in rule.branches:
        c = model.space.encode(branch.condition)
        if model.sat(region, *(z3.Not(e) for e in earlier), c) is None:
            out.append(
                rules.UNREACHABLE_BRANCH(
                    "this branch can never decide: no reachable scenario where both principles are active "
                    "matches it (after the branches above)",
                    branch.span,
                    deployment=name,
                    principles=[rule.left.name, rule.right.name],
                    help="remove the branch or widen its condition",
                )
            )
        earlier.append(c)
    if rule.otherwise is not None and earlier:
        if model.sat(region, *(z3.Not(e) for e in earlier)) is None:
            out.append(
                rules.UNREACHABLE_BRANCH(
                    "`otherwise` can never decide: the branches above cover every scenario",
                    rule.span,
                    deployment=name,
                    principles=[rule.left.name, rule.right.name],
                    help="remove the `otherwise` branch",
                )
            )
    return out


def _priority_cycles(deployment: ResolvedDeployment) -> list[Diagnostic]:
    """One CAI202 per strongly connected component of the priority graph."""
    succ: dict[str, list[tuple[str, ast.Span]]] = {}
    for e in deployment.priorities:
        succ.setdefault(e.higher, []).append((e.lower, e.span))
    # Tarjan, iterative
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    sccs: list[list[str]] = []
    counter = 0
    for start in sorted(succ):
        if start in index:
            continue
        work = [(start, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            nexts = succ.get(node, [])
            if i < len(nexts):
                work.append((node, i + 1))
                child = nexts[i][0]
                if child not in index:
                    work.append((child, 0))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            if low[node] == index[node]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                if len(comp) > 1 or any(c == node for c, _ in succ.get(node, [])):
                    sccs.append(comp)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    out = []
    for comp in sccs:
        members = set(comp)
        path = _cycle_path(succ, members)
        spans = [span for a in path[:-1] for (b, span) in succ.get(a, []) if b in members]
        out.append(
            rules.PRIORITY_CYCLE(
                "priority cycle: " + " > ".join(path),
                spans[0] if spans else deployment.span,
                related=[Related(span=s, message="part of the cycle") for s in dict.fromkeys(spans[1:])],
                deployment=deployment.name,
                principles=sorted(members),
                help="priorities must form a strict partial order; remove one of these orderings",
            )
        )
    return out


def _cycle_path(succ, members: set[str]) -> list[str]:
    start = min(members)
    path = [start]
    seen = {start}
    node = start
    while True:
        nxt = sorted(b for b, _ in succ.get(node, []) if b in members)
        if not nxt:
            return path
        choice = start if start in nxt else next((n for n in nxt if n not in seen), nxt[0])
        path.append(choice)
        if choice in seen:
            return path
        seen.add(choice)
        node = choice


# ---------------------------------------------------------------- suppression and config


_IGNORE_RE = re.compile(r"#\s*cai:\s*ignore\[([A-Za-z0-9_,\s-]+)\]")


def _suppressions(constitution: Constitution) -> list[tuple[ast.Span, set[str]]]:
    """Regions where codes are suppressed by ``# cai: ignore[CODE, ...]`` comments."""
    regions: list[tuple[ast.Span, set[str]]] = []
    for path, file in constitution.files.items():
        for comment in file.comments:
            match = _IGNORE_RE.search(comment.text)
            if not match:
                continue
            codes = {c.strip() for c in match.group(1).split(",") if c.strip()}
            target_line = comment.span.line if comment.trailing else comment.span.line + 1
            region = ast.Span(file=path, line=target_line, column=1, end_line=target_line, end_column=10**6)
            for item in file.items:  # a comment before a declaration covers the whole declaration
                if item.span.line == target_line:
                    region = item.span
                    break
            regions.append((region, codes))
    return regions


def _suppressed(d: Diagnostic, regions, constitution: Constitution) -> bool:
    for region, codes in regions:
        if d.code not in codes and d.name not in codes:
            continue
        spans = [d.span] if d.span else []
        spans += [constitution.principles[p].span for p in d.principles if p in constitution.principles]
        for s in spans:
            if s.file == region.file and region.line <= s.line <= region.end_line:
                return True
    return False


@dataclass(frozen=True)
class LintConfig:
    """Rule selection: ``select``/``ignore`` code prefixes and severity overrides."""

    select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    severity: dict = field(default_factory=dict)

    def apply(self, diagnostics: list[Diagnostic]) -> list[Diagnostic]:
        out = []
        for d in diagnostics:
            keys = (d.code, d.name)
            if self.select and not any(k.startswith(s) for k in keys for s in self.select):
                continue
            if any(k.startswith(s) for k in keys for s in self.ignore):
                continue
            sev = self.severity.get(d.code) or self.severity.get(d.name)
            if sev in ("error", "warning", "info"):
                d = d.model_copy(update={"severity": sev})
            out.append(d)
        return out


def load_lint_config(start: str = ".") -> LintConfig:
    """``[tool.cai]`` of the nearest pyproject.toml at or above ``start``."""
    import tomllib
    from pathlib import Path

    here = Path(start).resolve()
    for folder in [here, *here.parents]:
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            try:
                data = tomllib.loads(candidate.read_text(encoding="utf-8"))
            except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError):
                return LintConfig()
            section = data.get("tool", {}).get("cai", {})
            return LintConfig(
                select=tuple(section.get("select", ())),
                ignore=tuple(section.get("ignore", ())),
                severity=dict(section.get("severity", {})),
            )
    return LintConfig()


# ---------------------------------------------------------------- entry point


def check(
    constitution: Constitution,
    deployments: Iterable[str] | None = None,
    *,
    semantic: bool = True,
    operational: bool = True,
) -> list[Diagnostic]:
    """All diagnostics of a resolved constitution: names (from resolution), semantics
    per deployment (SMT), operationalizability lints; suppressions applied, sorted."""
    diagnostics = list(constitution.diagnostics)
    names = list(deployments) if deployments is not None else list(constitution.deployments)
    if not any(d.is_error for d in constitution.diagnostics):
        space = ScenarioSpace(constitution)
        for name in names:
            deployment = constitution.deployments.get(name)
            if deployment is not None and semantic:
                diagnostics.extend(check_deployment(space, deployment))
        if operational:
            from cai_dsl.check.operational import lint_constitution

            diagnostics.extend(lint_constitution(constitution, deployments))
    regions = _suppressions(constitution)
    diagnostics = [d for d in diagnostics if not _suppressed(d, regions, constitution)]
    return sorted(_dedupe_across_deployments(diagnostics), key=Diagnostic.sort_key)


def _dedupe_across_deployments(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    """Principle-level findings repeated per deployment are shown once (first deployment)."""
    seen = set()
    out = []
    for d in diagnostics:
        key = (d.code, d.message.replace(f" in deployment `{d.deployment}`", ""), d.span)
        if d.code.startswith("CAI3") or d.code in ("CAI208",):
            key = (d.code, d.message, d.span)
            if key in seen:
                continue
        elif d.code in ("CAI201", "CAI203"):
            key = (d.code, d.message, d.span, d.deployment)
        seen.add(key)
        out.append(d)
    return out


def explain_policy(constitution: Constitution, deployment: ResolvedDeployment, scenario: dict[str, str]):
    """Resolved policy of a complete scenario (delegates to the plain evaluator)."""
    return resolved_policy(constitution, deployment, scenario)
