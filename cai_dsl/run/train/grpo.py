"""GRPO with the compiled policy reward (``cai rl --algo grpo``) on trl's ``GRPOTrainer``, with LoRA.

trl's maintained path (it scales with accelerate and vLLM): for each prompt ``num_generations`` completions
are sampled, each is scored by the constitution's policy score in the prompt's scenario
(:class:`GRPOPolicyReward`, the trl reward function of :mod:`cai_dsl.run.policy.reward`), and the advantages
are the rewards normalised within each prompt's group. A completion whose scenario decides no observable
behavior scores ``undecided_value`` (1: it passed the quality checks), a degenerate or meta one 0.

Data: a ``datasets.Dataset`` of train-split prompts (:func:`grpo_dataset`): ``prompt`` (the policy's
conversational prompt: system prompt and escaped turns, :mod:`cai_dsl.run.prompts`; trl applies the tokenizer's
chat template) and ``scenario`` (``{facet: value}``), which trl hands to the reward.

Settings (:class:`GRPOSettings.from_program`): the target has no ``[grpo]`` table yet, so they come from
``[ppo]`` (learning rate, ``kl_coef`` as ``beta``), ``[sft].lora`` and ``[generation]``; 4 prompts x 4
generations = 16 completions per step. The reference is the base with adapters disabled, or (starting from an
SL adapter) trl's frozen copy of it (adapter ``ref``).

Output (``DIR``): ``policy/`` (the adapter, published atomically with its ``cai-adapter.json`` manifest and a
model card), ``metrics.jsonl`` (trl's log per step: reward, KL, entropy, completion lengths, the degenerate
share), ``summary.json``; ``trainer/`` holds trl checkpoints from which a rerun with the same inputs resumes
(``grpo.run.json`` is the fingerprint).
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from cai_dsl.core.files import write_json_atomic
from cai_dsl.core.hashing import changed_inputs, jsonable
from cai_dsl.run.context import ModelPool, check_adapter_dir, quiet_transformers
from cai_dsl.run.data import PromptItem
from cai_dsl.run.errors import RLAIFError
from cai_dsl.run.policy.reward import PolicyReward
from cai_dsl.run.prompts import PromptRenderer
from cai_dsl.run.train.job import (
    adapter_fingerprint, adapter_manifest, finished_summary, publish_adapter, quiet_trainer, resume_checkpoint, trainable_policy,
    trainer_progress,
)

__all__ = ["GRPOPolicyReward", "GRPOResult", "GRPOSettings", "grpo_dataset", "run_grpo"]


@dataclass(frozen=True)
class GRPOSettings:
    """The GRPO run's settings (trl ``GRPOConfig`` fields of the same names where they exist)."""

    steps: int = 4
    prompts_per_step: int = 4
    num_generations: int = 4
    max_completion_length: int = 32
    beta: float = 0.05
    loss_type: str = "dapo"
    learning_rate: float = 5e-4
    temperature: float = 1.0
    undecided_value: float = 1.0
    checkpoint_every: int = 10
    seed: int = 0

    @classmethod
    def from_program(cls, program: Any, **overrides: Any) -> "GRPOSettings":
        """From the target's ``[ppo]`` and ``[generation]`` tables, then ``overrides`` (None ignored)."""
        gen, ppo = program.run.generation, program.run.ppo
        cfg = cls(
            max_completion_length=int(gen.max_new_tokens),
            beta=float(ppo.kl_coef),
            learning_rate=float(ppo.learning_rate),
            temperature=float(gen.temperature) if gen.temperature > 0 else 1.0,
            seed=int(program.provenance.seed),
        )
        cfg = replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
        if cfg.num_generations < 2:
            raise RLAIFError("GRPO needs at least 2 generations per prompt (advantages are relative to the group)")
        return cfg

    @property
    def completions_per_step(self) -> int:
        return self.prompts_per_step * self.num_generations


class GRPOPolicyReward(PolicyReward):
    """The policy reward for GRPO: undecided scores become ``undecided_value``; logs the degenerate share."""

    def __init__(self, scorer: Any, detectors: Any, *, undecided_value: float = 1.0, **options: Any) -> None:
        super().__init__(scorer, detectors, **options)
        self.undecided_value = undecided_value

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
        scored = self.scores(prompts, completions, **kwargs)
        log_metric = kwargs.get("log_metric")
        if callable(log_metric) and scored:
            log_metric(f"{self.__name__}/degenerate", sum(s.quality.degenerate for s in scored) / len(scored))
            log_metric(f"{self.__name__}/quality_failed", sum(not s.quality.ok for s in scored) / len(scored))
        return [self.undecided_value if s.score is None else s.score for s in scored]


def grpo_dataset(prompts: Sequence[PromptItem], renderer: PromptRenderer | None = None) -> Any:
    """The trl dataset: ``prompt`` (conversational) and, when any prompt has one, ``scenario``."""
    from datasets import Dataset

    renderer = renderer or PromptRenderer()
    rows: list[dict[str, Any]] = [{"prompt": renderer.messages(p.prompt)} for p in prompts]
    if any(p.scenario for p in prompts):
        for row, p in zip(rows, prompts):
            row["scenario"] = dict(p.scenario or {})
    return Dataset.from_list(rows)


@dataclass(frozen=True)
class GRPOResult:
    """A GRPO run: its directory, the adapter, optimizer steps, trl's per-step log, time."""

    out_dir: Path
    policy: Path
    steps: int
    metrics: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def run_grpo(
    program: Any,
    out_dir: str | os.PathLike[str],
    prompts: Sequence[PromptItem],
    *,
    policy_scorer: Any,
    settings: GRPOSettings,
    detectors: Any = None,
    policy_adapter: Path | None = None,
    pool: ModelPool | None = None,
    show_progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> GRPOResult:
    """Train the policy with GRPO on ``prompts`` against the policy score (``policy_scorer``, a
    :class:`~cai_dsl.run.policy.score.PolicyScorer`; ``detectors`` default to the program's markers)."""
    import torch
    from trl import GRPOConfig, GRPOTrainer

    from cai_dsl.run.policy.detectors import DetectorSet

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not prompts:
        raise RLAIFError("no prompts for GRPO")
    if policy_adapter is not None:
        check_adapter_dir(policy_adapter)
    renderer = PromptRenderer.of(program)
    dataset = grpo_dataset(prompts, renderer)
    fingerprint = {
        "job": "grpo",
        "program_hash": program.provenance.program_hash,
        "policy": program.run.models.policy,
        "policy_adapter": adapter_fingerprint(policy_adapter),
        "policy_score": policy_scorer.deployment.name,
        "prompts": [p.id for p in prompts],
        "settings": asdict(settings),
    }
    fp_path, trainer_dir = out / "grpo.run.json", out / "trainer"
    resume: str | None = None
    if fp_path.is_file():
        changed = changed_inputs(json.loads(fp_path.read_text(encoding="utf-8")), fingerprint)
        if changed:
            raise RLAIFError(f"{out} holds a GRPO run with different inputs or settings ({', '.join(changed)}); "
                             "use another --out or delete it")
        summary = finished_summary(out)
        if summary is not None:
            return GRPOResult(out, out / "policy", int(summary["steps"]), summary.get("log", []), 0.0)
        resume = resume_checkpoint(trainer_dir)
    else:
        write_json_atomic(fp_path, jsonable(fingerprint))
    pool = pool or ModelPool.of(program)
    context = pool.context
    loaded = pool.load(program.run.models.policy)
    model, peft_config = trainable_policy(loaded.model, policy_adapter, program.run.sft.lora)
    reward = GRPOPolicyReward(policy_scorer, detectors or DetectorSet.from_program(program),
                              undecided_value=settings.undecided_value, max_completion_length=settings.max_completion_length)
    with quiet_transformers():
        args = GRPOConfig(
            output_dir=str(trainer_dir),
            per_device_train_batch_size=settings.completions_per_step,
            gradient_accumulation_steps=1,
            gradient_checkpointing=False,  # a small model on CPU: recomputing activations only costs time
            num_generations=settings.num_generations,
            max_completion_length=settings.max_completion_length,
            beta=settings.beta,
            loss_type=settings.loss_type,
            learning_rate=settings.learning_rate,
            temperature=settings.temperature,
            top_p=1.0,
            max_steps=settings.steps,
            logging_steps=1,
            save_strategy="steps",
            save_steps=max(1, settings.checkpoint_every),
            save_total_limit=1,
            report_to=[],
            use_cpu=context.use_cpu,
            bf16=context.bf16,
            seed=settings.seed,
            data_seed=settings.seed,
            disable_tqdm=True,
            dataloader_num_workers=0,
            log_completions=False,
        )
    log_path = out / "metrics.jsonl"
    if not resume and log_path.exists():
        log_path.unlink()
    started = time.perf_counter()
    with quiet_transformers(), warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
        warnings.simplefilter("ignore", UserWarning)
        torch.manual_seed(settings.seed)
        trainer = GRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=dataset,
                              processing_class=loaded.tokenizer, peft_config=peft_config)
        quiet_trainer(trainer, trainer_progress("grpo", enabled=show_progress, log_path=log_path))
        if log:
            ref = "trl's frozen copy of the SL adapter" if policy_adapter else "the base with adapters disabled"
            log(f"GRPO on {len(prompts)} prompts, {settings.completions_per_step} completions per step "
                f"(beta {settings.beta}); reference: {ref}" + (" (resuming)" if resume else ""))
        trainer.train(resume_from_checkpoint=resume)
    history = [h for h in trainer.state.log_history if "reward" in h]
    steps = int(trainer.state.global_step)
    manifest = {**adapter_manifest(program, "grpo", policy_adapter), "settings": asdict(settings)}
    trained = trainer.model
    publish_adapter(out / "policy", lambda tmp: trained.save_pretrained(str(tmp), selected_adapters=["default"], save_embedding_layers=False),
                    manifest, _card(program, settings, steps, len(prompts)))
    write_json_atomic(out / "summary.json", {"steps": steps, "prompts": len(prompts), "settings": asdict(settings),
                                             "policy_adapter": str(policy_adapter) if policy_adapter else None,
                                             "log": history})
    result = GRPOResult(out, out / "policy", steps, history, time.perf_counter() - started)
    del trainer
    return result




def _card(program: Any, settings: GRPOSettings, steps: int, prompts: int) -> str:
    p = program.provenance
    return "\n".join([
        "---", "library_name: peft", f"base_model: {program.run.models.policy}",
        "tags: [constitutional-ai, cai-dsl, grpo, lora]", "---", "",
        f"# GRPO LoRA adapter: {p.constitution or p.root_file} [{p.deployment}]", "",
        "Trained by cai-dsl with trl's GRPOTrainer against the constitution's compiled policy score (a rule-based "
        "reward from the resolved policy of each prompt's scenario, plus quality checks).", "",
        f"- program hash: `{p.program_hash}`", f"- target: `{p.target}`",
        f"- {steps} steps on {prompts} prompts, {settings.completions_per_step} completions per step, beta {settings.beta}",
        "",
    ])
