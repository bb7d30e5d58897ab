"""`cai run` as library stages: each function runs one stage and returns its result; nothing prints.

The stages, in order (the CLI, :mod:`cai_dsl.cli.pipeline`, prints one summary per result):

1. :func:`check_library`: parse, resolve, lint and test every `.const` file of the standard library;
2. :func:`compile_stage`: compile the chosen deployment for the target into ``OUT/<deployment>.program.json``;
3. SL-CAI (:func:`sl_data`, :func:`sl_finetune`, :func:`sl_evaluate`): critique/revision data on a
   small prompt sample, a LoRA fine-tune on the revisions, a before/after evaluation on held-out prompts;
4. RLAIF (:mod:`cai_dsl.pipeline.rlaif`): AI feedback labels, a preference model, PPO, evaluation, report.

Every stage resumes: rerunning with the same ``OUT`` skips finished work. Failures raise
:class:`~cai_dsl.core.errors.CaiError` subclasses (with diagnostics where the constitution has errors).
"""

from __future__ import annotations

import contextlib
import importlib.resources
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from cai_dsl.check.checker import check
from cai_dsl.check.tests import failures_as_diagnostics, run_tests
from cai_dsl.compile.compiler import CompileError, compile_file
from cai_dsl.compile.ir import Program
from cai_dsl.core.files import write_atomic, write_json_atomic
from cai_dsl.diagnostics import Diagnostic
from cai_dsl.lang.resolver import resolve
from cai_dsl.run.adapter_eval import evaluate_adapter
from cai_dsl.run.data import sample_prompts, seeded_rank
from cai_dsl.run.prepare import Job, prepare_job
from cai_dsl.run.sl import SLResult, run_sl
from cai_dsl.run.sl_loop import SLOptions
from cai_dsl.run.train.sft import SFTOptions, SFTResult, train_sft
from cai_dsl.semantics.budget import Budget

__all__ = [
    "Compiled",
    "FileCheck",
    "LibraryCheck",
    "SLBudget",
    "SLData",
    "SLEvaluation",
    "SLFinetune",
    "check_library",
    "compile_stage",
    "default_constitution",
    "run_constitution",
    "sl_data",
    "sl_evaluate",
    "sl_finetune",
    "stdlib_dir",
]


def stdlib_dir() -> Path:
    """The standard library of constitutions shipped with the package."""
    return Path(str(importlib.resources.files("cai_dsl.stdlib")))


def default_constitution() -> Path:
    """The paper's constitution (the default of `cai eval feedback`)."""
    return stdlib_dir() / "anthropic-2022.const"


def run_constitution() -> Path:
    """The constitution `cai run` compiles and trains on by default: the standard library's core, whose policy
    forbids operational detail and requires refusals where the scenario calls for them (its observable behaviors
    are what the gates, the rewards and the evaluation measure)."""
    return stdlib_dir() / "harmless-helpful.const"


# ---------------------------------------------------------------------------------------------- 1. check


@dataclass(frozen=True)
class FileCheck:
    """One library file: its error diagnostics (lint errors, or failed tests) and its source texts."""

    path: str
    errors: tuple[Diagnostic, ...]
    sources: Mapping[str, str]


@dataclass(frozen=True)
class LibraryCheck:
    """Stage 1: every library file linted, and the tests of the error-free ones run."""

    files: tuple[FileCheck, ...]
    passed: int
    failed: int

    @property
    def errors(self) -> int:
        return sum(len(f.errors) for f in self.files)

    @property
    def ok(self) -> bool:
        return not self.errors and not self.failed


def check_library(directory: Path | None = None, smt_budget: Budget | None = None) -> LibraryCheck:
    """Lint every `.const` file under ``directory`` (default: the standard library) and run its tests, every
    SMT query within ``smt_budget`` (default: a fresh :class:`Budget`); undecided is an error, never a pass."""
    budget = smt_budget or Budget()
    files = sorted((directory or stdlib_dir()).rglob("*.const"))
    checked: list[FileCheck] = []
    passed = failed = 0
    for path in files:
        constitution = resolve(str(path))
        errors = [d for d in check(constitution, budget=budget, strict_undecided=True) if d.is_error]
        if not errors:
            results = run_tests(constitution, budget)
            passed += sum(r.passed for r in results)  # a vacuous case passes, with a warning (CAI403)
            failed += sum(not r.passed for r in results)
            errors = [d for d in failures_as_diagnostics(results) if d.is_error]
        checked.append(FileCheck(path=str(path), errors=tuple(errors), sources=dict(constitution.sources)))
    return LibraryCheck(files=tuple(checked), passed=passed, failed=failed)


# ---------------------------------------------------------------------------------------------- 2. compile


@dataclass(frozen=True)
class Compiled:
    """Stage 2: the compiled program and where it was written."""

    source: Path
    deployment: str
    target: str
    program: Program
    path: Path


def compile_stage(source: Path, deployment: str, target: str, out: Path, smt_budget: Budget | None = None) -> Compiled:
    """Compile ``deployment`` of ``source`` for ``target`` into ``out/<deployment>.program.json`` (checked
    within ``smt_budget``).

    Raises :class:`CompileError` with every diagnostic when the constitution has errors, and
    :class:`~cai_dsl.compile.targets.TargetError` for a bad target.
    """
    program, diagnostics = compile_file(str(source), deployment, target, budget=smt_budget)
    if program is None:
        raise CompileError(list(diagnostics))
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{deployment}.program.json"
    write_atomic(path, program.to_json())
    return Compiled(source=Path(source), deployment=deployment, target=target, program=program, path=path)


# ---------------------------------------------------------------------------------------------- 3. SL-CAI


@dataclass(frozen=True)
class SLBudget:
    """Sizes of the ``cai run`` SL-CAI stage: ``prompts`` train-split prompts, of which ``helpful_fraction`` helpful
    and ``lookalike_fraction`` benign look-alikes (answered, so SFT also learns not to refuse them), the rest red
    team; ``held_out`` revised records kept out of SFT for the log-prob check; ``gate``: gate revisions
    (:mod:`cai_dsl.run.sl_gate`; off keeps every non-empty revision); ``sft_steps`` optimizer steps of the target's
    LoRA SFT with each helpful/look-alike answer ``helpful_repeats`` times (class balance against over-refusal).
    The defaults are the measured recipe of docs/benchmarks.md ("The SL recipe")."""

    prompts: int = 120
    held_out: int = 3
    rounds: int = 1
    max_new_tokens: int = 48
    sft_steps: int = 40
    helpful_fraction: float = 0.125
    lookalike_fraction: float = 0.25
    helpful_repeats: int = 3
    gate: bool = True


@dataclass(frozen=True)
class SLData:
    """Stage 3a: the SL-CAI records, and the revised red-team records held out from fine-tuning."""

    job: Job
    result: SLResult
    rounds: int
    max_new_tokens: int
    held: tuple[dict[str, Any], ...]

    @property
    def records(self) -> list[dict[str, Any]]:
        return self.result.records

    @property
    def red_team(self) -> int:
        return sum(1 for r in self.records if not r["helpful"])

    @property
    def stops(self) -> dict[str, int]:
        """How many records stopped for each reason (sorted by reason)."""
        counts: dict[str, int] = {}
        for r in self.records:
            counts[r["stopped"]] = counts.get(r["stopped"], 0) + 1
        return dict(sorted(counts.items()))

    @property
    def held_ids(self) -> tuple[str, ...]:
        return tuple(sorted(r["id"] for r in self.held))


def sl_data(
    source: str | Path,
    deployment: str,
    target: str,
    out: Path,
    budget: SLBudget = SLBudget(),
    *,
    progress: bool = True,
    smt_budget: Budget | None = None,
) -> SLData:
    """Run SL-CAI on a seeded sample of the packaged prompts into ``out/sl-data.jsonl`` (resumable; the
    constitution checked within ``smt_budget``)."""
    job = prepare_job(source, deployment, target, smt_budget=smt_budget)
    program = job.program
    rounds = min(budget.rounds, program.critique_revision.rounds) if program.critique_revision.rounds else 0
    items = sample_prompts(budget.prompts, seed=program.provenance.seed, helpful_fraction=budget.helpful_fraction,
                           lookalike_fraction=budget.lookalike_fraction)
    # one chunk, one batch per stage: the shared preamble runs once per stage (see BatchedGenerator)
    options = SLOptions(rounds=rounds, max_new_tokens=budget.max_new_tokens, batch_size=budget.prompts, chunk_size=budget.prompts,
                        gate=budget.gate)
    result = run_sl(job, items, Path(out), options=options, progress=progress)
    revised = [r for r in result.records if not r["helpful"] and any(t.get("revision") for t in r["rounds"])]
    held = sorted(revised, key=lambda r: seeded_rank(program.provenance.seed, "held:" + r["id"]))[: budget.held_out]
    return SLData(job=job, result=result, rounds=rounds, max_new_tokens=budget.max_new_tokens, held=tuple(held))


@dataclass(frozen=True)
class SLFinetune:
    """Stage 3b: the LoRA adapter trained on the revisions (held-out records excluded)."""

    sft: SFTResult


def sl_finetune(out: Path, data: SLData, budget: SLBudget = SLBudget(), *, progress: bool = True) -> SLFinetune:
    """LoRA SFT on ``out``'s SL-CAI data into ``out/adapter`` (skipped when up to date, resumable)."""
    options = SFTOptions(exclude_ids=data.held_ids, max_steps=budget.sft_steps, helpful_repeats=budget.helpful_repeats)
    return SLFinetune(sft=train_sft(out, options=options, progress=progress))


@dataclass(frozen=True)
class SLEvaluation:
    """Stage 3c: base vs adapted model on the held-out prompts (``report`` as in ``sl-eval.json``)."""

    path: Path
    report: Mapping[str, Any]


def sl_evaluate(out: Path, data: SLData, tuned: SLFinetune) -> SLEvaluation | None:
    """Evaluate the adapter on the held-out records into ``out/sl-eval.json``; reused while the adapter's
    fingerprint is unchanged. None when no revised record was held out; without an adapter (0 accepted targets,
    SFT skipped) the report says there is no SL model and so no effect (``sl_model: null``)."""
    if not data.held:
        return None
    program, sft = data.job.program, tuned.sft
    path = out / "sl-eval.json"
    if not sft.trained:
        report = {"held_out": len(data.held), "sl_model": None, "effect": None, "reason": sft.no_targets, "examples": []}
        write_json_atomic(path, report)
        return SLEvaluation(path=path, report=report)
    fingerprint = sft.manifest.get("fingerprint")
    cached = None
    with contextlib.suppress(OSError, ValueError):
        cached = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(cached, dict) and cached.get("adapter_fingerprint") == fingerprint:
        return SLEvaluation(path=path, report=cached)
    train = [r for r in data.records if not r["helpful"] and r["id"] not in data.held_ids]
    started = time.perf_counter()
    base = sft.manifest.get("base_model") or program.run.models.policy
    report = evaluate_adapter(program, base, sft.adapter, list(data.held), train, max_new_tokens=data.max_new_tokens)
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["adapter_fingerprint"] = fingerprint
    write_json_atomic(path, report)
    return SLEvaluation(path=path, report=report)
