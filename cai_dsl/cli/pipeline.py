"""`cai run`: the main job, end to end on the embedded default model.

The stages live in :mod:`cai_dsl.pipeline` and return results; this module prints a one-line summary
of each and picks the exit code:
1. check the standard library: parse, resolve, lint (zero errors) and run its tests;
2. compile the chosen deployment for the target;
3. SL-CAI on a train sample (red team, helpful, benign look-alikes), gated revisions, LoRA fine-tuning;
4. RL-CAI: labels, a preference model, PPO; then base -> SL -> RL on held-out prompts (rates with intervals,
   paired tests, an independent judge) with the verdict against the target, and an HTML report.
Every stage resumes: rerunning with the same --out skips finished work.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from cai_dsl.cli.common import SMT_BUDGET, SMT_TIMEOUT, lint_config, print_diagnostics
from cai_dsl.cli.errors import report_error
from cai_dsl.core.errors import EXIT_OK, CaiError
from cai_dsl.core.memory import release_freed_memory
from cai_dsl.pipeline import effect as effect_mod
from cai_dsl.pipeline import main as stages
from cai_dsl.pipeline import rlaif
from cai_dsl.run.eval.verdict import align
from cai_dsl.run.feedback import LabelSummary
from cai_dsl.run.sl_gate import acceptance_rates
from cai_dsl.run.train.rl_stage import RLResult
from cai_dsl.semantics.budget import Budget

__all__ = ["print_effect", "register", "run_command", "run_rl_stage", "run_sl_stage"]


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
    rates = acceptance_rates(records)
    if rates:
        proposed, accepted = sum(a.proposed for a in rates.values()), sum(a.accepted for a in rates.values())
        _say(f"         gate: {accepted}/{proposed} revisions accepted, {proposed - accepted} rejected (never trained on); "
             + ", ".join(f"{a.principle} {a.accepted}/{a.proposed}" for a in rates.values()))


def _print_sl_finetune(tuned: stages.SLFinetune) -> None:
    sft = tuned.sft
    if not sft.trained:
        _say(f"[sl 2/3] LoRA SFT: {sft.no_targets}")
        return
    resumed = f", resumed from {Path(sft.resumed_from).name}" if sft.resumed_from else ""
    what = "up to date, skipped" if sft.skipped else f"{sft.seconds:.1f} s{resumed}"
    _say(
        f"[sl 2/3] LoRA SFT: {sft.examples} examples, {sft.steps} steps, final loss {sft.loss} ({what}) -> {sft.adapter} "
        "(model card: README.md)"
    )


def _print_sl_evaluation(out: Path, data: stages.SLData, tuned: stages.SLFinetune, ev: stages.SLEvaluation) -> None:
    e = ev.report
    if e.get("sl_model", True) is None:
        _say(f"[sl 3/3] evaluation on {e['held_out']} held-out prompt(s): no SL model (SFT skipped), so no effect "
             f"to measure -> {ev.path}")
        _say(f"         artifacts: {data.result.path}, {ev.path}, {out / 'program.json'}")
        return
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
    smt_budget: Budget | None = None,
) -> int:
    """`cai run`'s SL-CAI stage with its summary printed (the check within ``smt_budget``); returns the exit code."""
    out = Path(out)
    try:
        data = stages.sl_data(source, deployment, target, out, budget, progress=progress, smt_budget=smt_budget)
        release_freed_memory()  # each stage frees its models: hand their pages back before the next loads its own
        _print_sl_data(data)
        tuned = stages.sl_finetune(out, data, budget, progress=progress)
        release_freed_memory()
        _print_sl_finetune(tuned)
        ev = stages.sl_evaluate(out, data, tuned)
        release_freed_memory()
    except CaiError as exc:
        return report_error(exc)
    if ev is None:
        _say("[sl 3/3] evaluation skipped: no revised record to hold out")
    else:
        _print_sl_evaluation(out, data, tuned, ev)
    return EXIT_OK


# ---------------------------------------------------------------------------------------------- RLAIF


def print_effect(effect: "effect_mod.Effect", indent: str = "         ") -> None:
    """The base -> SL -> RL table (markers, then the independent judge), agreement, win rate and the verdict."""
    ev = effect.evaluation
    sizes = ", ".join(f"{len(ids)} {name}" for name, ids in ev.sets.items())
    _say(f"{indent}held-out prompts: {sizes}; greedy, {ev.max_new_tokens} new tokens; rates with 95% Wilson intervals, "
         "paired exact McNemar tests")
    for line in align(effect.table):
        _say(indent + line)
    if ev.judge_behaviors:
        _say(f"{indent}independent judge (yes/no questions of {', '.join(ev.judge_behaviors)}, base model log-probs):")
        for line in align(effect.judge_table):
            _say(indent + line)
        agreement = ", ".join(f"{a.metric} kappa {a.kappa:.2f} ({a.agree:.0%} agree, n={a.n})" for a in ev.agreement if a.kappa is not None)
        if agreement:
            _say(f"{indent}markers vs judge: {agreement}")
    if ev.comparison is not None:
        wins = ", ".join(f"{m.name} {m.win_rate:.2f}" for m in ev.models if m.win_rate is not None)
        c = ev.comparison
        flag = "" if c.has_signal else " -- NO SIGNAL: the feedback model's votes do not agree across the two orders above chance; ignore these win rates"
        _say(f"{indent}comparison-program win rate: {wins} (order-consistent votes {c.consistent.k}/{c.consistent.n}, p={c.p:.3g}){flag}")
    _say(f"{indent}{effect.verdict.line}")


def _num(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def _print_label_signal(s: LabelSummary) -> None:
    """The feedback model's signal (order consistency, position bias, option mass, verdict) and label sources."""
    sources = ", ".join(f"{v} {k}" for k, v in sorted(s.sources.items())) or "none"
    if s.signal is None:
        _say(f"         label sources: {sources}; {s.no_signal} no-signal label(s)")
        return
    g = s.signal
    ci = f" (95% CI {g.consistency_ci[0]:.2f}-{g.consistency_ci[1]:.2f})" if g.consistency_ci else ""
    _say(f"         feedback model: order-consistent {g.consistent}/{g.comparisons}{ci}, p={_num(g.p_value, '.3g')} vs chance 0.5; "
         f"position bias P(A) {_num(g.position_bias, '.2f')}; option mass {_num(g.option_mass, '.2f')}")
    _say(f"         signal: {'yes' if g.has_signal else 'NO'} ({g.reason}); feedback weight {g.feedback_weight:.2f}; "
         f"label sources {sources}; {s.no_signal} no-signal label(s)")


def _print_rl(rl: RLResult, seconds: float) -> None:
    """PPO's reward, KL, entropy and degenerate share per step (DPO: its reward margin and entropy)."""
    stopped = f", stopped early ({rl.stopped})" if rl.stopped else ""
    if rl.algo == "dpo":
        _say(f"[rl 3/5] DPO {rl.steps} steps: {rl.adapter} ({seconds:.0f} s)")
        for i, (margin, ent) in enumerate(zip(rl.reward, rl.entropy), start=1):
            _say(f"         step {i}: reward margin (chosen - rejected) {_num(margin)}, entropy {_num(ent)}")
        return
    _say(f"[rl 3/5] {rl.algo.upper()} {rl.steps} steps, reward `{rl.reward_source}`{stopped}: {rl.adapter} ({seconds:.0f} s)")
    for i, (r, kl, ent, deg) in enumerate(zip(rl.reward, rl.kl, rl.entropy, rl.degenerate), start=1):
        _say(f"         step {i}: reward {_num(r)}, KL {_num(kl)}, entropy {_num(ent)}, degenerate {_num(deg, '.0%')}")


def _rl_stages(program, scorer, base: Path, sl_adapter: Path | None, budget: rlaif.JobBudget) -> "effect_mod.Effect":
    t = time.perf_counter()
    labels = rlaif.rl_label(program, scorer, base, sl_adapter, budget)
    release_freed_memory()
    s = labels.summary
    _say(f"[rl 1/5] labelled {s.records} pairs ({s.new} new, {s.pairs_per_second:.2f} pairs/s), "
         f"mean confidence {s.mean_confidence:.3f}: {s.path} ({time.perf_counter() - t:.0f} s)")
    _print_label_signal(s)

    t = time.perf_counter()
    if budget.rl_algo == "dpo":
        records = rlaif.sl_records(base.parent)
        onpolicy = rlaif.rl_onpolicy(program, scorer, base, labels, records, sl_adapter, budget)
        if onpolicy is not None:
            _say(f"[rl 2/5] on-policy: base and SL answered {onpolicy.answers} unused training prompts greedily; the SL "
                 f"model's mistakes became {onpolicy.harmful} harmful-compliance pairs (learned refusal over its answer) + "
                 f"{onpolicy.over_refusal} over-refusal pairs (the base answer over its refusal), balanced by "
                 f"{onpolicy.answer} of its good answers over a learned refusal; {onpolicy.dropped} not separated by the "
                 f"policy score, dropped ({time.perf_counter() - t:.0f} s)")
        pairs = rlaif.rl_dpo_pairs(program, scorer, base, labels, records, onpolicy)
        c = pairs.contrast
        _say(f"[rl 2/5] DPO pairs: {len(pairs.pairs)} = {pairs.labels} labelled with a preference + {c.revision} revision "
             f"(revision over initial) + {c.refusal} refusal (learned refusal over initial) + {c.over_refusal} "
             f"over-refusal (answer over a learned refusal) contrast pairs from the SL data; "
             f"{c.dropped} not separated by the policy score, dropped")
        t = time.perf_counter()
        rl = rlaif.rl_dpo(program, base, pairs, sl_adapter, budget, log=_say)
    else:
        pm = rlaif.rl_preference_model(program, base, labels, budget)
        _say(f"[rl 2/5] preference model: {pm.train_pairs} train / {pm.eval_pairs} held-out pairs"
             f"{' (reused)' if pm.reused else ''}: {pm.path} ({time.perf_counter() - t:.0f} s)")
        _say(f"         {pm.verdict}")
        t = time.perf_counter()
        rl = rlaif.rl_ppo(program, scorer, base, labels, sl_adapter, budget, log=_say)
    release_freed_memory()
    _print_rl(rl, time.perf_counter() - t)

    signal = s.signal.has_signal if s.signal is not None else None
    effect = rlaif.rl_evaluate(program, scorer, base, sl_adapter, rl.adapter, budget, feedback_signal=signal)
    release_freed_memory()
    _say(f"[rl 4/5] evaluation: {effect.path} ({effect.seconds:.0f} s)")
    print_effect(effect)

    _say(f"[rl 5/5] report: {rlaif.rl_report(base)}")
    return effect


def _rl_job(source, deployment: str, target: str, out: Path, sl_adapter: Path | None, budget: rlaif.JobBudget,
            smt_budget: Budget | None = None):
    """The RL-CAI stage: (exit code, the evaluation's Effect or None)."""
    base = Path(out) / "rlaif"
    try:
        compiled = stages.compile_stage(Path(source), deployment, target, Path(out), smt_budget)
    except CaiError as exc:
        errors = [d for d in getattr(exc, "diagnostics", None) or () if d.is_error]
        if errors:
            print_diagnostics(errors, {})
            return exc.exit_code, None
        return report_error(exc, prog="cai run"), None
    program = compiled.program
    if not program.comparison.pool:
        _say(f"[rl] deployment `{deployment}` has no compare principles: RL-CAI skipped")
        return EXIT_OK, None
    started = time.perf_counter()
    try:
        effect = _rl_stages(program, effect_mod.policy_scorer(source, deployment), base, sl_adapter, budget)
    except CaiError as exc:
        return report_error(exc, prog="cai run"), None
    _say(f"[rl] RL-CAI stage done in {time.perf_counter() - started:.0f} s; report: {base / 'report.html'}")
    return EXIT_OK, effect


def run_rl_stage(
    source: str | Path,
    deployment: str,
    target: str,
    out: Path,
    sl_adapter: Path | None,
    budget: rlaif.JobBudget | None = None,
    smt_budget: Budget | None = None,
) -> int:
    """`cai run`'s RL-CAI stage into ``out/rlaif`` with its summary printed (compiled within ``smt_budget``);
    returns the exit code."""
    return _rl_job(source, deployment, target, out, sl_adapter, budget or rlaif.JobBudget(), smt_budget)[0]


# ---------------------------------------------------------------------------------------------- cai run


def run_command(
    out: Path = typer.Option(Path("runs/default"), "--out", help="output directory"),
    constitution: Optional[str] = typer.Option(None, "--constitution", help="default: the standard library's harmless-helpful.const"),
    deployment: str = typer.Option("base", "--deployment", "-d"),
    target: str = typer.Option("smollm2-cpu", "--target"),
    smt_timeout: Optional[float] = SMT_TIMEOUT,
    smt_budget: Optional[float] = SMT_BUDGET,
) -> None:
    """Run the main job: check the standard library, compile, SL-CAI, RL-CAI, then the base -> SL -> RL table
    on held-out prompts and the verdict against the target. Each check (library, compile, SL, RL) has its own
    SMT budget (a run budget's clock is wall time, and training lies between them); a check that could hide
    an error and is not decided in time stops the run (CAI220, exit 1)."""
    start = time.perf_counter()
    times: dict[str, float] = {}
    smt = lint_config(smt_timeout, smt_budget)
    library = stages.check_library(smt_budget=smt.budget())
    for checked in library.files:
        print_diagnostics(list(checked.errors), dict(checked.sources))
    times["check"] = time.perf_counter() - start
    print(f"[1] standard library: {len(library.files)} files linted, {library.errors} errors; "
          f"tests {library.passed} passed, {library.failed} failed ({times['check']:.0f} s)")
    if not library.ok:
        raise SystemExit(1)
    source = Path(constitution) if constitution else stages.run_constitution()
    t = time.perf_counter()
    try:
        compiled = stages.compile_stage(source, deployment, target, out, smt.budget())
    except CaiError as exc:
        raise SystemExit(report_error(exc)) from None
    times["compile"] = time.perf_counter() - t
    print(f"[2] compiled {source.name} [{deployment}] for {target}: {compiled.path} "
          f"({len(compiled.program.principles)} principles, {times['compile']:.0f} s)")
    print("[3] SL-CAI: generate -> gate (quality, policy score) / canonical openings -> LoRA SFT")
    t = time.perf_counter()
    code = run_sl_stage(source, deployment, target, out, smt_budget=smt.budget())
    times["SL-CAI"] = time.perf_counter() - t
    if code != EXIT_OK:
        raise SystemExit(code)
    budget = rlaif.JobBudget()
    step = ("DPO on policy-scored labels and contrast pairs" if budget.rl_algo == "dpo" else "preference model -> PPO")
    print(f"[4] RL-CAI: labels (signal check) -> {step} -> held-out evaluation base -> SL -> RL -> report")
    adapter = out / "adapter"
    t = time.perf_counter()
    code, effect = _rl_job(source, deployment, target, out, adapter if adapter.is_dir() else None, budget, smt.budget())
    times["RL-CAI + evaluation"] = time.perf_counter() - t
    if effect is not None:
        times["evaluation"] = effect.seconds
    print("stage times: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()))
    if effect is not None:
        print(effect.verdict.line)
    print(f"done in {time.perf_counter() - start:.1f} s")
    raise SystemExit(code)
