"""LoRA supervised fine-tuning on SL-CAI data (trl ``SFTTrainer`` + peft ``LoraConfig``).

Input: a run directory written by ``cai sl`` (``sl-data.jsonl``, ``program.json``,
``sources.json``). Training pairs are (prompt, revision): the final revision of each record, or
every round's revision (``revisions="all"``, as in the paper), optionally mixed with helpfulness
data (the helpful prompts' initial responses). Each pair is a conversational prompt-completion
example, so trl applies the tokenizer's chat template and computes the loss on the completion only.

Output: ``DIR/adapter/``, a peft LoRA adapter written atomically (trained, saved into a temporary
directory, then renamed into place), with a ``README.md`` model card that embeds the constitution's
source text, the deployment, target, source and program hashes and the data file's hash, and a
``cai-adapter.json`` manifest (base model spec, hashes, fingerprint) that ``cai_dsl.run.loading.load_model``
reads. Checkpoints go to ``DIR/checkpoints/`` and a rerun resumes from the newest complete one.

Runs on CPU (float32, ``use_cpu``), and data-parallel over several processes::

    torchrun --nproc_per_node 2 -m cai_dsl.run.train.sft DIR            # CPU, gloo backend
    accelerate launch -m cai_dsl.run.train.sft DIR                        # GPUs / nodes / DeepSpeed / FSDP
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cai_dsl.core.files import remove_stale, write_json_atomic
from cai_dsl.core.hashing import fingerprint as inputs_fingerprint
from cai_dsl.core.hashing import sha256_file, sha256_text
from cai_dsl.compile.ir import Program
from cai_dsl.run.context import ExecutionContext
from cai_dsl.run.data import DATA_FILE
from cai_dsl.run.errors import SFTError
from cai_dsl.run.train.job import complete_checkpoints, lora_config, publish_adapter, resume_checkpoint
from cai_dsl.run.train.sft_data import build_examples, excluded_records, read_records

__all__ = [
    "ADAPTER_DIR",
    "CHECKPOINT_DIR",
    "SFTError",
    "SFTOptions",
    "SFTResult",
    "build_examples",
    "excluded_records",
    "main",
    "model_card",
    "read_records",
    "train_sft",
]

ADAPTER_DIR = "adapter"
CHECKPOINT_DIR = "checkpoints"
_STATE_FILE = "cai-sft.json"


@dataclass(frozen=True)
class SFTOptions:
    """Fine-tuning knobs; ``None`` takes the target's ``[sft]`` value (``program.run.sft``).

    ``revisions``: ``final`` (one pair per record) or ``all`` (one per round's revision).
    ``include_helpful``: add the helpful prompts' initial responses, ``helpful_repeats`` times each (class
    balance, see :func:`~cai_dsl.run.train.sft_data.build_examples`). ``exclude_ids``: records held out
    (e.g. for evaluation). ``max_steps``: stop after this many optimizer steps (else ``epochs``).
    """

    revisions: Literal["final", "all"] = "final"
    include_helpful: bool = True
    helpful_repeats: int = 1
    exclude_ids: tuple[str, ...] = ()
    max_steps: int | None = None
    epochs: int | None = None
    learning_rate: float | None = None
    batch_size: int | None = None
    grad_accum: int | None = None
    max_seq_len: int | None = None
    warmup_ratio: float | None = None
    lora_r: int | None = None
    lora_alpha: int | None = None
    lora_dropout: float | None = None
    target_modules: tuple[str, ...] | None = None
    save_steps: int | None = None
    seed: int | None = None

    def resolved(self, program: Program) -> dict[str, Any]:
        """The effective hyper-parameters as plain data (recorded in the adapter's manifest)."""
        sft = program.run.sft

        def pick(value: Any, default: Any) -> Any:
            return default if value is None else value

        return {
            "revisions": self.revisions,
            "include_helpful": self.include_helpful,
            "helpful_repeats": self.helpful_repeats,
            "exclude_ids": sorted(self.exclude_ids),
            "max_steps": self.max_steps,
            "epochs": int(pick(self.epochs, sft.epochs)),
            "learning_rate": float(pick(self.learning_rate, sft.learning_rate)),
            "batch_size": int(pick(self.batch_size, sft.batch_size)),
            "grad_accum": int(pick(self.grad_accum, sft.grad_accum)),
            "max_seq_len": int(pick(self.max_seq_len, sft.max_seq_len)),
            "warmup_ratio": float(pick(self.warmup_ratio, sft.warmup_ratio)),
            "lora_r": int(pick(self.lora_r, sft.lora.r)),
            "lora_alpha": int(pick(self.lora_alpha, sft.lora.alpha)),
            "lora_dropout": float(pick(self.lora_dropout, sft.lora.dropout)),
            "target_modules": list(pick(self.target_modules, sft.lora.target_modules)),
            "use_lora": sft.use_lora,
            "seed": int(pick(self.seed, program.provenance.seed)),
        }


@dataclass
class SFTResult:
    """What :func:`train_sft` did. ``skipped``: an adapter with the same fingerprint already existed.
    ``adapter`` None: nothing was trained, the gate accepted no SFT target (``excluded`` records gave none)."""

    adapter: Path | None
    examples: int
    steps: int = 0
    loss: float | None = None
    seconds: float = 0.0
    resumed_from: str | None = None
    skipped: bool = False
    world_size: int = 1
    manifest: dict[str, Any] = field(default_factory=dict)
    excluded: int = 0

    @property
    def trained(self) -> bool:
        """Whether there is an adapter (False: 0 accepted targets, SFT skipped)."""
        return self.adapter is not None

    @property
    def no_targets(self) -> str:
        """The one line that says SFT was skipped for want of targets (shown by every command)."""
        return f"0 accepted targets: SFT skipped ({self.excluded} record(s) without an accepted response, not trained on)"


# ---------------------------------------------------------------------------------------------------- model card


def _fence(text: str) -> str:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def model_card(manifest: dict[str, Any], sources: dict[str, str]) -> str:
    """The adapter's README.md: provenance table, how to verify it, and every constitution source file."""
    hp = manifest["hyperparameters"]
    lines = [
        "---",
        "library_name: peft",
        f"base_model: {manifest['base_model']}",
        "tags: [constitutional-ai, cai-dsl, sl-cai, lora]",
        "---",
        "",
        f"# SL-CAI LoRA adapter: {manifest.get('constitution') or manifest['source_file']} [{manifest['deployment']}]",
        "",
        "A LoRA adapter fine-tuned by cai-dsl on supervised Constitutional AI data (Bai et al. 2022): the "
        "model's responses to red-team prompts, critiqued and revised under the principles of the constitution "
        "below. Everything needed to trace these weights back to those principles is recorded here.",
        "",
        "## Provenance",
        "",
        "| | |",
        "|---|---|",
        f"| constitution | `{manifest.get('constitution')}` version `{manifest.get('constitution_version')}` (`{manifest['source_file']}`) |",
        f"| deployment | `{manifest['deployment']}` |",
        f"| target | `{manifest['target']}` |",
        f"| source hash | `{manifest['source_hash']}` |",
        f"| program hash | `{manifest['program_hash']}` |",
        f"| data file | `{manifest['data_file']}` sha256 `{manifest['data_sha256']}` ({manifest['records']} records) |",
        f"| training examples | {manifest['examples']} (revisions: {hp['revisions']}, helpful data: "
        f"{manifest['helpful_examples']}), sha256 `{manifest['examples_sha256']}` |",
        f"| held-out records | {len(hp['exclude_ids'])} |",
        f"| records without an accepted response (not trained on) | {manifest.get('excluded_records', 0)} |",
        f"| base model | `{manifest['base_model']}` |",
        f"| cai-dsl | {manifest['cai_dsl_version']} |",
        "",
        "## Training",
        "",
        f"trl `SFTTrainer` + peft LoRA (r={hp['lora_r']}, alpha={hp['lora_alpha']}, dropout={hp['lora_dropout']}, "
        f"modules {', '.join(hp['target_modules'])}); learning rate {hp['learning_rate']}, batch {hp['batch_size']} "
        f"x {hp['grad_accum']} accumulation x {manifest.get('world_size', 1)} process(es), "
        f"{'max steps ' + str(hp['max_steps']) if hp['max_steps'] else str(hp['epochs']) + ' epoch(s)'}, "
        f"max length {hp['max_seq_len']}, seed {hp['seed']}, precision {manifest.get('dtype', 'float32')}; loss on the "
        "completion only. "
        f"{manifest.get('steps', '?')} optimizer steps, final training loss {manifest.get('loss')}.",
        "",
        "## Verify",
        "",
        "```sh",
        f"sha256sum {manifest['data_file']}        # {manifest['data_sha256']}",
        f"cai compile {manifest['source_file']} --deployment {manifest['deployment']} --target {manifest['target']} "
        f"--seed {manifest['seed']} -o program.json",
        f"# program.json's provenance.program_hash must be {manifest['program_hash']}",
        "```",
        "",
        "## Constitution source",
        "",
    ]
    file_hashes = dict(manifest.get("files", []))
    for rel in sorted(sources):
        text = sources[rel]
        fence = _fence(text)
        sha = file_hashes.get(rel) or sha256_text(text)
        lines += [f"### `{rel}` (sha256 `{sha}`)", "", fence + "text", text.rstrip("\n"), fence, ""]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------- training


def _world() -> tuple[int, int]:
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _progress_callback() -> Any:
    """A TrainerCallback drawing the progress bar over optimizer steps (loss after it), on the main process only."""
    from cai_dsl.run.train.job import trainer_progress

    return trainer_progress("LoRA SFT steps")


def _load_run(run_dir: Path) -> tuple[Program, dict[str, str], list[dict[str, Any]]]:
    program_path = run_dir / "program.json"
    if not program_path.is_file():
        raise SFTError(f"{run_dir}: no program.json (run `cai sl` into this directory first)")
    try:
        program = Program.from_json(program_path.read_bytes())
    except ValueError as exc:
        raise SFTError(f"{program_path}: not a compiled program: {exc}") from None
    try:
        sources = json.loads((run_dir / "sources.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        sources = {}
    records = read_records(run_dir / DATA_FILE)
    return program, sources, records


def train_sft(
    run_dir: str | os.PathLike[str],
    *,
    options: SFTOptions | None = None,
    base_model: str | None = None,
    progress: bool = True,
    callbacks: Sequence[Any] = (),
) -> SFTResult:
    """Fine-tune a LoRA adapter on the SL-CAI data of ``run_dir`` into ``run_dir/adapter``.

    The base model is the program's policy model unless ``base_model`` names another spec. Skips the
    work when ``run_dir/adapter`` already holds an adapter with the same fingerprint (data, program,
    options), and resumes from the newest complete checkpoint in ``run_dir/checkpoints``. Under
    ``torchrun``/``accelerate launch`` every process calls this; only the main one writes files.
    """
    from cai_dsl import __version__

    t0 = time.perf_counter()
    run = Path(run_dir)
    options = options or SFTOptions()
    program, sources, records = _load_run(run)
    hp = options.resolved(program)
    if not hp["use_lora"]:
        raise SFTError("the target sets sft.use_lora = false; only LoRA fine-tuning is implemented")
    examples = build_examples(
        records,
        program,
        revisions=hp["revisions"],
        include_helpful=hp["include_helpful"],
        exclude_ids=hp["exclude_ids"],
        helpful_repeats=hp["helpful_repeats"],
    )
    excluded = excluded_records(records, examples, include_helpful=hp["include_helpful"], exclude_ids=hp["exclude_ids"])
    if not examples and excluded:
        # the gate accepted no target: nothing to train on is a result, not an error
        return SFTResult(adapter=None, examples=0, seconds=time.perf_counter() - t0, excluded=excluded)
    if not examples:
        raise SFTError(f"{run / DATA_FILE}: no training examples (no records, or all held out)")
    helpful_ids = {str(r["id"]) for r in records if r.get("helpful")}
    base = base_model or program.run.models.policy
    rank, world = _world()
    prov = program.provenance
    data_path = run / DATA_FILE
    context = ExecutionContext.of(program)
    fingerprint = {
        "program_hash": prov.program_hash,
        "examples_sha256": inputs_fingerprint(examples),
        "base_model": base,
        "hyperparameters": hp,
        "dtype": context.dtype,  # the resolved precision (`auto` differs by machine): part of what was trained
        "world_size": world,
    }
    manifest: dict[str, Any] = {
        "format": 1,
        "kind": "cai-sl-lora-adapter",
        "base_model": base,
        "constitution": prov.constitution,
        "constitution_version": prov.version,
        "source_file": prov.root_file,
        "files": [list(f) for f in prov.files],
        "source_hash": prov.source_hash,
        "program_hash": prov.program_hash,
        "deployment": prov.deployment,
        "target": prov.target,
        "seed": prov.seed,
        "data_file": DATA_FILE,
        "data_sha256": sha256_file(data_path),
        "records": len(records),
        "examples": len(examples),
        "helpful_examples": sum(1 for e in examples if e["id"].split("#")[0] in helpful_ids),
        "excluded_records": excluded,
        "examples_sha256": fingerprint["examples_sha256"],
        "hyperparameters": hp,
        "dtype": context.dtype,
        "world_size": world,
        "cai_dsl_version": __version__,
        "fingerprint": inputs_fingerprint(fingerprint),
    }
    adapter_dir = run / ADAPTER_DIR
    existing = _read_manifest(adapter_dir)
    if existing is not None and existing.get("fingerprint") == manifest["fingerprint"]:
        return SFTResult(
            adapter=adapter_dir,
            examples=len(examples),
            steps=int(existing.get("steps") or 0),
            loss=existing.get("loss"),
            skipped=True,
            world_size=world,
            manifest=existing,
        )

    import torch
    from accelerate import PartialState
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from cai_dsl.run.loading import ModelError

    use_cpu, bf16 = context.use_cpu, context.bf16
    ckpt_dir = run / CHECKPOINT_DIR
    save_steps = options.save_steps or 10
    # transformers >= 5.2x renamed gradient_checkpointing to activation_checkpointing (off: small models, speed)
    ckpt_field = "activation_checkpointing" if "activation_checkpointing" in SFTConfig.__dataclass_fields__ else "gradient_checkpointing"
    config = SFTConfig(
        output_dir=str(ckpt_dir),
        use_cpu=use_cpu,
        bf16=bf16,
        fp16=False,
        **{ckpt_field: False},
        ddp_find_unused_parameters=False if world > 1 else None,
        max_length=hp["max_seq_len"],
        per_device_train_batch_size=hp["batch_size"],
        gradient_accumulation_steps=hp["grad_accum"],
        num_train_epochs=hp["epochs"],
        max_steps=hp["max_steps"] or -1,
        learning_rate=hp["learning_rate"],
        warmup_steps=hp["warmup_ratio"],
        logging_steps=1,
        save_strategy="steps",
        save_steps=save_steps,
        save_total_limit=2,
        report_to="none",
        seed=hp["seed"],
        data_seed=hp["seed"],
        disable_tqdm=True,
        dataloader_num_workers=0,
        ddp_backend="gloo" if use_cpu and world > 1 else None,
        completion_only_loss=True,
        log_level="warning",
    )
    state = PartialState()
    if state.is_main_process:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        stored = _read_json(ckpt_dir / _STATE_FILE)
        if stored is not None and stored.get("fingerprint") != manifest["fingerprint"]:
            shutil.rmtree(ckpt_dir)  # checkpoints of another run: start over
            ckpt_dir.mkdir(parents=True)
        resume_checkpoint(ckpt_dir)  # removes the incomplete checkpoints
        write_json_atomic(ckpt_dir / _STATE_FILE, {"fingerprint": manifest["fingerprint"]})
    state.wait_for_everyone()
    complete = complete_checkpoints(ckpt_dir)
    resume = str(complete[-1]) if complete else None

    try:
        loaded = context.load(base, dtype=torch.bfloat16 if bf16 else torch.float32)
    except ModelError as exc:
        raise SFTError(str(exc)) from None
    tokenizer = loaded.tokenizer
    tokenizer.padding_side = "right"  # training pads on the right (generation pads on the left)
    dataset = Dataset.from_list([{"prompt": e["prompt"], "completion": e["completion"]} for e in examples])
    lora = lora_config(
        program.run.sft.lora,
        r=hp["lora_r"],
        lora_alpha=hp["lora_alpha"],
        lora_dropout=hp["lora_dropout"],
        target_modules=hp["target_modules"],
    )
    all_callbacks = list(callbacks)
    if progress:
        all_callbacks.append(_progress_callback())
    with _quiet_datasets(), _no_v6_deprecations():
        trainer = SFTTrainer(
            model=loaded.model,
            args=config,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=lora,
            callbacks=all_callbacks or None,
        )
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # the rich bar shows progress; no raw log dicts on stdout
    with _no_v6_deprecations():
        output = trainer.train(resume_from_checkpoint=resume)
    steps = int(trainer.state.global_step)
    loss = _last_loss(trainer.state.log_history, output)
    manifest.update(steps=steps, loss=loss)
    if trainer.is_world_process_zero():
        _write_adapter(trainer.model, adapter_dir, manifest, sources)
        shutil.rmtree(ckpt_dir, ignore_errors=True)  # the adapter is in place: checkpoints are not needed
    state.wait_for_everyone()
    return SFTResult(
        adapter=adapter_dir,
        examples=len(examples),
        steps=steps,
        loss=loss,
        seconds=time.perf_counter() - t0,
        resumed_from=resume,
        world_size=world,
        manifest=manifest,
    )


@contextlib.contextmanager
def _quiet_datasets() -> Iterator[None]:
    """Hide datasets' per-map progress bars while trl prepares the data (restored afterwards)."""
    from datasets.utils import logging as ds_logging

    was_enabled = ds_logging.is_progress_bar_enabled()
    ds_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            ds_logging.enable_progress_bar()


@contextlib.contextmanager
def _no_v6_deprecations() -> Iterator[None]:
    """Silence transformers' gradient->activation checkpointing renames that trl/peft still trigger."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*deprecated and will be removed in v6.*", category=FutureWarning)
        yield


def _last_loss(history: list[dict[str, Any]], output: Any) -> float | None:
    for entry in reversed(history):
        if "loss" in entry:
            return round(float(entry["loss"]), 4)
    value = getattr(output, "training_loss", None)
    return round(float(value), 4) if value is not None else None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _read_manifest(adapter_dir: Path) -> dict[str, Any] | None:
    from cai_dsl.run.loading import ADAPTER_MANIFEST

    if not (adapter_dir / "adapter_model.safetensors").is_file():
        return None
    return _read_json(adapter_dir / ADAPTER_MANIFEST)


def _write_adapter(model: Any, adapter_dir: Path, manifest: dict[str, Any], sources: dict[str, str]) -> None:
    """Publish the adapter atomically with its manifest and model card (:func:`cai_dsl.run.train.job.publish_adapter`)."""
    remove_stale(adapter_dir)  # only the main process publishes the adapter
    publish_adapter(adapter_dir, lambda tmp: model.save_pretrained(str(tmp), safe_serialization=True), manifest,
                    model_card(manifest, sources))


# ---------------------------------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m cai_dsl.run.train.sft RUN_DIR``: train the adapter (under torchrun / accelerate launch too)."""
    ap = argparse.ArgumentParser(prog="python -m cai_dsl.run.train.sft", description="LoRA SFT on the SL-CAI data of RUN_DIR")
    ap.add_argument("run_dir", help="a directory written by `cai sl` (sl-data.jsonl, program.json)")
    ap.add_argument("--revisions", choices=("final", "all"), default="final")
    ap.add_argument("--no-helpful", action="store_true", help="leave out the helpful prompts' responses")
    ap.add_argument("--helpful-repeats", type=int, default=1, help="each helpful answer this many times")
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=None, help="per process")
    ap.add_argument("--learning-rate", type=float, default=None)
    ap.add_argument("--save-steps", type=int, default=None)
    ap.add_argument("--base-model", default=None, help="model spec (default: the program's policy model)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    options = SFTOptions(
        revisions=args.revisions,
        include_helpful=not args.no_helpful,
        helpful_repeats=args.helpful_repeats,
        max_steps=args.max_steps,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        save_steps=args.save_steps,
    )
    try:
        result = train_sft(args.run_dir, options=options, base_model=args.base_model, progress=not args.no_progress)
    except SFTError as exc:
        print(f"cai sft: error: {exc}", file=sys.stderr)
        return 2
    rank, _ = _world()
    if rank == 0 and not result.trained:
        print(result.no_targets)
    elif rank == 0:
        what = "up to date" if result.skipped else f"{result.steps} steps, loss {result.loss}, {result.seconds:.1f} s"
        print(f"adapter: {result.adapter} ({result.examples} examples, {result.world_size} process(es); {what})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
