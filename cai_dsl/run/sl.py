"""SL-CAI: the supervised critique -> revision stage of Constitutional AI, driven by a compiled program.

For each prompt: an initial response from the policy model; scenario tags (the data's ``scenario``
field, else the program's scenario classifier scored with ``backend.score``); then for each round
the program's principle(s), a critique by the critic model, the stop rule (``program.is_satisfied``)
and a revision — or, where the resolved policy requires a behavior the response lacks, a revision
started from that behavior's canonical opening (no critique). Each revision passes the gate of
:mod:`cai_dsl.run.sl_gate` (quality, policy score not lowered) or is rejected, and each record names
its SFT ``target`` (the last accepted revision, a checked initial response, or none). Every stage is batched across prompts (the backend sorts rows by length), and the
long few-shot preamble that all critique and revision prompts share is run once and its KV cache
reused by every batch (:class:`BatchedGenerator`).

Output: ``DIR/sl-data.jsonl``, one complete record per prompt (see ``docs/execution.md``), written
through :class:`cai_dsl.core.records.RecordFile`: a record is appended (and fsynced) only once it is
complete, so a job killed at any point (even ``kill -9``) and rerun with the same arguments continues
where it stopped, with no record lost or duplicated.

Determinism: prompts are processed in fixed *chunks* (a partition of the prompt list that depends
only on the arguments); each generation call is seeded from the program seed and the chunk, and a
chunk that is incomplete on resume is recomputed whole (only its missing records are appended). So
a resumed run writes exactly the records an uninterrupted one would, sampling included.

Entry points: :func:`prepare_job` + :func:`run_sl` (``cai sl``), :func:`revise_once` (``cai revise``),
:func:`make_transform` (``cai serve --constitution``); ``cai run``'s stage is
:func:`cai_dsl.pipeline.main.sl_data`.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cai_dsl.compile.ir import Program
from cai_dsl.core.files import write_atomic, write_json_atomic
from cai_dsl.core.hashing import RunMismatch, sha256_text
from cai_dsl.core.progress import Advance, progress
from cai_dsl.core.records import RecordFile
from cai_dsl.run.adapter_eval import evaluate_adapter
from cai_dsl.run.data import DATA_FILE, PromptItem, load_prompts
from cai_dsl.run.data import sample_prompts as default_prompts
from cai_dsl.run.errors import SLCompileError, SLError
from cai_dsl.run.generation import BatchedGenerator
from cai_dsl.run.prepare import Job, prepare_job
from cai_dsl.run.revise import make_transform, revise_once
from cai_dsl.run.sl_gate import Acceptance, RevisionGate, acceptance_rates
from cai_dsl.run.sl_loop import ModelSet, SLOptions, SLRunner

__all__ = [
    "BatchedGenerator",
    "DATA_FILE",
    "Job",
    "ModelSet",
    "PromptItem",
    "SLCompileError",
    "SLError",
    "SLOptions",
    "SLResult",
    "SLRunner",
    "RevisionGate",
    "default_prompts",
    "evaluate_adapter",
    "load_prompts",
    "make_transform",
    "prepare_job",
    "revise_once",
    "run_sl",
]


RECORD_VERSION = 3


@dataclass
class SLResult:
    """What :func:`run_sl` did: the data file, its records (in prompt order) and counts.

    ``gated``: revisions went through the :class:`~cai_dsl.run.sl_gate.RevisionGate`.
    """

    path: Path
    records: list[dict[str, Any]]
    new: int
    resumed: int
    seconds: float
    tokens: int
    gated: bool = False

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def acceptance(self) -> dict[str, Acceptance]:
        """Gated revisions proposed and accepted, per principle (empty when ungated)."""
        return acceptance_rates(self.records)

    @property
    def excluded(self) -> int:
        """Records with no SFT target (no accepted revision and an initial response that fails the checks)."""
        return sum(1 for r in self.records if not r.get("target"))

    @property
    def openings(self) -> int:
        """Rounds started from a canonical opening."""
        return sum(1 for r in self.records for t in r["rounds"] if t.get("mode") == "opening")


def _provenance(job: Job, models: ModelSet, options: SLOptions) -> dict[str, Any]:
    p = job.program.provenance
    from cai_dsl import __version__

    return {
        "constitution": p.constitution,
        "constitution_version": p.version,
        "source_file": p.root_file,
        "source_hash": p.source_hash,
        "program_hash": p.program_hash,
        "deployment": p.deployment,
        "target": p.target,
        "seed": p.seed,
        "policy_model": models.spec("policy"),
        "critic_model": models.spec("critic"),
        "generation": {
            "max_new_tokens": options.max_new_tokens,
            "temperature": options.temperature,
            "top_p": options.top_p,
            "rounds": options.rounds,
            "history": options.history,
        },
        "cai_dsl_version": __version__,
    }


def _fingerprint(job: Job, items: Sequence[PromptItem], models: ModelSet, options: SLOptions) -> dict[str, Any]:
    prompts = sha256_text(json.dumps([i.to_json() for i in items], sort_keys=True, ensure_ascii=False))
    return {
        "kind": "cai-sl-data",
        "record_version": RECORD_VERSION,
        "source_hash": job.program.provenance.source_hash,
        "program_hash": job.program.provenance.program_hash,
        "deployment": job.deployment,
        "target": job.target,
        "prompts_sha256": prompts,
        "prompts": len(items),
        "models": {r: models.spec(r) for r in ("policy", "critic", "classifier")},
        "rounds": options.rounds,
        "max_new_tokens": options.max_new_tokens,
        "temperature": options.temperature,
        "top_p": options.top_p,
        "batch_size": options.batch_size,
        "chunk_size": options.chunk_size,
        "history": options.history,
        "gate": options.gate,
        "openings": options.openings,
        "trim": options.trim,
        "opening_tries": options.opening_tries,
    }


def _record(item: PromptItem, result: dict[str, Any], provenance: dict[str, Any], program: Program) -> dict[str, Any]:
    scenario = result["scenario"]
    return {
        "id": item.id,
        "prompt": item.prompt if isinstance(item.prompt, str) else [dict(m) for m in item.prompt],
        "helpful": item.helpful,
        "scenario": scenario,
        "scenario_source": result["scenario_source"],
        "reachable": program.reachable(scenario) if scenario else None,
        "initial": result["initial"],
        "rounds": result["rounds"],
        "final": result["final"],
        "target": result["target"],
        "target_source": result["target_source"],
        "target_check": result["target_check"],
        "stopped": result["stopped"],
        "tokens": result["tokens"],
        "trimmed": result["trimmed"],
        "provenance": provenance,
    }


class _SLProgress:
    """The :class:`SLRunner` progress interface on one bar of records, with the running stage (and its
    token rate) as a nested bar."""

    def __init__(self, bar: Advance):
        self.bar = bar
        self._stage = contextlib.ExitStack()

    def stage(self, name: str, total: int) -> Callable[[int, int], None]:
        self.done_stage()
        task = self._stage.enter_context(self.bar.task(name, total, unit="rows", rate_unit="tok"))
        return lambda rows, tokens: task(rows, rate=tokens)

    def done_stage(self) -> None:
        self._stage.close()

    def records(self, n: int) -> None:
        self.bar(n)


@contextlib.contextmanager
def _progress(enabled: bool, total: int, done: int, label: str = "SL-CAI prompts") -> Iterator[_SLProgress]:
    with progress(total, label, unit="prompts", done=done, enabled=enabled) as bar:
        view = _SLProgress(bar)
        try:
            yield view
        finally:
            view.done_stage()


def run_sl(
    job: Job,
    items: Sequence[PromptItem],
    out_dir: str | os.PathLike[str],
    *,
    options: SLOptions | None = None,
    models: ModelSet | None = None,
    progress: bool = True,
) -> SLResult:
    """Run SL-CAI over ``items`` into ``out_dir/sl-data.jsonl`` (resumable; see the module docstring).

    Also writes ``out_dir/program.json`` (the compiled program) and ``out_dir/sources.json`` (the
    constitution's source texts), which the SFT stage embeds in the adapter's model card.
    """
    if not items:
        raise SLError("no prompts to run")
    ids = [i.id for i in items]
    if len(set(ids)) != len(ids):
        raise SLError("prompt ids must be unique")
    program = job.program
    opts = (options or SLOptions()).resolved(program)
    if opts.rounds is not None and opts.rounds < 0:
        raise SLError("--rounds must be >= 0")
    models = models or ModelSet(program, batch_size=opts.batch_size, prefix_cache=opts.prefix_cache)
    gate = None
    if opts.gate:
        if job.constitution is None:
            raise SLError("gated SL-CAI needs the job's constitution (prepare the job with prepare_job)")
        gate = RevisionGate.of(job.constitution, job.deployment, program)
    runner = SLRunner(program, models, opts, gate=gate)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise SLError(f"{out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    try:
        records = RecordFile(out / DATA_FILE, fingerprint=_fingerprint(job, items, models, opts))
    except RunMismatch as exc:
        raise SLError(str(exc)) from None
    write_atomic(out / "program.json", program.to_json())
    write_json_atomic(out / "sources.json", job.sources)
    provenance = _provenance(job, models, opts)
    resumed = sum(1 for i in items if records.done(i.id))
    start = time.perf_counter()
    new = tokens = 0
    chunk = int(opts.chunk_size or 32)
    with _progress(progress, len(items), resumed) as bar:
        for c, first in enumerate(range(0, len(items), chunk)):
            part = list(items[first : first + chunk])
            if all(records.done(i.id) for i in part):
                continue
            key = f"chunk:{c}:" + sha256_text("\n".join(i.id for i in part))[:16]
            results = runner.run_chunk(part, key, progress=bar)
            for item, result in zip(part, results, strict=True):
                tokens += sum(result["tokens"].values())
                if records.done(item.id):
                    continue
                records.append(_record(item, result, provenance, program))
                new += 1
                bar.records(1)
    ordered = [records.records[i.id] for i in items]
    return SLResult(
        path=out / DATA_FILE,
        records=ordered,
        new=new,
        resumed=resumed,
        seconds=time.perf_counter() - start,
        tokens=tokens,
        gated=gate is not None,
    )

