"""The RL-CAI stages of ``cai run``: label, train the preference model, PPO, evaluate, report.

They run after the SL-CAI stage with budgets (:class:`JobBudget`) chosen so that the whole ``cai run``
(SL + RL + the held-out evaluation) stays under 15 minutes on 2 CPU cores with the embedded 135M-parameter
model; the numbers measured are in ``docs/benchmarks.md``. The evaluation (:func:`rl_evaluate`) compares base,
SL and RL on held-out prompts and judges the target (:mod:`cai_dsl.pipeline.effect`). Everything goes under ``OUT/rlaif/`` in the layout ``cai report``
reads; every stage is resumable, so rerunning ``cai run`` after an interruption continues where it stopped.
Each function returns its stage's result (nothing prints; ``log`` receives progress lines of long stages).
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from cai_dsl.compile.ir import Program
from cai_dsl.pipeline.effect import Effect, effect_stage
from cai_dsl.pipeline.report import write_report
from cai_dsl.run.eval import EvalOptions, SetLimits
from cai_dsl.run.feedback import LabelSummary, PromptItem, default_prompts, run_label
from cai_dsl.run.policy.score import PolicyScorer
from cai_dsl.run.prompts import PromptRenderer
from cai_dsl.run.train.ppo import PPOConfig, PPOResult, run_ppo
from cai_dsl.run.train.reward_model import PMResult, load_pairs, train_preference_model

__all__ = ["JobBudget", "Labels", "rl_evaluate", "rl_label", "rl_ppo", "rl_preference_model", "rl_report"]

Log = Callable[[str], None]


@dataclass(frozen=True)
class JobBudget:
    """Sizes of the ``cai run`` RL-CAI stage and of its evaluation.

    ``eval_prompts``: held-out prompts per set (red team, benign look-alikes; None: every one), ``eval_helpful``:
    held-out helpful prompts (0: none), ``eval_compare``: prompts per set judged by the comparison program for the
    win rate (0: none), ``eval_judge``: score the independent judge questions too."""

    label_prompts: int = 16
    label_max_new_tokens: int = 40
    pm_steps: int = 6
    ppo_steps: int = 4
    ppo_rollout: int = 4
    ppo_max_new_tokens: int = 24
    eval_prompts: int | None = None
    eval_max_new_tokens: int = 48
    eval_helpful: int = 0
    eval_compare: int = 4
    eval_judge: bool = True

    @property
    def eval_options(self) -> EvalOptions:
        limits = SetLimits(red_team=self.eval_prompts, benign=self.eval_prompts, helpful=self.eval_helpful)
        judge = EvalOptions().judge_behaviors if self.eval_judge else ()
        return EvalOptions(limits=limits, max_new_tokens=self.eval_max_new_tokens, judge_behaviors=judge,
                           compare_prompts=self.eval_compare)


@dataclass(frozen=True)
class Labels:
    """Stage 1: the AI-feedback labels, and the prompts they were drawn from (PPO rolls out on them too)."""

    summary: LabelSummary
    prompts: tuple[PromptItem, ...]


def rl_label(program: Program, base: Path, sl_adapter: Path | None, budget: JobBudget) -> Labels:
    """AI feedback labels on the first ``label_prompts`` training prompts into ``base/preferences.jsonl``."""
    prompts = default_prompts("train")[: budget.label_prompts]
    summary = run_label(program, base, prompts, policy_adapter=sl_adapter, max_new_tokens=budget.label_max_new_tokens)
    return Labels(summary=summary, prompts=tuple(prompts))


def rl_preference_model(program: Program, base: Path, labels: Labels, budget: JobBudget) -> PMResult:
    """The preference model trained on the labels into ``base/pm`` (reused when up to date)."""
    gc.collect()
    rm = program.run.reward_model
    return train_preference_model(
        load_pairs(labels.summary.path), base / "pm", base_spec=rm.base or program.run.models.policy, params=rm, renderer=PromptRenderer.of(program),
        max_steps=budget.pm_steps, seed=program.provenance.seed, device=program.run.device, dtype=program.run.dtype,
    )


def rl_ppo(
    program: Program, base: Path, labels: Labels, sl_adapter: Path | None, budget: JobBudget, log: Log | None = None
) -> PPOResult:
    """PPO against the preference model into ``base/ppo`` (resumes from its last checkpoint)."""
    gc.collect()
    config = PPOConfig.from_program(
        program, steps=budget.ppo_steps, rollout_batch_size=budget.ppo_rollout,
        mini_batch_size=max(1, budget.ppo_rollout // 2), max_new_tokens=budget.ppo_max_new_tokens,
    )
    return run_ppo(
        program, base / "ppo", list(labels.prompts), pm_dir=base / "pm", config=config, policy_adapter=sl_adapter, log=log
    )


def rl_evaluate(
    program: Program, scorer: PolicyScorer, base: Path, sl_adapter: Path | None, rl_adapter: Path | None,
    budget: JobBudget, *, feedback_signal: bool | None = None,
) -> Effect:
    """Base, SL and RL models on the held-out sets into ``base/eval/models.json``, with the target verdict."""
    gc.collect()
    return effect_stage(
        program, scorer, base / "eval", sl_adapter=sl_adapter, rl_adapter=rl_adapter, options=budget.eval_options,
        feedback_signal=feedback_signal,
    )


def rl_report(base: Path) -> Path:
    """The HTML report of the run (``base/report.html``)."""
    gc.collect()
    return write_report(base)
