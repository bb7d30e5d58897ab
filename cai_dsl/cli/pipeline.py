"""`cai run`: the main job, end to end on the embedded default model.

The stages live in :mod:`cai_dsl.pipeline` and return results; this module prints a one-line summary
of each and picks the exit code:
1. check the standard library: parse, resolve, lint (zero errors) and run its tests;
2. compile the chosen deployment for the target;
3. SL-CAI on a small prompt sample, LoRA fine-tuning, and a before/after summary;
4. RLAIF: AI feedback labels, a preference model, PPO, evaluation and an HTML report.
Every stage resumes: rerunning with the same --out skips finished work.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from cai_dsl.cli.common import print_diagnostics
from cai_dsl.cli.errors import report_error
from cai_dsl.core.errors import EXIT_OK, CaiError
from cai_dsl.pipeline import main as stages
from cai_dsl.pipeline import rlaif

__all__ = ["register", "run_command", "run_rl_stage", "run_sl_stage"]


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)


def _say(message: str) -> None:
    print(message, flush=True)


def _short(text: str, width: int = 110) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _delta(a: float | None, b: float | None) -> str:
    return f"{b - a:+.3f}" if a is not None and b is not None else "n/a"


# ---------------------------------------------------------------------------------------------- SL-CAI


def _print_sl_data(data: stages.SLData) -> None:
    r, records = data.result, data.records
    _say(
        f"[sl 1/3] SL-CAI data: {len(records)} prompts ({data.red_team} red-team, {len(records) - data.red_team} helpful), "
        f"{data.rounds} round(s), {data.max_new_tokens} new tokens: {r.new} new record(s), {r.resumed} resumed, "
        f"in {r.seconds:.1f} s ({r.tokens_per_second:.1f} generated tok/s) -> {r.path}"
    )
    _say("         stopped: " + ", ".join(f"{v} {k}" for k, v in data.stops.items()))


def _print_sl_finetune(tuned: stages.SLFinetune) -> None:
    sft = tuned.sft
    resumed = f", resumed from {Path(sft.resumed_from).name}" if sft.resumed_from else ""
    what = "up to date, skipped" if sft.skipped else f"{sft.seconds:.1f} s{resumed}"
    _say(
        f"[sl 2/3] LoRA SFT: {sft.examples} examples, {sft.steps} steps, final loss {sft.loss} ({what}) -> {sft.adapter} "
        "(model card: README.md)"
    )


def _print_sl_evaluation(out: Path, data: stages.SLData, tuned: stages.SLFinetune, ev: stages.SLEvaluation) -> None:
    e = ev.report
    _say(
        f"[sl 3/3] evaluation on {e['held_out']} held-out prompt(s): mean log-prob per token of their revisions "
        f"{e['base_logprob_held_out']} (base) -> {e['adapted_logprob_held_out']} (adapted), "
        f"{_delta(e['base_logprob_held_out'], e['adapted_logprob_held_out'])}; on the {e['train']} training "
        f"revisions {e['base_logprob_train']} -> {e['adapted_logprob_train']} "
        f"({_delta(e['base_logprob_train'], e['adapted_logprob_train'])})"
    )
    for example in e["examples"]:
        _say(f"         {example['id']}: {_short(example['prompt'])}")
        _say(f"           base:    {_short(example['base'])}")
        _say(f"           adapted: {_short(example['adapted'])}")
    _say(f"         artifacts: {data.result.path}, {tuned.sft.adapter}/, {ev.path}, {out / 'program.json'}")


def run_sl_stage(
    source: str | Path,
    deployment: str,
    target: str,
    out: Path,
    budget: stages.SLBudget = stages.SLBudget(),
    *,
    progress: bool = True,
) -> int:
    """`cai run`'s SL-CAI stage with its summary printed; returns the exit code."""
    out = Path(out)
    try:
        data = stages.sl_data(source, deployment, target, out, budget, progress=progress)
        _print_sl_data(data)
        tuned = stages.sl_finetune(out, data, budget, progress=progress)
        _print_sl_finetune(tuned)
        ev = stages.sl_evaluate(out, data, tuned)
    except CaiError as exc:
        return report_error(exc)
    if ev is None:
        _say("[sl 3/3] evaluation skipped: no revised record to hold out")
    else:
        _print_sl_evaluation(out, data, tuned, ev)
    return EXIT_OK


# ---------------------------------------------------------------------------------------------- RLAIF


def _rl_stages(program, base: Path, sl_adapter: Path | None, budget: rlaif.JobBudget) -> None:
    t = time.perf_counter()
    labels = rlaif.rl_label(program, base, sl_adapter, budget)
    s = labels.summary
    _say(f"[rl 1/5] labelled {s.records} pairs ({s.new} new, {s.pairs_per_second:.2f} pairs/s), "
         f"mean confidence {s.mean_confidence:.3f}: {s.path} ({time.perf_counter() - t:.0f} s)")

    t = time.perf_counter()
    pm = rlaif.rl_preference_model(program, base, labels, budget)
    acc = f"{pm.accuracy:.2f}" if pm.accuracy is not None else "n/a"
    _say(f"[rl 2/5] preference model: {pm.train_pairs} train / {pm.eval_pairs} held-out pairs, held-out accuracy "
         f"{acc}{' (reused)' if pm.reused else ''}: {pm.path} ({time.perf_counter() - t:.0f} s)")

    t = time.perf_counter()
    ppo = rlaif.rl_ppo(program, base, labels, sl_adapter, budget, log=_say)
    first, last = (ppo.metrics[0], ppo.metrics[-1]) if ppo.metrics else ({}, {})
    nan = float("nan")
    _say(f"[rl 3/5] PPO {ppo.steps} steps: reward {first.get('reward', nan):.3f} -> {last.get('reward', nan):.3f}, "
         f"KL {last.get('kl', nan):.3f}: {ppo.policy} ({time.perf_counter() - t:.0f} s)")

    t = time.perf_counter()
    path = rlaif.rl_evaluate(program, base, sl_adapter, ppo, budget, log=lambda m: _say("         " + m))
    _say(f"[rl 4/5] evaluation: {path} ({time.perf_counter() - t:.0f} s)")

    _say(f"[rl 5/5] report: {rlaif.rl_report(base)}")


def run_rl_stage(
    source: str | Path,
    deployment: str,
    target: str,
    out: Path,
    sl_adapter: Path | None,
    budget: rlaif.JobBudget | None = None,
) -> int:
    """`cai run`'s RL-CAI stage into ``out/rlaif`` with its summary printed; returns the exit code."""
    budget = budget or rlaif.JobBudget()
    base = Path(out) / "rlaif"
    try:
        compiled = stages.compile_stage(Path(source), deployment, target, Path(out))
    except CaiError as exc:
        errors = [d for d in getattr(exc, "diagnostics", None) or () if d.is_error]
        if errors:
            print_diagnostics(errors, {})
            return exc.exit_code
        return report_error(exc, prog="cai run")
    program = compiled.program
    if not program.comparison.pool:
        _say(f"[rl] deployment `{deployment}` has no compare principles: RL-CAI skipped")
        return EXIT_OK
    started = time.perf_counter()
    try:
        _rl_stages(program, base, sl_adapter, budget)
    except CaiError as exc:
        return report_error(exc, prog="cai run")
    _say(f"[rl] RL-CAI stage done in {time.perf_counter() - started:.0f} s; report: {base / 'report.html'}")
    return EXIT_OK


# ---------------------------------------------------------------------------------------------- cai run


def run_command(
    out: Path = typer.Option(Path("runs/default"), "--out", help="output directory"),
    constitution: Optional[str] = typer.Option(None, "--constitution", help="default: the standard library's anthropic-2022.const"),
    deployment: str = typer.Option("base", "--deployment", "-d"),
    target: str = typer.Option("smollm2-cpu", "--target"),
) -> None:
    """Run the main job: check the standard library, compile, then train where available."""
    start = time.perf_counter()
    library = stages.check_library()
    for checked in library.files:
        print_diagnostics(list(checked.errors), dict(checked.sources))
    print(f"[1] standard library: {len(library.files)} files linted, {library.errors} errors; "
          f"tests {library.passed} passed, {library.failed} failed")
    if not library.ok:
        raise SystemExit(1)
    source = Path(constitution) if constitution else stages.default_constitution()
    try:
        compiled = stages.compile_stage(source, deployment, target, out)
    except CaiError as exc:
        raise SystemExit(report_error(exc)) from None
    print(f"[2] compiled {source.name} [{deployment}] for {target}: {compiled.path} ({len(compiled.program.principles)} principles)")
    print("[3] SL-CAI: generate -> critique -> revise -> LoRA SFT")
    code = run_sl_stage(source, deployment, target, out)
    if code != EXIT_OK:
        raise SystemExit(code)
    print("[4] RLAIF: AI feedback labels -> preference model -> PPO -> evaluation -> report")
    adapter = out / "adapter"
    code = run_rl_stage(source, deployment, target, out, adapter if adapter.is_dir() else None)
    print(f"done in {time.perf_counter() - start:.1f} s")
    raise SystemExit(code)
