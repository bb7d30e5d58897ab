"""The compiler: a resolved, checked constitution + a deployment + a target -> a :class:`Program`.

``compile_program`` builds the IR of :mod:`cai_dsl.compile.ir` for one deployment; ``compile_file`` does
resolution and checking too and returns diagnostics instead of raising; ``compile_all`` compiles
every deployment of a file with one check.

A constitution with errors does not compile. Errors come from :func:`cai_dsl.check.checker.check` (names,
SMT semantics, lints) when that module exists, else from resolution alone; the compiler adds two
checks of its own (a priority cycle among the deployment's principles, a weight that is negative or
not finite), which it needs to build the program whatever the checker says.

Determinism: the program depends only on the sources (as text, with paths relative to the root
file's directory), the deployment, the target and the seed; everything order-dependent follows
either declaration order or the canonical priority order (rank, then weight, then id), never dict
or set iteration order; the canonical JSON is byte-identical across runs and checkouts.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from typing import Any, Iterable, Mapping

from cai_dsl import __version__

from cai_dsl.lang import ast

from cai_dsl.diagnostics import rules
from cai_dsl.diagnostics.base import Diagnostic, DiagnosticError, Related
from cai_dsl.compile.ir import (
    ChainOfThought,
    ComparisonProgram,
    Cond,
    CritiqueRevisionProgram,
    FacetIR,
    Program,
    RunParams,
    ScenarioClassifier,
    StopRule,
    canonical_json,
    eval_cond,
    gc_paused,
    neutralize,
    sha256_text,
    template,
)
from cai_dsl.lang.resolver import Constitution, ResolvedDeployment, resolve
from cai_dsl.compile.targets import Target, load_target

__all__ = [
    "CompileError",
    "check_constitution",
    "compile_all",
    "compile_file",
    "compile_program",
    "expr_text",
    "source_hash",
]


class CompileError(DiagnosticError):
    """The constitution (or deployment) has errors; ``.diagnostics`` lists them all."""


# ---------------------------------------------------------------- the built-in templates

CRITIQUE_REQUEST_PREFIX = "CritiqueRequest: "
REVISION_REQUEST_PREFIX = "RevisionRequest: "
COMPARISON_INTRO = "Consider the following conversation between a human and an assistant:\n\n"
CLASSIFIER_INTRO = "Read the request below and answer one question about it.\n\nRequest:\n"


def _critique_template(stop: StopRule):
    if stop.enabled:
        return template(CRITIQUE_REQUEST_PREFIX, ("critique",), "\n" + stop.instruction)
    return template(CRITIQUE_REQUEST_PREFIX, ("critique",))


REVISION_TEMPLATE = template(REVISION_REQUEST_PREFIX, ("revise",))
COMPARISON_TEMPLATE = template(
    COMPARISON_INTRO,
    ("conversation",),
    "\n\n",
    ("principle",),
    "\nOptions:\n(A) ",
    ("response_a",),
    "\n(B) ",
    ("response_b",),
)
CLASSIFIER_TEMPLATE = template(CLASSIFIER_INTRO, ("prompt",), "\n\nQuestion: ", ("question",))


# ---------------------------------------------------------------- conditions


def _prec(expr) -> int:
    if isinstance(expr, ast.Or):
        return 1
    if isinstance(expr, ast.And):
        return 2
    if isinstance(expr, ast.Not):
        return 3
    return 4


def expr_text(expr) -> str:
    """A condition in `.const` syntax with the fewest parentheses that keep the tree."""
    if isinstance(expr, ast.BoolLiteral):
        return "true" if expr.value else "false"
    if isinstance(expr, ast.Comparison):
        return f"{expr.facet.name} {expr.op} {expr.value.name}"
    if isinstance(expr, ast.Membership):
        values = ", ".join(v.name for v in expr.values)
        return f"{expr.facet.name} {'not in' if expr.negated else 'in'} {{{values}}}"
    if isinstance(expr, ast.Not):
        inner = expr_text(expr.operand)
        return "not " + (f"({inner})" if _prec(expr.operand) < 3 else inner)
    word = " or " if isinstance(expr, ast.Or) else " and "
    own = _prec(expr)
    return word.join(f"({expr_text(o)})" if _prec(o) <= own else expr_text(o) for o in expr.operands)


def to_cond(expr) -> Cond:
    if isinstance(expr, ast.BoolLiteral):
        return Cond(op="true" if expr.value else "false")
    if isinstance(expr, ast.Comparison):
        return Cond(op=expr.op, facet=expr.facet.name, value=expr.value.name)
    if isinstance(expr, ast.Membership):
        return Cond(op="not in" if expr.negated else "in", facet=expr.facet.name, values=tuple(v.name for v in expr.values))
    if isinstance(expr, ast.Not):
        return Cond(op="not", args=(to_cond(expr.operand),))
    return Cond(op="or" if isinstance(expr, ast.Or) else "and", args=tuple(to_cond(o) for o in expr.operands))


def _cond_dict(expr, facets: set[str] | None = None) -> dict:
    """Like :func:`to_cond` but as the plain dict the program is validated from (faster);
    the facets it mentions are added to ``facets``."""
    if isinstance(expr, ast.Comparison):
        if facets is not None:
            facets.add(expr.facet.name)
        return {"op": expr.op, "facet": expr.facet.name, "value": expr.value.name}
    if isinstance(expr, ast.Membership):
        if facets is not None:
            facets.add(expr.facet.name)
        return {"op": "not in" if expr.negated else "in", "facet": expr.facet.name, "values": [v.name for v in expr.values]}
    if isinstance(expr, ast.BoolLiteral):
        return {"op": "true" if expr.value else "false"}
    if isinstance(expr, ast.Not):
        return {"op": "not", "args": [_cond_dict(expr.operand, facets)]}
    return {"op": "or" if isinstance(expr, ast.Or) else "and", "args": [_cond_dict(o, facets) for o in expr.operands]}


def _facets_in(expr) -> set[str]:
    if expr is None:
        return set()
    return {n.facet.name for n in ast.iter_expr(expr) if isinstance(n, (ast.Comparison, ast.Membership))}


def _allowed_values(facet: ast.Facet, assumptions: Iterable) -> tuple[str, ...]:
    """The facet's values left by the top-level conjuncts of the assumptions that mention only it."""
    name = facet.name.name
    order = [v.name for v in facet.values]
    info = {name: FacetIR(name=name, values=tuple(order), ordered=facet.ordered)}
    allowed = set(order)
    stack = list(assumptions)
    while stack:
        e = stack.pop()
        if isinstance(e, ast.And):
            stack.extend(e.operands)
            continue
        if _facets_in(e) != {name}:
            continue
        cond = to_cond(e)
        allowed &= {v for v in order if eval_cond(cond, {name: v}, info) is True}
    return tuple(v for v in order if v in allowed)


# ---------------------------------------------------------------- sources and spans


class _Locator:
    """Spans -> source locations relative to the root file's directory (cached per file string)."""

    def __init__(self, root: str):
        self.base = os.path.dirname(os.path.abspath(root))
        self.cache: dict[str, str] = {}

    def rel(self, file: str) -> str:
        r = self.cache.get(file)
        if r is None:
            if file.startswith("<"):
                r = file
            else:
                r = os.path.relpath(os.path.abspath(file), self.base).replace(os.sep, "/")
            self.cache[file] = r
        return r

    def loc(self, span: ast.Span | None) -> str | None:
        if span is None or span.line <= 0:
            return None
        return f"{self.rel(span.file)}:{span.line}:{span.column}-{span.end_line}:{span.end_column}"


def source_hash(constitution: Constitution) -> tuple[str, list[tuple[str, str]]]:
    """sha256 over the sorted (relative path, text) of all loaded files, and each file's own sha256.

    Each path and text is length-prefixed, so no two different file sets hash alike; paths are
    relative to the root file's directory, so the hash does not depend on the checkout location.
    """
    locator = _Locator(constitution.root)
    pairs = sorted((locator.rel(path), text) for path, text in constitution.sources.items())
    h = hashlib.sha256()
    for rel, text in pairs:
        for part in (rel.encode("utf-8"), text.encode("utf-8")):
            h.update(len(part).to_bytes(8, "big"))
            h.update(part)
    return h.hexdigest(), [(rel, sha256_text(text)) for rel, text in pairs]


# ---------------------------------------------------------------- checking


def check_constitution(constitution: Constitution, deployments: Iterable[str] | None = None) -> list[Diagnostic]:
    """All diagnostics: :func:`cai_dsl.check.checker.check` when present, else resolution's diagnostics."""
    try:
        from cai_dsl.check import checker
    except ModuleNotFoundError as exc:
        if exc.name != "cai_dsl.check.checker":
            raise
        return list(constitution.diagnostics)
    check = getattr(checker, "check", None)
    if check is None:
        return list(constitution.diagnostics)
    found = list(check(constitution, deployments=list(deployments) if deployments is not None else None))
    seen = {(d.code, d.message, d.span) for d in found}
    # the checker includes resolution's diagnostics; keep any it might not have
    for d in constitution.diagnostics:
        if (d.code, d.message, d.span) not in seen and d.is_error:
            found.append(d)
    return found


def _ranks(ids: list[str], edges: list[tuple[str, str]]) -> tuple[dict[str, int], list[str]]:
    """Longest-path depth of each principle in the priority DAG; and the principles on a cycle."""
    succ: dict[str, list[str]] = {i: [] for i in ids}
    indeg = dict.fromkeys(ids, 0)
    for h, low in edges:
        succ[h].append(low)
        indeg[low] += 1
    rank = dict.fromkeys(ids, 0)
    queue = [i for i in ids if indeg[i] == 0]
    seen = 0
    while queue:
        node = queue.pop()
        seen += 1
        for nxt in succ[node]:
            if rank[node] + 1 > rank[nxt]:
                rank[nxt] = rank[node] + 1
            indeg[nxt] -= 1
            if indeg[nxt] == 0:
                queue.append(nxt)
    cyclic = [i for i in ids if indeg[i] > 0] if seen < len(ids) else []
    return rank, cyclic


def _compiler_checks(deployment: ResolvedDeployment, edges: list[tuple[str, str]], cyclic: list[str]) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for p in deployment.principles:
        if p.weight is not None and (not math.isfinite(p.weight.value) or p.weight.value < 0):
            out.append(
                rules.INVALID_LITERAL(
                    f"weight of `{p.id.name}` must be a finite number >= 0, not {p.weight.literal}",
                    p.weight.span,
                    deployment=deployment.name,
                )
            )
    if cyclic:
        spans = {e.span for e in deployment.priorities if e.higher in cyclic and e.lower in cyclic}
        ordered = sorted(spans, key=lambda s: (s.file, s.line, s.column))
        out.append(
            rules.PRIORITY_CYCLE(
                "the priority order has a cycle among: " + ", ".join(sorted(cyclic)[:8]) + (" ..." if len(cyclic) > 8 else ""),
                ordered[0] if ordered else deployment.span,
                related=[Related(span=s, message="priority stated here") for s in ordered[1:4]],
                deployment=deployment.name,
                principles=sorted(cyclic)[:8],
            )
        )
    return out


# ---------------------------------------------------------------- compiling


def _normal(model, data: dict) -> dict:
    return json.loads(model.model_validate(data).model_dump_json())


def _text(t: ast.Text | None) -> str | None:
    return t.value if t is not None else None


def _settings_value(deployment: ResolvedDeployment, key: str, target_value: Any) -> Any:
    """An explicit `set` wins over the target's value; else the target's."""
    if key in deployment.setting_spans:
        return getattr(deployment.settings, key)
    return target_value


class _Builder:
    def __init__(
        self,
        constitution: Constitution,
        deployment: ResolvedDeployment,
        target: Target,
        seed: int,
        cache: dict | None = None,
    ):
        self.cache: dict = cache if cache is not None else {}
        self.c = constitution
        self.d = deployment
        self.t = target
        self.seed = seed
        self.loc = _Locator(constitution.root)
        self.smap: dict[str, list[str]] = {}
        self.fmt = target.chat_format

    def _map(self, pointer: str, *spans: ast.Span | None) -> None:
        locs = [loc for loc in (self.loc.loc(s) for s in spans) if loc is not None]
        self.smap[pointer] = locs

    def build(self) -> tuple[dict, list[Diagnostic]]:
        c, d, t = self.c, self.d, self.t
        settings = d.settings
        principles = list(d.principles)
        ids = [p.id.name for p in principles]
        idset = set(ids)
        by_id = {p.id.name: p for p in principles}

        # -- priority
        edges = sorted({(e.higher, e.lower) for e in d.priorities if e.higher in idset and e.lower in idset and e.higher != e.lower})
        rank, cyclic = _ranks(ids, edges)
        problems = _compiler_checks(d, edges, cyclic)
        if any(p.is_error for p in problems):
            return {}, problems

        def weight(p: ast.Principle) -> float:
            return p.weight.value if p.weight is not None else 1.0

        order = sorted(ids, key=lambda i: (rank[i], -weight(by_id[i]), i))
        position = {pid: n for n, pid in enumerate(order)}

        # -- principles
        out_principles = []
        used_facets: set[str] = set()
        smap = self.smap
        for i, p in enumerate(principles):
            pid = p.id.name
            entry, suffixes, facets = self._principle(p)
            entry = dict(entry)
            entry["rank"] = rank[pid]
            entry["priority_index"] = position[pid]
            out_principles.append(entry)
            base = f"/principles/{i}"
            for suffix, locs in suffixes:
                smap[base + suffix] = locs
            used_facets |= facets

        # -- critique / revision
        stop = StopRule(enabled=settings.stop_when_satisfied)
        cr_pool = [pid for pid in order if by_id[pid].critique is not None and by_id[pid].revise is not None]
        skipped = sorted(pid for pid in ids if by_id[pid].critique is None or by_id[pid].revise is None)
        rounds_requested = settings.revisions
        rounds = min(rounds_requested, t.max_revisions) if t.max_revisions else rounds_requested
        system = neutralize(t.system_prompt, self.fmt) if t.system_prompt is not None else None
        preamble, refs = self._critique_preamble(cr_pool, by_id, principles, settings.few_shot, stop)
        critique_revision = {
            "pool": cr_pool,
            "skipped": skipped,
            "rounds": rounds,
            "rounds_requested": rounds_requested,
            "selection": settings.selection,
            "seed": self.seed,
            "system": system,
            "preamble": preamble,
            "few_shot": refs,
            "critique_request": _critique_template(stop).model_dump(mode="json"),
            "revision_request": REVISION_TEMPLATE.model_dump(mode="json"),
            "stop": stop.model_dump(mode="json"),
        }
        for key in ("critique_request", "revision_request"):
            self._map(f"/critique_revision/{key}")
        self._map("/critique_revision/rounds", d.setting_spans.get("revisions"))
        self._map("/critique_revision/selection", d.setting_spans.get("selection"))
        self._map("/critique_revision/stop", d.setting_spans.get("stop_when_satisfied"))

        # -- comparison
        cmp_pool = [pid for pid in order if by_id[pid].compare is not None]
        ppc = settings.principles_per_comparison
        if t.max_principles_per_comparison:
            ppc = min(ppc, t.max_principles_per_comparison)
        cmp_preamble, cmp_refs = self._compare_preamble(cmp_pool, by_id, principles, settings.few_shot)
        cot = ChainOfThought(
            enabled=settings.chain_of_thought,
            clamp_min=settings.cot_clamp_min,
            clamp_max=settings.cot_clamp_max,
            max_new_tokens=t.generation.cot_max_new_tokens,
        )
        comparison = {
            "pool": cmp_pool,
            "template": COMPARISON_TEMPLATE.model_dump(mode="json"),
            "system": system,
            "preamble": cmp_preamble,
            "few_shot": cmp_refs,
            "soft_labels": settings.soft_labels,
            "principles_per_comparison": max(1, min(ppc, len(cmp_pool))) if cmp_pool else ppc,
            "principle_sampling": "weighted" if settings.selection == "applicable" else "uniform",
            "applicable_only": settings.selection == "applicable",
            "position_debias": settings.position_debias,
            "chain_of_thought": cot.model_dump(mode="json"),
            "vote": settings.vote,
        }
        self._map("/comparison/template")
        for key in ("principles_per_comparison", "soft_labels", "position_debias", "vote"):
            self._map(f"/comparison/{key}", d.setting_spans.get(key))
        self._map(
            "/comparison/chain_of_thought",
            *(d.setting_spans.get(k) for k in ("chain_of_thought", "cot_clamp_min", "cot_clamp_max")),
        )

        # -- facets, assumptions, conflicts
        facets = [{"name": f.name.name, "values": [v.name for v in f.values], "ordered": f.ordered} for f in c.facets.values()]
        assumptions = []
        for k, a in enumerate(d.assumptions):
            assumptions.append({"when": expr_text(a), "condition": _cond_dict(a)})
            self._map(f"/assumptions/{k}/when", a.span)
        conflicts = []
        for rule in d.conflicts:
            if rule.left.name not in idset or rule.right.name not in idset:
                continue
            k = len(conflicts)
            branches = []
            for b_i, b in enumerate(rule.branches):
                branches.append({"when": expr_text(b.condition), "condition": _cond_dict(b.condition), "winner": b.winner.name})
                self._map(f"/conflicts/{k}/branches/{b_i}/when", b.condition.span)
            conflicts.append(
                {
                    "left": rule.left.name,
                    "right": rule.right.name,
                    "branches": branches,
                    "otherwise": rule.otherwise.name if rule.otherwise is not None else None,
                }
            )

        # -- scenario classifier
        used = set(used_facets)
        for rule in d.conflicts:
            if rule.left.name in idset and rule.right.name in idset:
                for b in rule.branches:
                    used |= _facets_in(b.condition)
        questions = []
        for name, facet in c.facets.items():
            if name not in used:
                continue
            allowed = _allowed_values(facet, d.assumptions)
            values = ", ".join(allowed)
            if facet.ordered:
                question = f"What is the {name} of this request? Choose one of (from lowest to highest): {values}."
            else:
                question = f"What is the {name} of this request? Choose one of: {values}."
            k = len(questions)
            questions.append(
                {
                    "facet": name,
                    "values": list(allowed),
                    "ordered": facet.ordered,
                    "fixed": allowed[0] if len(allowed) == 1 else None,
                    "question": question,
                }
            )
            self._map(f"/scenario_classifier/questions/{k}/question", facet.span)
        classifier = {
            "enabled": settings.classify_scenarios and any(q["fixed"] is None for q in questions),
            "template": CLASSIFIER_TEMPLATE.model_dump(mode="json"),
            "questions": questions,
        }
        self._map("/scenario_classifier/template")
        self._map("/scenario_classifier/enabled", d.setting_spans.get("classify_scenarios"))

        # -- run parameters
        gen = t.generation
        run = {
            "target": t.name,
            "backend": t.backend,
            "backend_options": t.backend_options.model_dump(mode="json"),
            "chat_format": t.chat_format,
            "device": t.device,
            "dtype": t.dtype,
            "seed": self.seed,
            "models": {
                "policy": t.models.policy,
                "critic": t.models.critic_model,
                "feedback": [m.model_dump(mode="json") for m in t.models.feedback_models],
                "classifier": t.models.classifier_model,
            },
            "generation": {
                "max_new_tokens": _settings_value(d, "max_new_tokens", gen.max_new_tokens),
                "temperature": _settings_value(d, "temperature", gen.temperature),
                "top_p": gen.top_p,
                "cot_max_new_tokens": gen.cot_max_new_tokens,
            },
            "settings": settings.model_dump(mode="json"),
            "sft": t.sft.model_dump(mode="json"),
            "reward_model": t.reward_model.model_dump(mode="json"),
            "ppo": t.ppo.model_dump(mode="json"),
            "dpo": t.dpo.model_dump(mode="json"),
        }
        for key, span in sorted(d.setting_spans.items()):
            self._map(f"/run/settings/{key}", span)
        for key in ("max_new_tokens", "temperature"):
            self._map(f"/run/generation/{key}", d.setting_spans.get(key))

        # -- provenance
        header = c.root_file.header if c.root in c.files else None
        sources = [item for item in c.root_file.items if isinstance(item, ast.Source)] if c.root in c.files else []
        digest, files = source_hash(c)
        provenance = {
            "constitution": header.name.value if header else None,
            "version": header.version.value if header and header.version else None,
            "source": sources[0].text.value if sources else None,
            "deployment": d.name,
            "target": t.name,
            "seed": self.seed,
            "compiler_version": __version__,
            "root_file": os.path.basename(c.root),
            "files": [list(f) for f in files],
            "source_hash": digest,
            "program_hash": "",
        }
        program = {
            "ir_version": "1",
            "provenance": provenance,
            "facets": facets,
            "assumptions": assumptions,
            "principles": out_principles,
            "priority": {"order": order, "edges": [list(e) for e in edges]},
            "conflicts": conflicts,
            # the small sections go through their models, so that defaults are filled in exactly
            # as the validated program will dump them (the program hash is taken over this data)
            "critique_revision": _normal(CritiqueRevisionProgram, critique_revision),
            "comparison": _normal(ComparisonProgram, comparison),
            "scenario_classifier": _normal(ScenarioClassifier, classifier),
            "run": _normal(RunParams, run),
            "source_map": self.smap,
        }
        return program, problems

    def _principle(self, p: ast.Principle) -> tuple[dict, list[tuple[str, list[str]]], set[str]]:
        """The deployment-independent part of a principle's entry, its source-map entries
        (pointer suffixes under /principles/<i>) and the facets its condition mentions; cached
        per AST node, which deployments without an override of it share."""
        key = id(p)
        hit = self.cache.get(key)
        if hit is not None and hit[0] is p:
            return hit[1]
        loc = self.loc.loc
        suffixes: list[tuple[str, list[str]]] = []

        def note(suffix: str, span: ast.Span | None) -> None:
            where = loc(span)
            suffixes.append((suffix, [where] if where is not None else []))

        examples, compare_examples = [], []
        for ex in p.examples:
            if isinstance(ex, ast.Example):
                j = len(examples)
                examples.append(
                    {
                        "prompt": _text(ex.prompt),
                        "response": _text(ex.response),
                        "critique": _text(ex.critique),
                        "revision": _text(ex.revision),
                    }
                )
                for field in ("prompt", "response", "critique", "revision"):
                    value = getattr(ex, field)
                    if value is not None:
                        note(f"/examples/{j}/{field}", value.span)
            else:
                j = len(compare_examples)
                better = ex.better.name.lower() if ex.better is not None else None
                compare_examples.append(
                    {
                        "prompt": _text(ex.prompt),
                        "a": _text(ex.a),
                        "b": _text(ex.b),
                        "better": better if better in ("a", "b") else None,
                    }
                )
                for field in ("prompt", "a", "b"):
                    value = getattr(ex, field)
                    if value is not None:
                        note(f"/compare_examples/{j}/{field}", value.span)
        facets: set[str] = set()
        requires, forbids, prefers = [], [], []
        for effect in p.effects:
            names = [b.name for b in effect.behaviors]
            (requires if effect.effect == "require" else forbids if effect.effect == "forbid" else prefers).extend(names)
        entry = {
            "id": p.id.name,
            "critique": _text(p.critique),
            "revise": _text(p.revise),
            "compare": _text(p.compare),
            "when": expr_text(p.when) if p.when is not None else None,
            "condition": _cond_dict(p.when, facets) if p.when is not None else None,
            "requires": requires,
            "forbids": forbids,
            "prefers": prefers,
            "weight": p.weight.value if p.weight is not None else 1.0,
            "tags": [t.name for t in p.tags.names] if p.tags else [],
            "examples": examples,
            "compare_examples": compare_examples,
            "span": loc(p.span) or loc(p.id.span),
        }
        note("/id", p.id.span)
        for field in ("critique", "revise", "compare"):
            value = getattr(p, field)
            if value is not None:
                note(f"/{field}", value.span)
        if p.when is not None:
            note("/when", p.when.span)
        result = (entry, suffixes, facets)
        self.cache[key] = (p, result)
        return result

    # -- few-shot preambles

    def _round_robin(self, pool: list[str], by_id: Mapping[str, ast.Principle], kind: type, limit: int, usable):
        """(principle id, example index among its examples of ``kind``) pairs: the first usable
        example of each pool principle in pool order, then the second ones, ... up to ``limit``."""
        picked: list[tuple[str, int, Any]] = []
        if limit <= 0:
            return picked
        per: list[tuple[str, list[tuple[int, Any]]]] = []
        for pid in pool:
            mine = [ex for ex in by_id[pid].examples if isinstance(ex, kind)]
            good = [(j, ex) for j, ex in enumerate(mine) if usable(ex)]
            if good:
                per.append((pid, good))
            if len(per) >= limit:
                break
        depth = 0
        while len(picked) < limit and any(len(g) > depth for _, g in per):
            for pid, good in per:
                if len(good) > depth:
                    picked.append((pid, good[depth][0], good[depth][1]))
                    if len(picked) >= limit:
                        break
            depth += 1
        return picked

    def _critique_preamble(self, pool, by_id, principles, limit, stop: StopRule):
        n = lambda s: neutralize(s, self.fmt)  # noqa: E731
        crit_t = _critique_template(stop)
        usable = lambda ex: None not in (ex.prompt, ex.response, ex.critique, ex.revision)  # noqa: E731
        messages: list[dict] = []
        refs: list[dict] = []
        for pid, j, ex in self._round_robin(pool, by_id, ast.Example, limit, usable):
            p = by_id[pid]
            turns = [
                ("user", n(ex.prompt.value), [ex.prompt.span]),
                ("assistant", n(ex.response.value), [ex.response.span]),
                ("user", crit_t.render({"critique": n(p.critique.value)}), [p.critique.span]),
                ("assistant", n(ex.critique.value), [ex.critique.span]),
                ("user", REVISION_TEMPLATE.render({"revise": n(p.revise.value)}), [p.revise.span]),
                ("assistant", n(ex.revision.value), [ex.revision.span]),
            ]
            for role, content, spans in turns:
                self._map(f"/critique_revision/preamble/{len(messages)}/content", *spans)
                messages.append({"role": role, "content": content})
            refs.append({"principle": pid, "example": j})
        return messages, refs

    def _compare_preamble(self, pool, by_id, principles, limit):
        n = lambda s: neutralize(s, self.fmt)  # noqa: E731
        usable = lambda ex: (  # noqa: E731
            None not in (ex.prompt, ex.a, ex.b, ex.better) and ex.better.name.lower() in ("a", "b")
        )
        messages: list[dict] = []
        refs: list[dict] = []
        for pid, j, ex in self._round_robin(pool, by_id, ast.CompareExample, limit, usable):
            p = by_id[pid]
            content = COMPARISON_TEMPLATE.render(
                {
                    "conversation": "Human: " + n(ex.prompt.value),
                    "principle": n(p.compare.value),
                    "response_a": n(ex.a.value),
                    "response_b": n(ex.b.value),
                }
            )
            self._map(f"/comparison/preamble/{len(messages)}/content", ex.prompt.span, p.compare.span, ex.a.span, ex.b.span)
            messages.append({"role": "user", "content": content})
            answer = "The answer is: (" + ex.better.name.upper() + ")"
            self._map(f"/comparison/preamble/{len(messages)}/content", ex.better.span)
            messages.append({"role": "assistant", "content": answer})
            refs.append({"principle": pid, "example": j})
        return messages, refs


def compile_program(
    constitution: Constitution,
    deployment_name: str,
    target: Target | str | None = None,
    *,
    seed: int | None = None,
    check: bool = True,
    diagnostics: list[Diagnostic] | None = None,
    _cache: dict | None = None,
) -> Program:
    """Compile one deployment for ``target`` (a Target, a packaged name, a TOML path; default smollm2-cpu).

    ``seed`` overrides the deployment's ``set seed``. Raises :class:`CompileError` with every
    diagnostic if the constitution has errors (checked unless ``check=False``, or ``diagnostics``
    already holds the checker's findings) or the deployment does not exist; raises
    :class:`cai_dsl.compile.targets.TargetError` for a bad target.
    """
    target = load_target(target)
    if diagnostics is None:
        diagnostics = check_constitution(constitution, [deployment_name]) if check else list(constitution.diagnostics)
    errors = [d for d in diagnostics if d.is_error]
    if errors:
        raise CompileError(errors)
    deployment = constitution.deployments.get(deployment_name)
    if deployment is None:
        known = ", ".join(constitution.deployments) or "none"
        raise CompileError(
            [
                rules.UNDEFINED_DEPLOYMENT(
                    f"no deployment `{deployment_name}` in {os.path.basename(constitution.root)} (deployments: {known})",
                    None,
                )
            ]
        )
    effective_seed = seed if seed is not None else deployment.settings.seed
    with gc_paused():
        data, problems = _Builder(constitution, deployment, target, effective_seed, _cache).build()
        if any(p.is_error for p in problems):
            raise CompileError([p for p in problems if p.is_error])
        # the hash is taken over the canonical JSON of the data the program is validated from;
        # tests check that it equals the hash of the validated program's own dump
        data["provenance"].pop("program_hash", None)
        data["provenance"]["program_hash"] = sha256_text(canonical_json(data))
        return Program.model_validate(data)


def compile_all(
    constitution: Constitution,
    target: Target | str | None = None,
    *,
    seed: int | None = None,
    check: bool = True,
) -> tuple[dict[str, Program], list[Diagnostic]]:
    """Every deployment of the root file, checked once; ({}, diagnostics) when there are errors.

    Principles shared by several deployments (no override) are translated once.
    """
    target = load_target(target)
    diagnostics = check_constitution(constitution) if check else list(constitution.diagnostics)
    if any(d.is_error for d in diagnostics):
        return {}, diagnostics
    programs: dict[str, Program] = {}
    cache: dict = {}
    for name in constitution.deployments:
        try:
            programs[name] = compile_program(constitution, name, target, seed=seed, diagnostics=diagnostics, _cache=cache)
        except CompileError as exc:
            return {}, diagnostics + exc.diagnostics
    return programs, diagnostics


def compile_file(
    path: str | os.PathLike[str],
    deployment: str,
    target_name: Target | str | None = None,
    *,
    seed: int | None = None,
    check: bool = True,
) -> tuple[Program | None, list[Diagnostic]]:
    """Resolve, check and compile; the program is None when any diagnostic is an error.

    Returns every diagnostic (warnings too). A bad target raises :class:`TargetError`.
    """
    target = load_target(target_name)
    constitution = resolve(os.fspath(path))
    diagnostics = check_constitution(constitution, [deployment]) if check else list(constitution.diagnostics)
    if any(d.is_error for d in diagnostics):
        return None, diagnostics
    try:
        return compile_program(constitution, deployment, target, seed=seed, diagnostics=diagnostics), diagnostics
    except CompileError as exc:
        return None, diagnostics + [d for d in exc.diagnostics if d not in diagnostics]
