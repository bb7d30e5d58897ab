"""One RL stage with a budget, whatever the algorithm: what ``cai run`` calls (:func:`run_rl_stage`).

``ppo``: our PPO (:mod:`cai_dsl.run.train.ppo`) with the ``auto`` reward (policy score, plus the PM when one
is given and beats a constant); ``grpo``: trl's GRPOTrainer on the policy score (:mod:`cai_dsl.run.train.grpo`);
``dpo``: trl's DPOTrainer on labelled pairs (:mod:`cai_dsl.run.train.dpo`). Held-out prompts
(:func:`cai_dsl.run.data.split_of` == ``"eval"``) are refused: they are for evaluation only.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cai_dsl.run.data import PromptItem, split_of
from cai_dsl.run.errors import RLAIFError

__all__ = ["ALGOS", "RLBudget", "RLResult", "run_rl_stage"]

ALGOS = ("ppo", "grpo", "dpo")


@dataclass(frozen=True)
class RLBudget:
    """The size of an RL stage: optimizer steps, rollouts (completions) per step (at least 16 by default; GRPO:
    ``rollouts_per_step / num_generations`` prompts per step), the response budget in tokens."""

    steps: int = 4
    rollouts_per_step: int = 16
    num_generations: int = 4
    max_new_tokens: int = 32
    mini_batch_size: int = 8


@dataclass(frozen=True)
class RLResult:
    """What an RL stage did: per-step reward, KL to the reference, entropy and share of degenerate rollouts
    (None where the algorithm does not measure it: DPO has no rollouts), steps, seconds, the adapter, the
    reward used and why it stopped early if it did."""

    algo: str
    adapter: Path
    out_dir: Path
    steps: int
    seconds: float
    reward: tuple[float | None, ...]
    kl: tuple[float | None, ...]
    entropy: tuple[float | None, ...]
    degenerate: tuple[float | None, ...]
    reward_source: str
    stopped: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "algo": self.algo, "adapter": str(self.adapter), "out_dir": str(self.out_dir), "steps": self.steps,
            "seconds": round(self.seconds, 2), "reward": list(self.reward), "kl": list(self.kl),
            "entropy": list(self.entropy), "degenerate": list(self.degenerate),
            "reward_source": self.reward_source, "stopped": self.stopped,
        }


def _series(rows: Sequence[dict[str, Any]], key: str) -> tuple[float | None, ...]:
    return tuple(None if r.get(key) is None else float(r[key]) for r in rows)


def run_rl_stage(
    program: Any,
    scorer: Any,
    prompts: Sequence[PromptItem],
    algo: str,
    budget: RLBudget,
    *,
    out_dir: str | os.PathLike[str],
    policy_adapter: Path | None = None,
    pm_dir: Path | None = None,
    pairs: Sequence[Any] | None = None,
    pool: Any = None,
    show_progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> RLResult:
    """Run ``algo`` (``ppo`` | ``grpo`` | ``dpo``) on the training ``prompts`` within ``budget`` into
    ``out_dir/<algo>``; ``scorer`` is the :class:`~cai_dsl.run.policy.score.PolicyScorer` (PPO, GRPO),
    ``pm_dir`` an optional preference model (PPO), ``pairs`` the preference pairs (DPO). Resumable."""
    if algo not in ALGOS:
        raise RLAIFError(f"the RL algorithm must be one of {', '.join(ALGOS)}, not `{algo}`")
    held = [p.id for p in prompts if split_of(p.id) == "eval"]
    if held:
        raise RLAIFError(f"{len(held)} held-out prompt(s) given for RL training (e.g. `{held[0]}`); they are for evaluation only")
    out = Path(out_dir) / algo
    if algo == "ppo":
        from cai_dsl.run.train.ppo import PPOConfig, run_ppo

        config = PPOConfig.from_program(
            program, steps=budget.steps, rollout_batch_size=budget.rollouts_per_step,
            mini_batch_size=min(budget.mini_batch_size, budget.rollouts_per_step), max_new_tokens=budget.max_new_tokens,
        )
        r = run_ppo(program, out, list(prompts), pm_dir=pm_dir, config=config, policy_adapter=policy_adapter,
                    policy_scorer=scorer, pool=pool, show_progress=show_progress, log=log)
        rows = r.metrics
        return RLResult("ppo", r.policy, r.out_dir, r.steps, r.seconds, _series(rows, "reward"), _series(rows, "kl"),
                        _series(rows, "entropy"), _series(rows, "degenerate_rate"), r.reward, r.stopped)
    if algo == "grpo":
        from cai_dsl.run.train.grpo import GRPOSettings, run_grpo

        settings = GRPOSettings.from_program(
            program, steps=budget.steps, num_generations=budget.num_generations,
            prompts_per_step=max(1, budget.rollouts_per_step // budget.num_generations),
            max_completion_length=budget.max_new_tokens,
        )
        g = run_grpo(program, out, list(prompts), policy_scorer=scorer, settings=settings, policy_adapter=policy_adapter,
                     pool=pool, show_progress=show_progress, log=log)
        rows = g.metrics
        return RLResult("grpo", g.policy, g.out_dir, g.steps, g.seconds, _series(rows, "reward"), _series(rows, "kl"),
                        _series(rows, "entropy"), _series(rows, "policy_score/degenerate"), "policy")
    from cai_dsl.run.train.dpo import run_dpo

    if not pairs:
        raise RLAIFError("DPO needs labelled preference pairs")
    d = run_dpo(program, out, pairs, policy_adapter=policy_adapter, steps=budget.steps, pool=pool,
                show_progress=show_progress, log=log)
    rows = d.metrics
    none = tuple(None for _ in rows)
    return RLResult("dpo", d.policy, d.out_dir, d.steps, d.seconds, _series(rows, "rewards/margins"), none,
                    _series(rows, "entropy") if any("entropy" in r for r in rows) else none, none, "labels")
