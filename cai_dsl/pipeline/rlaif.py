"""The RL-CAI stage of ``cai run``: label, train the preference model, PPO, evaluate, report.

:func:`run_rlaif_job` runs after the SL-CAI stage with small budgets (:class:`JobBudget`) chosen so that the
whole ``cai run`` (SL + RL + evaluation) stays within about 30 minutes on 2 CPU cores with the embedded
135M-parameter model; the numbers measured are in ``docs/rlaif.md``. Everything goes under ``OUT/rlaif/`` in the
layout ``cai report`` reads; every stage is resumable, so rerunning ``cai run`` after an interruption continues
where it stopped.
"""

from __future__ import annotations

import gc
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from cai_dsl.run.feedback import RLAIFError

__all__ = ["JobBudget", "run_rlaif_job"]


@dataclass(frozen=True)
class JobBudget:
    """Sizes of the ``cai run`` RL-CAI stage (small: it is a smoke run of the whole pipeline, not training)."""

    label_prompts: int = 16
    label_max_new_tokens: int = 40
    pm_steps: int = 6
    ppo_steps: int = 4
    ppo_rollout: int = 4
    ppo_max_new_tokens: int = 24
    eval_prompts: int = 4
    eval_max_new_tokens: int = 40


def _say(message: str) -> None:
    print(message, flush=True)


def run_rlaif_job(
    source: str | Path,
    deployment: str,
    target: str,
    out: Path,
    sl_adapter: Path | None,
    budget: JobBudget | None = None,
) -> int:
    """Run the RL-CAI stage of ``cai run`` into ``out/rlaif``; returns an exit code (0 ok, 1 constitution
    errors, 2 a job error, printed as one message)."""
    from cai_dsl.compile.compiler import compile_file
    from cai_dsl.compile.targets import TargetError

    budget = budget or JobBudget()
    out = Path(out)
    base = out / "rlaif"
    try:
        program, diagnostics = compile_file(str(source), deployment, target)
    except TargetError as exc:
        print(f"cai run: error: {exc}", file=sys.stderr)
        return 2
    if program is None:
        from cai_dsl.cli.common import print_diagnostics

        print_diagnostics([d for d in diagnostics if d.is_error], {})
        return 1
    if not program.comparison.pool:
        _say(f"[rl] deployment `{deployment}` has no compare principles: RL-CAI skipped")
        return 0
    started = time.perf_counter()
    try:
        _stages(program, base, sl_adapter, budget)
    except RLAIFError as exc:
        print(f"cai run: error: {exc}", file=sys.stderr)
        return 2
    _say(f"[rl] RL-CAI stage done in {time.perf_counter() - started:.0f} s; report: {base / 'report.html'}")
    return 0


def _stages(program, base: Path, sl_adapter: Path | None, budget: JobBudget) -> None:
    from cai_dsl.run.evaluation import evaluate_models
    from cai_dsl.run.feedback import default_prompts, run_label
    from cai_dsl.run.train.ppo import PPOConfig, run_ppo
    from cai_dsl.run.train.reward_model import load_pairs, train_preference_model
    from cai_dsl.pipeline.report import write_report

    prompts = default_prompts("train")[: budget.label_prompts]
    t = time.perf_counter()
    summary = run_label(program, base, prompts, policy_adapter=sl_adapter, max_new_tokens=budget.label_max_new_tokens)
    _say(f"[rl 1/5] labelled {summary.records} pairs ({summary.new} new, {summary.pairs_per_second:.2f} pairs/s), "
         f"mean confidence {summary.mean_confidence:.3f}: {summary.path} ({time.perf_counter() - t:.0f} s)")
    gc.collect()

    t = time.perf_counter()
    pairs = load_pairs(summary.path)
    rm = program.run.reward_model
    pm = train_preference_model(
        pairs, base / "pm", base_spec=rm.get("base") or program.run.models.policy, params=rm,
        max_steps=budget.pm_steps, seed=program.provenance.seed, device=program.run.device, dtype=program.run.dtype,
    )
    acc = f"{pm.accuracy:.2f}" if pm.accuracy is not None else "n/a"
    _say(f"[rl 2/5] preference model: {pm.train_pairs} train / {pm.eval_pairs} held-out pairs, held-out accuracy "
         f"{acc}{' (reused)' if pm.reused else ''}: {pm.path} ({time.perf_counter() - t:.0f} s)")
    gc.collect()

    t = time.perf_counter()
    config = PPOConfig.from_program(
        program, steps=budget.ppo_steps, rollout_batch_size=budget.ppo_rollout,
        mini_batch_size=max(1, budget.ppo_rollout // 2), max_new_tokens=budget.ppo_max_new_tokens,
    )
    ppo = run_ppo(program, base / "ppo", prompts, pm_dir=base / "pm", config=config, policy_adapter=sl_adapter, log=_say)
    first, last = (ppo.metrics[0], ppo.metrics[-1]) if ppo.metrics else ({}, {})
    _say(f"[rl 3/5] PPO {ppo.steps} steps: reward {first.get('reward', float('nan')):.3f} -> {last.get('reward', float('nan')):.3f}, "
         f"KL {last.get('kl', float('nan')):.3f}: {ppo.policy} ({time.perf_counter() - t:.0f} s)")
    gc.collect()

    t = time.perf_counter()
    evaluate_models(
        program, sl_adapter=sl_adapter, rl_adapter=ppo.policy, limit=budget.eval_prompts, out_dir=base / "eval",
        max_new_tokens=budget.eval_max_new_tokens, log=lambda m: _say("         " + m),
    )
    _say(f"[rl 4/5] evaluation: {base / 'eval' / 'models.json'} ({time.perf_counter() - t:.0f} s)")
    gc.collect()

    path = write_report(base)
    _say(f"[rl 5/5] report: {path}")
