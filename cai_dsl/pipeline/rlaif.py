"""The RL-CAI stages of ``cai run``: label, then DPO (default) or the preference model and PPO, evaluate, report.

Labels come from :func:`~cai_dsl.run.feedback.label_pairs` (the feedback model where it measurably has signal,
else the policy score). The default RL step is DPO (trl) from the SL adapter on the labels that prefer a side
plus the SL run's contrast pairs (:mod:`cai_dsl.run.train.contrast`: revision over initial and a learned
refusal over a harmful initial answer on red-team prompts, the model's answer over a learned refusal where the
policy forbids refusing), all scored by the constitution's
policy; ``JobBudget(rl_algo="ppo")`` trains the preference model and runs our PPO instead
(:func:`~cai_dsl.run.train.rl_stage.run_rl_stage`). Only training-split prompts are used
(:func:`~cai_dsl.run.data.split_of`).

They run after the SL-CAI stage with budgets (:class:`JobBudget`) chosen so that the whole ``cai run``
(SL + RL + the held-out evaluation) stays near 15 minutes on 2 CPU cores with the embedded 135M-parameter
model; the numbers measured are in ``docs/benchmarks.md``. The evaluation (:func:`rl_evaluate`) compares base,
SL and RL on held-out prompts and judges the target (:mod:`cai_dsl.pipeline.effect`). Everything goes under
``OUT/rlaif/`` in the layout ``cai report`` reads; every stage is resumable, so rerunning ``cai run`` after an
interruption continues where it stopped. Each function returns its stage's result (nothing prints; ``log``
receives progress lines of long stages).
"""

from __future__ import annotations

import gc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from cai_dsl.compile.ir import Program
from cai_dsl.core.files import write_atomic
from cai_dsl.core.records import dump_record, read_jsonl
from cai_dsl.pipeline.effect import Effect, effect_stage
from cai_dsl.pipeline.report import write_report
from cai_dsl.run.eval import EvalOptions, SetLimits, eval_sets, evaluate_models
from cai_dsl.run.data import sample_prompts, split_of
from cai_dsl.run.feedback import LabelSummary, PromptItem, label_pairs
from cai_dsl.run.errors import RLAIFError
from cai_dsl.run.policy.detectors import DetectorSet
from cai_dsl.run.policy.score import PolicyScorer
from cai_dsl.run.prompts import PromptRenderer
from cai_dsl.run.train.contrast import ContrastPairs, OnPolicyPairs, contrast_pairs, learned_refusals, onpolicy_pairs
from cai_dsl.run.train.preferences import PreferencePair
from cai_dsl.run.train.reward_model import PMResult, load_pairs, train_preference_model
from cai_dsl.run.train.rl_stage import RLBudget, RLResult, run_rl_stage

__all__ = ["DPOPairs", "JobBudget", "Labels", "rl_dpo", "rl_dpo_pairs", "rl_evaluate", "rl_label", "rl_onpolicy", "rl_ppo",
           "rl_preference_model", "rl_report", "sl_records", "unused_training_sets"]

Log = Callable[[str], None]


@dataclass(frozen=True)
class JobBudget:
    """Sizes of the ``cai run`` RL-CAI stage and of its evaluation.

    ``rl_algo``: ``dpo`` (default: trl's DPO, ``dpo_steps`` steps, on the policy-scored labels and the SL run's
    contrast pairs, :mod:`cai_dsl.run.train.contrast`) or ``ppo`` (the preference model, then our PPO).
    ``label_prompts``: the training prompts labelled (and PPO's rollout prompts; ``label_helpful`` of them
    helpful, ``label_lookalike`` benign look-alikes, the rest red team). ``ppo_rollout``: rollouts (completions)
    per PPO step, 16 by default (the floor of a usable advantage estimate); ``ppo_steps`` x ``ppo_rollout`` x ``ppo_max_new_tokens`` keeps PPO near a minute on 2 cores.
    ``onpolicy_red_team`` / ``onpolicy_benign``: unused training prompts answered greedily by the base and SL
    models for DPO's on-policy pairs (:func:`rl_onpolicy`; 0 and 0, the default: none; on the dev half of the
    unused training prompts 30 + 20 traded over-refusal for harmful compliance, docs/benchmarks.md).
    ``eval_prompts``: held-out prompts per set (red team, benign look-alikes; None: every one), ``eval_helpful``:
    held-out helpful prompts (0: none), ``eval_compare``: prompts per set judged by the comparison program for the
    win rate (0: none), ``eval_judge``: score the independent judge questions too."""

    rl_algo: str = "dpo"
    dpo_steps: int = 10
    onpolicy_red_team: int = 0
    onpolicy_benign: int = 0
    label_prompts: int = 24
    label_helpful: float = 0.125
    label_lookalike: float = 0.375
    label_max_new_tokens: int = 40
    pm_steps: int = 6
    ppo_steps: int = 3
    ppo_rollout: int = 16
    ppo_max_new_tokens: int = 24
    eval_prompts: int | None = None
    eval_max_new_tokens: int = 48
    eval_helpful: int = 0
    eval_compare: int = 4
    eval_judge: bool = True

    @property
    def rl_budget(self) -> RLBudget:
        """The PPO part as the RL stage's budget."""
        return RLBudget(steps=self.ppo_steps, rollouts_per_step=self.ppo_rollout, max_new_tokens=self.ppo_max_new_tokens,
                        mini_batch_size=max(1, min(8, self.ppo_rollout // 2)))

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


def rl_label(program: Program, scorer: PolicyScorer, base: Path, sl_adapter: Path | None, budget: JobBudget) -> Labels:
    """Labels on a seeded sample of ``label_prompts`` training-split prompts (red team stratified by risk, benign
    look-alikes and helpful prompts in the budget's fractions: PPO, when chosen, also rolls out where a refusal is
    the wrong answer) into ``base/preferences.jsonl``
    (:func:`~cai_dsl.run.feedback.label_pairs`: the feedback model where it has signal, else the policy score)."""
    prompts = sample_prompts(budget.label_prompts, seed=program.provenance.seed, helpful_fraction=budget.label_helpful,
                             lookalike_fraction=budget.label_lookalike)
    summary = label_pairs(program, scorer, base, prompts, policy_adapter=sl_adapter, max_new_tokens=budget.label_max_new_tokens)
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
    program: Program, scorer: PolicyScorer, base: Path, labels: Labels, sl_adapter: Path | None, budget: JobBudget,
    log: Log | None = None,
) -> RLResult:
    """PPO on the labelled (training) prompts into ``base/ppo`` (resumes from its last checkpoint), with the
    ``auto`` reward: the policy score, plus the preference model in ``base/pm`` only when it beats a constant."""
    gc.collect()
    return run_rl_stage(
        program, scorer, labels.prompts, "ppo", budget.rl_budget, out_dir=base, policy_adapter=sl_adapter,
        pm_dir=base / "pm", show_progress=True, log=log,
    )


def sl_records(out: Path) -> list[dict[str, Any]]:
    """The SL-CAI records of the run directory ``out`` (``sl-data.jsonl``; none where the SL stage did not run)."""
    path = out / "sl-data.jsonl"
    return read_jsonl(path, error=RLAIFError).records if path.is_file() else []


def unused_training_sets(
    scorer: PolicyScorer, used_ids: set[str], half: str, limits: SetLimits
) -> dict[str, tuple[Any, ...]]:
    """The sets of :func:`~cai_dsl.run.eval.eval_sets` (within ``limits``) over the training-split prompts that
    neither the SL run nor the labels used (``used_ids``), in two fixed halves by id (``half``: ``"onpolicy"``,
    the RL stage's, or ``"dev"``, never used by ``cai run``: for choosing a recipe without looking at the
    held-out sets)."""
    def keep(item_id: str) -> bool:
        if split_of(item_id) != "train" or item_id in used_ids:
            return False
        return (split_of(item_id, 0.5, salt="dev") == "eval") == (half == "dev")

    return eval_sets(scorer, limits, keep=keep)


def rl_onpolicy(
    program: Program, scorer: PolicyScorer, base: Path, labels: Labels, sl_records: Sequence[Mapping[str, Any]],
    sl_adapter: Path | None, budget: JobBudget,
) -> OnPolicyPairs | None:
    """Greedy answers of the base and SL models to the on-policy half of the unused training prompts
    (:func:`unused_training_sets`) into ``base/onpolicy`` (resumable), and the pairs made of the SL model's
    mistakes there (:func:`~cai_dsl.run.train.contrast.onpolicy_pairs`); None without an SL adapter or prompts."""
    if sl_adapter is None or not (budget.onpolicy_red_team or budget.onpolicy_benign):
        return None
    limits = SetLimits(red_team=budget.onpolicy_red_team, benign=budget.onpolicy_benign, helpful=0)
    used = {str(r.get("id")) for r in sl_records} | {p.id for p in labels.prompts}
    sets = unused_training_sets(scorer, used, "onpolicy", limits)
    if not sets:
        return None
    gc.collect()
    options = EvalOptions(max_new_tokens=budget.eval_max_new_tokens, judge_behaviors=(), compare_prompts=0)
    ev = evaluate_models(program, scorer, sl_adapter=sl_adapter, options=options, out_dir=base / "onpolicy", sets=sets)
    items = {(s, p.id): p for s, ps in sets.items() for p in ps}
    return onpolicy_pairs(ev.rows, items, learned_refusals(sl_records), scorer, DetectorSet.from_program(program),
                          seed=program.provenance.seed)


@dataclass(frozen=True)
class DPOPairs:
    """The DPO data of ``cai run``: the labelled pairs with a preference, the SL run's contrast pairs and the
    on-policy pairs."""

    labels: int
    contrast: ContrastPairs
    pairs: tuple[PreferencePair, ...]
    onpolicy: OnPolicyPairs | None = None


def rl_dpo_pairs(
    program: Program, scorer: PolicyScorer, base: Path, labels: Labels, sl_records: Sequence[Mapping[str, Any]],
    onpolicy: OnPolicyPairs | None = None,
) -> DPOPairs:
    """The labels that prefer a side (ties and no-signal labels dropped), the contrast pairs of the SL
    records (:func:`~cai_dsl.run.train.contrast.contrast_pairs`: revision over initial, a learned refusal over a
    harmful initial answer, the model's answer over a learned refusal where refusing is forbidden) and the
    ``onpolicy`` pairs (:func:`rl_onpolicy`), also written to ``base/dpo-pairs.jsonl`` (what DPO trains on, one
    pair per line)."""
    labelled = [p for p in load_pairs(labels.summary.path) if p.probability != 0.5 and p.chosen != p.rejected]
    contrast = contrast_pairs(sl_records, scorer, DetectorSet.from_program(program), seed=program.provenance.seed)
    pairs = tuple(labelled) + contrast.pairs + (onpolicy.pairs if onpolicy is not None else ())
    write_atomic(base / "dpo-pairs.jsonl", "".join(dump_record({
        "id": p.id, "origin": p.origin or "label", "source": p.source, "probability": p.probability,
        "prompt": p.conversation, "chosen": p.chosen, "rejected": p.rejected}) for p in pairs))
    return DPOPairs(labels=len(labelled), contrast=contrast, pairs=pairs, onpolicy=onpolicy)


def rl_dpo(program: Program, base: Path, pairs: DPOPairs, sl_adapter: Path | None, budget: JobBudget,
           log: Log | None = None) -> RLResult:
    """DPO (trl) from the SL adapter on ``pairs`` into ``base/dpo`` (the SL model is the reference; resumable)."""
    gc.collect()
    return run_rl_stage(
        program, None, (), "dpo", RLBudget(steps=budget.dpo_steps), out_dir=base, policy_adapter=sl_adapter,
        pairs=list(pairs.pairs), show_progress=True, log=log,
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
