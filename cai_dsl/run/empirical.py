"""``cai lint --empirical``: can the feedback model apply each compare principle consistently? (rule CAI309)

For every deployment (or the one named), the constitution is compiled for the target and each principle with
``compare`` text is run on its own labelled ``example compare`` blocks: each example is judged under that
principle alone, in both orders (the labelled-better response as (A), then as (B)), by the target's feedback
model(s). A principle is flagged (CAI309, a warning) when

* its **accuracy** (share of examples where the debiased label prefers the labelled-better response; a tie
  counts 1/2) is at most :data:`MIN_ACCURACY` (chance), or
* its **flip rate** (share of examples whose choice changes when A and B are swapped, i.e. the model picked the
  same position both times) is above :data:`MAX_FLIP_RATE`.

Principles without complete ``example compare`` blocks cannot be measured: they are listed in one ``info``
diagnostic per deployment (add examples to measure them; see CAI306). ``# cai: ignore[CAI309]`` comments and
``[tool.cai]`` configuration apply as for every other rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cai_dsl.diagnostics import rules
from cai_dsl.diagnostics import Diagnostic

__all__ = ["MAX_FLIP_RATE", "MIN_ACCURACY", "PrincipleMeasurement", "empirical_lints", "measure_principles"]

MIN_ACCURACY = 0.5
"""A principle whose examples are judged correctly at most this often is no better than chance."""

MAX_FLIP_RATE = 0.5
"""A principle whose choice flips with the option order more often than this is mostly position bias."""


@dataclass(frozen=True)
class PrincipleMeasurement:
    """How one compare principle fared on its own examples."""

    principle: str
    examples: int
    accuracy: float
    flip_rate: float
    items: tuple[dict[str, float], ...] = ()

    @property
    def consistent(self) -> bool:
        """Above chance and not dominated by position (see :data:`MIN_ACCURACY`, :data:`MAX_FLIP_RATE`)."""
        return self.accuracy > MIN_ACCURACY and self.flip_rate <= MAX_FLIP_RATE


def measure_principles(
    program: Any, models: Sequence[Any], cache: dict | None = None
) -> tuple[list[PrincipleMeasurement], list[str]]:
    """Measure every pool principle that has complete ``example compare`` blocks; also return those without.

    ``cache`` (a dict the caller keeps) reuses measurements of a principle whose prompts are identical in
    another deployment (same text, examples, preamble and chain-of-thought settings)."""
    import json

    from cai_dsl.run.evaluation import debias_copy, weighted_mean
    from cai_dsl.run.feedback import FeedbackScorer, PairQuery

    scorer = FeedbackScorer(debias_copy(program), models)
    weights = [m.weight for m in models]
    cmp = program.comparison
    context = json.dumps([cmp.system, [m.content for m in cmp.preamble], cmp.chain_of_thought.model_dump(),
                          cmp.answer_prefix, [m.name for m in models], weights], sort_keys=True)
    measured, skipped = [], []
    for pid in cmp.pool:
        principle = program.principle(pid)
        examples = [e for e in principle.compare_examples if e.complete]
        if not examples:
            skipped.append(pid)
            continue
        key = (pid, principle.compare, json.dumps([e.model_dump() for e in examples], sort_keys=True), context)
        if cache is not None and key in cache:
            measured.append(cache[key])
            continue
        queries = []
        for i, e in enumerate(examples):
            better, worse = (e.a, e.b) if e.better == "a" else (e.b, e.a)
            queries.append(PairQuery(key=f"{pid}#{i}", conversation=e.prompt, first=better, second=worse, principles=(pid,)))
        items = []
        for j in scorer.judge(queries):
            d = j.details[pid]
            p_ab, p_ba = weighted_mean(d["p_ab"], weights), weighted_mean(d["p_ba"], weights)
            items.append({"p": (p_ab + 1.0 - p_ba) / 2.0, "p_ab": p_ab, "p_ba": p_ba})
        accuracy = sum(1.0 if it["p"] > 0.5 else 0.0 if it["p"] < 0.5 else 0.5 for it in items) / len(items)
        flips = sum((it["p_ab"] > 0.5) != (it["p_ba"] < 0.5) for it in items) / len(items)
        result = PrincipleMeasurement(pid, len(items), accuracy, flips, tuple(items))
        if cache is not None:
            cache[key] = result
        measured.append(result)
    return measured, skipped


def empirical_lints(constitution: Any, deployment: str | None = None, target: str | None = None) -> list[Diagnostic]:
    """CAI309 diagnostics for ``constitution`` (a resolved Constitution): every deployment, or ``deployment``,
    compiled for ``target`` (default: the default target) and measured with its feedback model(s).

    A constitution with errors, or a model that cannot be loaded, gives one CAI309 diagnostic explaining why
    nothing was measured (never an exception)."""
    from cai_dsl.check.suppressions import apply_suppressions
    from cai_dsl.compile.compiler import CompileError, compile_program
    from cai_dsl.run.feedback import ModelPool, RLAIFError, feedback_models_for
    from cai_dsl.compile.targets import TargetError, load_target

    if any(d.is_error for d in constitution.diagnostics):
        return []  # the ordinary lint output already reports the errors
    try:
        tgt = load_target(target)
    except TargetError as exc:
        return [rules.EMPIRICAL_INCONSISTENCY(f"empirical check skipped: {exc}", severity="info")]
    names = [deployment] if deployment else list(constitution.deployments)
    pool = ModelPool.of(tgt)
    cache: dict = {}
    out: list[Diagnostic] = []
    findings: dict[tuple[str, str], list[str]] = {}  # (principle, problem) -> deployments
    models_used: dict[str, str] = {}
    for name in names:
        try:
            program = compile_program(constitution, name, tgt, check=False)
        except CompileError:
            continue  # reported by the checker
        if not program.comparison.pool:
            continue
        try:
            models = feedback_models_for(program, pool)
            measured, skipped = measure_principles(program, models, cache)
        except RLAIFError as exc:
            out.append(rules.EMPIRICAL_INCONSISTENCY(
                f"empirical check of deployment `{name}` skipped: {exc}", severity="info", deployment=name))
            continue
        for m in measured:
            if m.consistent:
                continue
            problems = []
            if m.accuracy <= MIN_ACCURACY:
                problems.append(f"agrees with {m.accuracy:.0%} of its {m.examples} labelled example(s) (chance is 50%)")
            if m.flip_rate > MAX_FLIP_RATE:
                of = "of them" if problems else f"of its {m.examples} example(s)"
                problems.append(f"changes its choice in {m.flip_rate:.0%} {of} when A and B are swapped")
            findings.setdefault((m.principle, " and ".join(problems)), []).append(name)
            models_used[m.principle] = ", ".join(fm.name for fm in models)
        if skipped:
            out.append(rules.EMPIRICAL_INCONSISTENCY(
                f"deployment `{name}`: {len(skipped)} compare principle(s) have no complete `example compare` block "
                f"and were not measured: {', '.join(skipped)}",
                severity="info",
                deployment=name,
            ))
    for (pid, problem), deployments in findings.items():
        decl = constitution.principles.get(pid)
        span = decl.compare.span if decl is not None and getattr(decl, "compare", None) is not None else (decl.span if decl else None)
        where = ", ".join(f"`{d}`" for d in deployments)
        out.append(rules.EMPIRICAL_INCONSISTENCY(
            f"the feedback model ({models_used[pid]}) cannot apply `{pid}` consistently "
            f"(deployment{'s' if len(deployments) > 1 else ''} {where}): it {problem}",
            span,
            help="make the question concrete and observable, add `example compare` blocks covering the "
            "distinction, keep `position_debias` on; or use a stronger feedback model in the target",
            deployment=deployments[0] if len(deployments) == 1 else None,
            principles=(pid,),
        ))
    return apply_suppressions(out, constitution)
