"""PPO against the policy score and/or the preference model (``cai rl --algo ppo``): the resumable job.

The algorithm, its config and the one-base-model layout are in :mod:`cai_dsl.run.train.ppo_trainer`; the
reward (policy score, PM, or both; ``auto`` by default) in :mod:`cai_dsl.run.train.ppo_reward`. The prompts,
sampling seeds and mini-batch orders are derived from the program seed and the step number, so a resumed run
produces the same steps as an uninterrupted one. ``out_dir`` holds ``metrics.jsonl`` (one fsynced record per
step), ``checkpoint/`` (atomically replaced every ``checkpoint_every`` steps), and at the end ``policy/`` (the RL
adapter with its manifest) and ``summary.json``.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cai_dsl.core.files import publish_dir, write_json_atomic
from cai_dsl.core.hashing import RunMismatch, changed_inputs
from cai_dsl.core.progress import progress
from cai_dsl.core.records import RecordFile
from cai_dsl.run.context import ModelPool, check_adapter_dir, quiet_transformers
from cai_dsl.run.data import PromptItem
from cai_dsl.run.errors import RLAIFError
from cai_dsl.run.prompts import policy_prompt
from cai_dsl.run.train.job import adapter_fingerprint, write_adapter_manifest
from cai_dsl.run.train.ppo_losses import compute_gae, kl_penalized_rewards, masked_mean, masked_var, ppo_loss, whiten
from cai_dsl.run.train.ppo_reward import RolloutReward, resolve_reward_mode
from cai_dsl.run.train.ppo_trainer import PPOConfig, PPOTrainerLite

__all__ = [
    "PPOConfig",
    "PPOResult",
    "PPOTrainerLite",
    "compute_gae",
    "kl_penalized_rewards",
    "masked_mean",
    "masked_var",
    "ppo_loss",
    "run_ppo",
    "whiten",
]


# ---------------------------------------------------------------------------------------------------- the job


@dataclass(frozen=True)
class PPOResult:
    """A PPO run: its directory, the final policy adapter, steps done, this call's new steps, metrics, time, the
    reward used (``policy``, ``pm`` or ``policy+pm``) and why it stopped early (``"kl"``) if it did."""

    out_dir: Path
    policy: Path
    steps: int
    new_steps: int
    metrics: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    resumed_from: int = 0
    reward: str = "pm"
    stopped: str | None = None

    @property
    def finished(self) -> bool:
        """The policy adapter is published (all steps done, or stopped early)."""
        return (self.policy / "adapter_model.safetensors").is_file()


def _read_checkpoint_state(directory: Path) -> dict | None:
    try:
        return json.loads((directory / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _load_policy(base: Any, policy_adapter: Path | None, config: PPOConfig) -> tuple[Any, str | None]:
    """The PEFT-wrapped base with adapter ``policy`` (and ``reference``: a frozen copy of the SL adapter)."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model

    for p in base.parameters():
        p.requires_grad_(False)
    if policy_adapter is not None:
        try:
            with quiet_transformers():
                peft_model = PeftModel.from_pretrained(base, str(policy_adapter), adapter_name="policy", is_trainable=True)
                peft_model.load_adapter(str(policy_adapter), adapter_name="reference", is_trainable=False)
        except Exception as exc:
            raise RLAIFError(f"{policy_adapter}: cannot load the policy adapter: {type(exc).__name__}: {exc}") from None
        return peft_model, "reference"
    lora = LoraConfig(
        task_type="CAUSAL_LM", r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=0.0,
        target_modules=list(config.lora_target_modules),
    )
    with torch.random.fork_rng(devices=[]), quiet_transformers():
        torch.manual_seed(config.seed)  # LoRA A matrices are random: seeded so that runs repeat
        return get_peft_model(base, lora, adapter_name="policy"), None


def run_ppo(
    program: Any,
    out_dir: str | os.PathLike[str],
    prompts: Sequence[PromptItem],
    *,
    pm_dir: str | os.PathLike[str] | None = None,
    config: PPOConfig,
    policy_adapter: Path | None = None,
    policy_scorer: Any = None,
    detectors: Any = None,
    pool: ModelPool | None = None,
    show_progress: bool = True,
    log: Callable[[str], None] | None = None,
    stop_after: int | None = None,
) -> PPOResult:
    """Train the policy with PPO; resumable (see the module docstring).

    The reward is ``config.reward`` resolved by :func:`~cai_dsl.run.train.ppo_reward.resolve_reward_mode`:
    the policy score needs ``policy_scorer`` (a :class:`~cai_dsl.run.policy.score.PolicyScorer`; ``detectors``
    default to the program's markers) and each prompt's ``scenario``; the PM needs ``pm_dir``.
    ``stop_after`` stops after that many new steps (tests use it to simulate a killed run).
    """
    from cai_dsl.run.loading import resolve_model_dir
    from cai_dsl.run.train.reward_model import RewardScorer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not prompts:
        raise RLAIFError("no prompts for PPO rollouts")
    pm_path = Path(pm_dir) if pm_dir is not None else None
    if pm_path is not None and not (pm_path / "pm.json").is_file():
        raise RLAIFError(f"{pm_path}: no preference model there (pm.json missing)")
    mode = resolve_reward_mode(config.reward, has_policy=policy_scorer is not None, pm_dir=pm_path)
    if policy_adapter is not None:
        check_adapter_dir(policy_adapter)
    pm_meta = json.loads((pm_path / "pm.json").read_text(encoding="utf-8")) if pm_path is not None and "pm" in mode else None
    fingerprint = {
        "job": "ppo",
        "program_hash": program.provenance.program_hash,
        "policy": program.run.models.policy,
        "policy_adapter": adapter_fingerprint(policy_adapter),
        "pm": pm_meta.get("fingerprint") if pm_meta else None,
        "reward": mode,
        "policy_score": policy_scorer.deployment.name if policy_scorer is not None and "policy" in mode else None,
        "prompts": [p.id for p in prompts],
        "config": config.fingerprint(),
    }
    ckpt_dir = out / "checkpoint"
    state = _read_checkpoint_state(ckpt_dir)
    changed = changed_inputs(state.get("fingerprint") or {}, fingerprint) if state is not None else []
    if changed:
        raise RLAIFError(f"{out} holds a PPO run with different inputs or settings ({', '.join(changed)}); "
                         "use another --out directory or delete it")
    done_steps = int(state["step"]) if state else 0
    stopped = state.get("stopped") if state else None
    metrics_path = out / "metrics.jsonl"
    try:
        metrics = RecordFile(metrics_path, key_field="step", fingerprint=fingerprint)
    except RunMismatch as exc:
        raise RLAIFError(str(exc)) from None
    metrics.retain(lambda r: int(r.get("step", 0)) <= done_steps)  # steps after the checkpoint are redone
    if (done_steps >= config.steps or stopped) and (out / "policy" / "adapter_model.safetensors").is_file():
        return PPOResult(out, out / "policy", done_steps, 0, sorted(metrics, key=lambda r: r["step"]), 0.0, done_steps,
                         mode, stopped)

    pool = pool or ModelPool.of(program)
    policy_spec = program.run.models.policy
    loaded = pool.load(policy_spec)
    peft_model, reference = _load_policy(loaded.model, policy_adapter, config)
    pm_scorer = None
    if pm_meta is not None:
        if Path(pm_meta.get("base_dir", "")).resolve() == Path(resolve_model_dir(policy_spec)).resolve():
            pm_scorer = RewardScorer.attach(pm_path, loaded, peft_model)  # one base: the PM is a second adapter
        else:
            pm_scorer = RewardScorer.attach(pm_path, pool.load(pm_meta.get("base", policy_spec)))
            if log:
                log(f"note: the preference model's base ({pm_meta.get('base')}) differs from the policy's: it is loaded separately")
    policy_reward = None
    if "policy" in mode:
        from cai_dsl.run.policy.detectors import DetectorSet
        from cai_dsl.run.policy.reward import policy_reward_function

        policy_reward = policy_reward_function(policy_scorer, detectors or DetectorSet.from_program(program))
    reward = RolloutReward(policy_reward, pm_scorer, policy_weight=config.policy_weight, pm_weight=config.pm_weight)
    trainer = PPOTrainerLite(peft_model, loaded.tokenizer, reward, config, reference_adapter=reference)
    if state is not None:
        trainer.load_checkpoint(ckpt_dir)
        if log:
            log(f"resuming PPO after step {done_steps}")
    token_ids = [trainer_prompt_ids(loaded.tokenizer, program, p.prompt) for p in prompts]
    started = time.perf_counter()
    new_steps = 0
    order = list(range(len(prompts)))
    with progress(config.steps - done_steps, "ppo", unit="step", enabled=show_progress) as bar:
        for step in range(done_steps + 1, config.steps + 1):
            if stopped or (stop_after is not None and new_steps >= stop_after):
                break
            idx = _step_prompts(program, order, step, config.rollout_batch_size)
            record = trainer.step([prompts[i].prompt for i in idx], [token_ids[i] for i in idx], _step_seed(program, step),
                                  [prompts[i].scenario for i in idx])
            record = {"step": step, **record}
            if not all(math.isfinite(v) for v in record.values() if isinstance(v, float)):
                raise RLAIFError(f"PPO step {step} produced a non-finite metric ({record}); lower the learning rate")
            metrics.append(record)
            new_steps += 1
            if record["kl_stop"]:
                stopped = "kl"
                if log:
                    log(f"PPO stopped at step {step}: mean KL {record['kl']:.3f} > kl_target {config.kl_target}")
            if stopped or step % config.checkpoint_every == 0 or step == config.steps:
                trainer.save_checkpoint(ckpt_dir, step, fingerprint, stopped)
            bar(1, reward=f"{record['reward']:.3f}", kl=f"{record['kl']:.3f}")
    final_step = done_steps + new_steps
    if final_step >= config.steps or stopped:
        with publish_dir(out / "policy") as tmp:
            trainer.save_policy(tmp)
            write_adapter_manifest(tmp, program, "ppo", policy_adapter)
        rows = sorted(metrics, key=lambda r: r["step"])
        write_json_atomic(out / "summary.json", {
            "steps": final_step,
            "config": asdict(config),
            "reward": mode,
            "stopped": stopped,
            "policy_adapter": str(policy_adapter) if policy_adapter else None,
            "reference": "adapter copy of the SL policy" if reference else "base with adapters disabled",
            "pm": str(pm_path) if pm_meta else None,
            "first": {k: rows[0][k] for k in ("reward", "kl")} if rows else None,
            "last": {k: rows[-1][k] for k in ("reward", "kl")} if rows else None,
        })
    del trainer
    return PPOResult(out, out / "policy", final_step, new_steps, sorted(metrics, key=lambda r: r["step"]),
                     time.perf_counter() - started, done_steps, mode, stopped)


def trainer_prompt_ids(tokenizer: Any, program: Any, text: str) -> list[int]:
    """Token ids of the policy's generation prompt for ``text`` (the same rendering as ``cai label``)."""
    from cai_dsl.run.backends.base import prompt_ids, render_chat

    return prompt_ids(tokenizer, render_chat(tokenizer, policy_prompt(program, text)))


def _step_seed(program: Any, step: int) -> int:
    return program.rng("ppo-rollout", step).randrange(2**31 - 1)


def _step_prompts(program: Any, order: list[int], step: int, batch: int) -> list[int]:
    """Prompts of ``step`` (1-based): consecutive slices of a per-epoch seeded shuffle of all prompts."""
    n = len(order)
    out: list[int] = []
    start = (step - 1) * batch
    for k in range(start, start + batch):
        epoch, pos = divmod(k, n)
        perm = list(order)
        program.rng("ppo-epoch", epoch).shuffle(perm)
        out.append(perm[pos])
    return out
