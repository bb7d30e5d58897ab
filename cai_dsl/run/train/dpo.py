"""DPO on the AI preference pairs (``cai rl --algo dpo``): the Hugging Face open-CAI recipe's choice.

trl's ``DPOTrainer`` trains a LoRA adapter on the policy; the reference is the same base model with the
adapters disabled (trl does this when ``ref_model`` is None and the model is a PEFT model), so one base is in
memory. When the policy starts from an SL-CAI adapter, that adapter is trained further and trl keeps a frozen
copy of it (adapter ``ref``) as the reference: the KL anchor is the SL-CAI model.

Pairs are the ``cai label`` records (or any TRL preference file) in conversational form; pairs whose label is
exactly 0.5 (no preference) or whose responses are identical are dropped. DPO uses the hard direction of each
label (``chosen`` is the response the feedback model preferred); the soft probabilities are used by the
preference model for PPO, not here (trl's ``label_smoothing`` is one global value, not per pair).

Output (``DIR``): ``policy/`` (the trained adapter, written atomically), ``metrics.jsonl`` (trl's log per step),
``summary.json``; ``trainer/`` holds trl checkpoints (every ``checkpoint_every`` steps) from which a rerun with
the same inputs resumes.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cai_dsl.core.files import publish_dir, write_json_atomic
from cai_dsl.core.hashing import changed_inputs, jsonable, sha256_text
from cai_dsl.run.context import ModelPool, check_adapter_dir, quiet_transformers
from cai_dsl.run.errors import RLAIFError
from cai_dsl.run.prompts import PromptRenderer
from cai_dsl.run.train.job import (
    adapter_fingerprint, finished_summary, quiet_trainer, resume_checkpoint, stable_adapter_config, trainable_policy,
    trainer_progress, write_adapter_manifest,
)

__all__ = ["DPOResult", "dpo_rows", "run_dpo"]


@dataclass(frozen=True)
class DPOResult:
    """A DPO run: its directory, the trained adapter, optimizer steps, pairs used, the log, time."""

    out_dir: Path
    policy: Path
    steps: int
    pairs: int
    metrics: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def dpo_rows(pairs: Sequence[Any], renderer: PromptRenderer | None = None) -> list[dict[str, Any]]:
    """Conversational DPO rows (``prompt``/``chosen``/``rejected`` message lists) of the usable pairs; the
    prompt is the policy's (:mod:`cai_dsl.run.prompts`: ``renderer``'s system prompt, escaped turns)."""
    renderer = renderer or PromptRenderer()
    rows = []
    for p in pairs:
        if p.chosen == p.rejected or p.probability == 0.5:
            continue
        rows.append({
            "prompt": renderer.messages(p.conversation),
            "chosen": [renderer.response(p.chosen)],
            "rejected": [renderer.response(p.rejected)],
        })
    return rows


def run_dpo(
    program: Any,
    out_dir: str | os.PathLike[str],
    pairs: Sequence[Any],
    *,
    policy_adapter: Path | None = None,
    steps: int | None = None,
    checkpoint_every: int = 10,
    pool: ModelPool | None = None,
    show_progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> DPOResult:
    """Train the policy with trl's DPOTrainer on ``pairs``; parameters from the target's ``[dpo]`` table,
    ``steps`` caps the optimizer steps. Resumes from the latest trl checkpoint of an identical earlier run."""
    import torch
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = dpo_rows(pairs, PromptRenderer.of(program))
    if not rows:
        raise RLAIFError("no usable preference pairs for DPO (all were ties or identical responses)")
    params = program.run.dpo
    pool = pool or ModelPool.of(program)  # models load on first use
    if policy_adapter is not None:
        check_adapter_dir(policy_adapter)
    fingerprint = {
        "job": "dpo",
        "program_hash": program.provenance.program_hash,
        "policy": program.run.models.policy,
        "policy_adapter": adapter_fingerprint(policy_adapter),
        "rows": len(rows),
        "data": _rows_hash(rows),
        "params": params.model_dump(mode="json"),
        "dtype": pool.context.dtype,  # the resolved precision (`auto` differs by machine)
        "steps": steps,
    }
    fp_path = out / "dpo.run.json"
    trainer_dir = out / "trainer"
    resume: str | None = None
    if fp_path.is_file():
        changed = changed_inputs(json.loads(fp_path.read_text(encoding="utf-8")), fingerprint)
        if changed:
            raise RLAIFError(f"{out} holds a DPO run with different inputs or settings ({', '.join(changed)}); "
                             "use another --out or delete it")
        summary = finished_summary(out)
        if summary is not None:
            history = [h for h in summary.get("log", []) if "loss" in h]
            return DPOResult(out, out / "policy", int(summary["steps"]), int(summary["pairs"]), history, 0.0)
        resume = resume_checkpoint(trainer_dir)
    else:
        write_json_atomic(fp_path, jsonable(fingerprint))
    context = pool.context
    loaded = pool.load(program.run.models.policy)
    model, peft_config = trainable_policy(loaded.model, policy_adapter, params.lora)
    tokenizer = loaded.tokenizer
    with quiet_transformers():
        args = DPOConfig(
            output_dir=str(trainer_dir),
            beta=params.beta,
            learning_rate=params.learning_rate,
            per_device_train_batch_size=params.batch_size,
            num_train_epochs=float(params.epochs),
            max_steps=int(steps) if steps else -1,
            loss_type=[params.loss_type],
            max_length=params.max_seq_len,
            logging_steps=1,
            save_strategy="steps",
            save_steps=max(1, checkpoint_every),
            save_total_limit=1,
            save_only_model=False,
            report_to=[],
            use_cpu=context.use_cpu,
            bf16=context.bf16,
            seed=int(program.provenance.seed),
            data_seed=int(program.provenance.seed),
            disable_tqdm=True,
            dataloader_num_workers=0,
        )
    started = time.perf_counter()
    log_path = out / "metrics.jsonl"
    if not resume and log_path.exists():
        log_path.unlink()
    with quiet_transformers(), warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
        warnings.simplefilter("ignore", UserWarning)
        torch.manual_seed(int(program.provenance.seed))
        trainer = DPOTrainer(
            model=model, ref_model=None, args=args, train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer, peft_config=peft_config,
        )
        quiet_trainer(trainer, trainer_progress("dpo", enabled=show_progress, log_path=log_path))
        trainer.add_callback(_save_last_step_callback())
        if log:
            ref = "a frozen copy of the SL adapter" if policy_adapter else "the base with adapters disabled"
            log(f"DPO on {len(rows)} pairs (beta {args.beta}); reference: {ref}" + (" (resuming)" if resume else ""))
        trainer.train(resume_from_checkpoint=resume)
    with publish_dir(out / "policy") as tmp:
        trainer.model.save_pretrained(str(tmp), selected_adapters=["default"], save_embedding_layers=False)
        stable_adapter_config(tmp)
        write_adapter_manifest(tmp, program, "dpo", policy_adapter)
    history = [h for h in trainer.state.log_history if "loss" in h]
    write_json_atomic(out / "summary.json", {
        "steps": int(trainer.state.global_step),
        "pairs": len(rows),
        "beta": args.beta,
        "policy_adapter": str(policy_adapter) if policy_adapter else None,
        "reference": "adapter copy of the SL policy" if policy_adapter else "base with adapters disabled",
        "log": trainer.state.log_history,
    })
    result = DPOResult(out, out / "policy", int(trainer.state.global_step), len(rows), history, time.perf_counter() - started)
    del trainer
    return result




def _save_last_step_callback():
    from transformers import TrainerCallback

    class SaveLastStep(TrainerCallback):
        """Checkpoint the final step too (trl saves only every ``save_steps``)."""

        def on_step_end(self, args, state, control, **kwargs):
            if state.max_steps and state.global_step >= state.max_steps:
                control.should_save = True
            return control

    return SaveLastStep()


def _rows_hash(rows: list[dict[str, Any]]) -> str:
    return sha256_text(json.dumps(rows, sort_keys=True, ensure_ascii=False))
