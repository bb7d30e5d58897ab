"""The skeleton every trainer (SFT, preference model, PPO, DPO) is built on.

* **fingerprint and resume**: :func:`cai_dsl.core.hashing.fingerprint` / ``check_resume`` over a job's
  inputs, with :func:`adapter_fingerprint` for the adapters it starts from;
* **atomic publish**: :func:`cai_dsl.core.files.publish_dir`; :func:`publish_adapter` publishes a trained
  adapter with its **manifest** (``cai-adapter.json``: base model, stage, program hash, which
  :func:`cai_dsl.run.loading.load_model` reads to find an adapter's base) and an optional **model card**;
* **LoRA config**: :func:`lora_config` from the target's typed :class:`~cai_dsl.compile.targets.LoraParams`;
* **progress**: :func:`trainer_progress` + :func:`quiet_trainer` (one bar instead of transformers' printing).

A new algorithm is one config (its table in :mod:`cai_dsl.compile.targets`, typed in the IR's ``run``) and
one trainer module using these.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cai_dsl.core.files import publish_dir, write_atomic, write_json_atomic
from cai_dsl.core.hashing import sha256_file
from cai_dsl.core.progress import progress

__all__ = [
    "adapter_fingerprint",
    "adapter_manifest",
    "lora_config",
    "publish_adapter",
    "quiet_trainer",
    "stable_adapter_config",
    "trainer_progress",
    "write_adapter_manifest",
]


def adapter_fingerprint(adapter: Path | None) -> str | None:
    """A content hash of a PEFT adapter directory (its weights and config), or None."""
    if adapter is None:
        return None
    digest = hashlib.sha256()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        p = Path(adapter) / name
        if p.is_file():
            digest.update(name.encode())
            digest.update(sha256_file(p).encode())
    return digest.hexdigest()


def adapter_manifest(program: Any, stage: str, source_adapter: Path | None = None) -> dict[str, Any]:
    """The ``cai-adapter.json`` of an RL adapter: base model spec, stage, program hash."""
    return {
        "base_model": program.run.models.policy,
        "stage": stage,
        "program_hash": program.provenance.program_hash,
        "constitution": program.provenance.constitution,
        "deployment": program.provenance.deployment,
        "source_adapter": str(source_adapter) if source_adapter else None,
    }


def write_adapter_manifest(directory: Path, program: Any, stage: str, source_adapter: Path | None = None) -> None:
    """Write :func:`adapter_manifest` into an adapter directory."""
    from cai_dsl.run.loading import ADAPTER_MANIFEST

    write_json_atomic(Path(directory) / ADAPTER_MANIFEST, adapter_manifest(program, stage, source_adapter))


def stable_adapter_config(directory: Path, **updates: Any) -> None:
    """Rewrite ``directory/adapter_config.json`` (if any) with ``updates`` and byte-stable: peft keeps
    ``target_modules`` as a set, so its saved order changes with the process's string-hash seed."""
    path = Path(directory) / "adapter_config.json"
    if not path.is_file():
        return
    config = {**json.loads(path.read_text(encoding="utf-8")), **updates}
    for key in ("target_modules", "modules_to_save"):
        if isinstance(config.get(key), list):
            config[key] = sorted(config[key])
    write_atomic(path, json.dumps(config, indent=2, sort_keys=True) + "\n")


def publish_adapter(
    final: Path, save: Callable[[Path], None], manifest: Mapping[str, Any], card: str | None = None
) -> Path:
    """Atomically publish an adapter: ``save(tmp)`` writes the weights, then the manifest (and ``README.md``
    model card) are added; pickles never ship (``training_args.bin`` is removed)."""
    from cai_dsl.run.loading import ADAPTER_MANIFEST

    with publish_dir(final) as tmp:
        save(tmp)
        base = {"base_model_name_or_path": manifest["base_model"]} if manifest.get("base_model") else {}  # a spec, not a cache path
        stable_adapter_config(tmp, **base)
        (tmp / "training_args.bin").unlink(missing_ok=True)
        write_json_atomic(tmp / ADAPTER_MANIFEST, dict(manifest))
        if card is not None:
            write_atomic(tmp / "README.md", card)
    return Path(final)


def lora_config(lora: Any, task_type: str = "CAUSAL_LM", **overrides: Any) -> Any:
    """A peft ``LoraConfig`` of the target's ``LoraParams`` (``overrides``: LoraConfig fields set explicitly)."""
    from peft import LoraConfig

    fields: dict[str, Any] = {
        "r": lora.r,
        "lora_alpha": lora.alpha,
        "lora_dropout": lora.dropout,
        "target_modules": list(lora.target_modules),
    }
    fields.update({k: (list(v) if k == "target_modules" else v) for k, v in overrides.items() if v is not None})
    return LoraConfig(task_type=task_type, **fields)


def trainer_progress(desc: str, *, enabled: bool = True, log_path: Path | None = None) -> Any:
    """A transformers ``TrainerCallback`` showing a progress bar (loss in the postfix) and, with ``log_path``,
    appending each log entry as one fsynced JSON line. Use with :func:`quiet_trainer`."""
    from transformers import TrainerCallback

    class _Progress(TrainerCallback):
        def __init__(self) -> None:
            self.stack = contextlib.ExitStack()
            self.bar: Any = None

        def on_train_begin(self, args, state, control, **kwargs):
            shown = enabled and state.is_world_process_zero
            self.bar = self.stack.enter_context(
                progress(state.max_steps, desc, unit="step", done=state.global_step, enabled=shown))

        def on_step_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar(1)

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = dict(logs or {})
            if self.bar is not None and "loss" in logs:
                self.bar(0, loss=f"{float(logs['loss']):.4f}")
            if log_path is not None and logs:
                line = json.dumps({"step": state.global_step, **logs}, default=float, sort_keys=True) + "\n"
                with open(log_path, "a", encoding="utf-8") as fh:
                    fh.write(line)
                    fh.flush()
                    os.fsync(fh.fileno())

        def on_train_end(self, args, state, control, **kwargs):
            self.stack.close()
            self.bar = None

    return _Progress()


def quiet_trainer(trainer: Any, callback: Any) -> Any:
    """Replace a transformers Trainer's printing/tqdm callbacks with ``callback``."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(callback)
    return trainer


def finished_summary(out: Path) -> dict | None:
    """The ``summary.json`` of a finished training run in ``out`` (its policy adapter present), else None."""
    try:
        summary = json.loads((Path(out) / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return summary if (Path(out) / "policy" / "adapter_config.json").is_file() and "steps" in summary else None


def trainable_policy(model: Any, policy_adapter: Any, lora: Any) -> tuple[Any, Any]:
    """The policy to train and the trl ``peft_config``: an existing adapter made trainable (``peft_config`` None),
    or the base model with a new LoRA config from the target's ``lora`` settings."""
    if policy_adapter is None:
        return model, lora_config(lora)
    from peft import PeftModel

    from cai_dsl.run.context import quiet_transformers
    from cai_dsl.run.errors import RLAIFError

    try:
        with quiet_transformers():
            return PeftModel.from_pretrained(model, str(policy_adapter), is_trainable=True), None
    except Exception as exc:
        raise RLAIFError(f"{policy_adapter}: cannot load the policy adapter: {type(exc).__name__}: {exc}") from None


def complete_checkpoints(folder: Path) -> list[Path]:
    """The transformers/trl ``checkpoint-N`` folders under ``folder`` that were saved completely (their
    ``trainer_state.json``, written last, reads), by step."""
    found = []
    for p in folder.glob("checkpoint-*"):
        m = re.fullmatch(r"checkpoint-(\d+)", p.name)
        if not m or not p.is_dir():
            continue
        try:
            json.loads((p / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # killed while saving
        found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def resume_checkpoint(folder: Path) -> str | None:
    """The latest complete checkpoint under ``folder`` to resume from, after removing the incomplete ones (a
    run killed while saving leaves a ``checkpoint-N`` without its state, which transformers would pick and fail
    on); None when there is none."""
    complete = complete_checkpoints(folder)
    for p in folder.glob("checkpoint-*"):
        if p not in complete:
            shutil.rmtree(p, ignore_errors=True)
    return str(complete[-1]) if complete else None
