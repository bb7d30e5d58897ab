"""The compiler: a resolved, checked constitution + a deployment + a target -> a :class:`Program`.

``compile_program`` builds the IR of :mod:`cai_dsl.compile.ir` for one deployment; ``compile_file`` does
resolution and checking too and returns diagnostics instead of raising; ``compile_all`` compiles
every deployment of a file with one check.

A constitution with errors does not compile. Errors come from :func:`cai_dsl.check.checker.check` (names,
SMT semantics, lints; see :mod:`cai_dsl.compile.checks`); the compiler adds two checks of its own
(a priority cycle among the deployment's principles, a weight that is negative or not finite),
which it needs to build the program whatever the checker says.

Determinism: the program depends only on the sources (as text, with paths relative to the root
file's directory), the deployment, the target and the seed; everything order-dependent follows
either declaration order or the canonical priority order (rank, then weight, then id), never dict
or set iteration order; the canonical JSON is byte-identical across runs and checkouts.
"""

from __future__ import annotations

import json
import os
from typing import Any

from cai_dsl import __version__
from cai_dsl.compile.base import gc_paused
from cai_dsl.compile.behaviors import behaviors_section
from cai_dsl.core.hashing import canonical_json, sha256_text
from cai_dsl.compile.checks import check_constitution, compiler_checks, priority_ranks
from cai_dsl.compile.escaping import neutralize
from cai_dsl.compile.fewshot import FewShot, compare_entry, critique_entry, entry_spans
from cai_dsl.compile.expressions import allowed_values, cond_dict, expr_text, facets_in
from cai_dsl.compile.ir import (
    ChainOfThought,
    ComparisonProgram,
    CritiqueRevisionProgram,
    Program,
    RunParams,
    ScenarioClassifier,
    StopRule,
)
from cai_dsl.compile.sources import Locator, source_hash
from cai_dsl.compile.targets import Target, load_target
from cai_dsl.compile.templates import CLASSIFIER_TEMPLATE, COMPARISON_TEMPLATE, REVISION_TEMPLATE, critique_template
from cai_dsl.diagnostics import rules
from cai_dsl.diagnostics import Diagnostic, DiagnosticError
from cai_dsl.lang import ast
from cai_dsl.lang.resolver import Constitution, ResolvedDeployment, resolve
from cai_dsl.semantics.budget import Budget

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


# ---------------------------------------------------------------- compiling


def _normal(model, data: dict) -> dict:
    return json.loads(model.model_validate(data).model_dump_json())


def _text(t: ast.Text | None) -> str | None:
    return t.value if t is not None else None


def _facet_dict(f: ast.Facet) -> dict:
    if f.bounds is not None:
        return {"name": f.name.name, "ordered": False, "bounds": [f.bounds.low.value, f.bounds.high.value]}
    return {"name": f.name.name, "values": [v.name for v in f.values], "ordered": f.ordered}


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
        self.loc = Locator(constitution.root)
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
        rank, cyclic = priority_ranks(ids, edges)
        problems = compiler_checks(d, edges, cyclic)
        if any(p.is_error for p in problems):
            return {}, problems

        def weight(p: ast.Principle) -> float:
            return p.weight.value if p.weight is not None else 1.0

        order = sorted(ids, key=lambda i: (d.rank(i), rank[i], -weight(by_id[i]), i))
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
            entry["authority"] = p.authority.name if p.authority is not None else None
            entry["authority_rank"] = d.rank(pid)
            entry["final"] = p.final is not None
            out_principles.append(entry)
            base = f"/principles/{i}"
            for suffix, locs in suffixes:
                smap[base + suffix] = locs
            used_facets |= facets
        behaviors, behavior_map = behaviors_section(c, principles, self.loc)
        smap.update(behavior_map)

        # -- critique / revision
        stop = StopRule(enabled=settings.stop_when_satisfied)
        cr_pool = [pid for pid in order if by_id[pid].critique is not None and by_id[pid].revise is not None]
        skipped = sorted(pid for pid in ids if by_id[pid].critique is None or by_id[pid].revise is None)
        rounds_requested = settings.revisions
        rounds = min(rounds_requested, t.max_revisions) if t.max_revisions else rounds_requested
        system = neutralize(t.system_prompt, self.fmt) if t.system_prompt is not None else None
        few = FewShot(c.examples, self.fmt, self._map)
        preamble, refs = few.critique(cr_pool, by_id, settings.few_shot, stop)
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
            "critique_request": critique_template(stop).model_dump(mode="json"),
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
        cot = ChainOfThought(
            enabled=settings.chain_of_thought,
            clamp_min=settings.cot_clamp_min,
            clamp_max=settings.cot_clamp_max,
            max_new_tokens=t.generation.cot_max_new_tokens,
        )
        cmp_preamble, cmp_refs = few.compare(cmp_pool, by_id, settings.few_shot, cot)
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
        facets = [_facet_dict(f) for f in c.facets.values()]
        assumptions = []
        for k, a in enumerate(d.assumptions):
            assumptions.append({"when": expr_text(a), "condition": cond_dict(a)})
            self._map(f"/assumptions/{k}/when", a.span)
        conflicts = []
        for rule in d.conflicts:
            if rule.left.name not in idset or rule.right.name not in idset:
                continue
            k = len(conflicts)
            branches = []
            for b_i, b in enumerate(rule.branches):
                branches.append({"when": expr_text(b.condition), "condition": cond_dict(b.condition), "winner": b.winner.name})
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
                    used |= facets_in(b.condition)
        questions = []
        for name, facet in c.facets.items():
            if name not in used or facet.bounds is not None:  # a number facet comes from scenario tags only
                continue
            allowed = allowed_values(facet, d.assumptions)
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
            **self._shared_examples(),
            "behaviors": behaviors,
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

    def _shared_examples(self) -> dict:
        """The program's ``examples``/``compare_examples`` (omitted when there are none) and their source map."""
        out: dict[str, list[dict]] = {}
        for ex in self.c.examples:
            key = "examples" if isinstance(ex, ast.Example) else "compare_examples"
            entries = out.setdefault(key, [])
            for suffix, span in entry_spans(ex):
                self._map(f"/{key}/{len(entries)}{suffix}", span)
            entries.append(critique_entry(ex) if isinstance(ex, ast.Example) else compare_entry(ex))
        return out

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
            entries, key = (examples, "examples") if isinstance(ex, ast.Example) else (compare_examples, "compare_examples")
            for suffix, span in entry_spans(ex):
                if span is not None:
                    note(f"/{key}/{len(entries)}{suffix}", span)
            entries.append(critique_entry(ex) if isinstance(ex, ast.Example) else compare_entry(ex))
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
            "condition": cond_dict(p.when, facets) if p.when is not None else None,
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


def compile_program(
    constitution: Constitution,
    deployment_name: str,
    target: Target | str | None = None,
    *,
    seed: int | None = None,
    check: bool = True,
    diagnostics: list[Diagnostic] | None = None,
    budget: Budget | None = None,
    _cache: dict | None = None,
) -> Program:
    """Compile one deployment for ``target`` (a Target, a packaged name, a TOML path; default smollm2-cpu).

    ``seed`` overrides the deployment's ``set seed``. Raises :class:`CompileError` with every
    diagnostic if the constitution has errors (checked unless ``check=False``, or ``diagnostics``
    already holds the checker's findings; SMT within ``budget``, see :func:`check_constitution`) or the
    deployment does not exist; raises
    :class:`cai_dsl.compile.targets.TargetError` for a bad target.
    """
    target = load_target(target)
    if diagnostics is None:
        diagnostics = check_constitution(constitution, [deployment_name], budget) if check else list(constitution.diagnostics)
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
    budget: Budget | None = None,
) -> tuple[dict[str, Program], list[Diagnostic]]:
    """Every deployment of the root file, checked once (SMT within ``budget``); ({}, diagnostics) when there are errors.

    Principles shared by several deployments (no override) are translated once.
    """
    target = load_target(target)
    diagnostics = check_constitution(constitution, None, budget) if check else list(constitution.diagnostics)
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
    budget: Budget | None = None,
) -> tuple[Program | None, list[Diagnostic]]:
    """Resolve, check (SMT within ``budget``) and compile; the program is None when any diagnostic is an error.

    Returns every diagnostic (warnings too). A bad target raises :class:`TargetError`.
    """
    target = load_target(target_name)
    constitution = resolve(os.fspath(path))
    diagnostics = check_constitution(constitution, [deployment], budget) if check else list(constitution.diagnostics)
    if any(d.is_error for d in diagnostics):
        return None, diagnostics
    try:
        return compile_program(constitution, deployment, target, seed=seed, diagnostics=diagnostics), diagnostics
    except CompileError as exc:
        return None, diagnostics + [d for d in exc.diagnostics if d not in diagnostics]
