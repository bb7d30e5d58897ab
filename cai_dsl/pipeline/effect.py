"""The last measured stage of ``cai run``: base -> SL -> RL on held-out prompts, and the verdict against the target.

:func:`effect_stage` runs :func:`cai_dsl.run.eval.evaluate_models` into ``OUT/.../eval`` (resumable) and returns an
:class:`Effect`: the evaluation, its table (:func:`~cai_dsl.run.eval.effect_table`) and its
:class:`~cai_dsl.run.eval.Verdict` ("target met" or "target NOT met: ..." with the numbers).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from cai_dsl.compile.ir import Program
from cai_dsl.lang.resolver import resolve
from cai_dsl.run.eval import EvalOptions, ModelsEvaluation, Target, Verdict, effect_table, evaluate_models, verdict
from cai_dsl.run.policy.score import PolicyScorer

__all__ = ["Effect", "effect_stage", "policy_scorer"]


@dataclass(frozen=True)
class Effect:
    """The evaluation of the trained models, where it was written, and its verdict."""

    evaluation: ModelsEvaluation
    verdict: Verdict
    path: Path | None
    seconds: float

    @property
    def table(self) -> list[list[str]]:
        return effect_table(self.evaluation)

    @property
    def judge_table(self) -> list[list[str]]:
        return effect_table(self.evaluation, judge=True)


def policy_scorer(source: str | Path, deployment: str) -> PolicyScorer:
    """The policy scorer of ``deployment`` of the constitution at ``source``."""
    return PolicyScorer(resolve(str(source)), deployment)


def effect_stage(
    program: Program,
    scorer: PolicyScorer,
    out_dir: Path | None,
    *,
    sl_adapter: Path | None,
    rl_adapter: Path | None,
    options: EvalOptions = EvalOptions(),
    feedback_signal: bool | None = None,
    target: Target = Target(),
    show_progress: bool = True,
) -> Effect:
    """Evaluate base, SL and RL into ``out_dir`` (``records.jsonl``, ``models.json``; None: in memory) and judge
    the target."""
    started = time.perf_counter()
    ev = evaluate_models(
        program, scorer, sl_adapter=sl_adapter, rl_adapter=rl_adapter, options=options, out_dir=out_dir,
        feedback_signal=feedback_signal, show_progress=show_progress,
    )
    path = Path(out_dir) / "models.json" if out_dir is not None else None
    return Effect(evaluation=ev, verdict=verdict(ev, target), path=path, seconds=time.perf_counter() - started)
