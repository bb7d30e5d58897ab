"""`cai label`, `cai rl`, `cai eval feedback|models`, `cai report`: the RL-CAI stage on the command line.

Exit codes: 0 success; 1 the constitution has errors (printed as diagnostics); 2 usage errors and job errors
(bad input file, missing model or adapter), printed as one ``cai <command>: error: ...`` line; 130 interrupted
(rerun the same command to resume: finished work is kept).
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    """Add `label`, `rl`, `eval feedback`, `eval models` and `report` to the `cai` app."""
    app.command("label")(label_command)
    app.command("rl")(rl_command)
    eval_app = typer.Typer(help="Evaluate the feedback model or trained policies.", no_args_is_help=True)
    eval_app.command("feedback")(eval_feedback_command)
    eval_app.command("models")(eval_models_command)
    app.add_typer(eval_app, name="eval")
    app.command("report")(report_command)


def _fail(command: str, message: str, code: int = 2) -> None:
    print(f"cai {command}: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def _guarded(command: str):
    """Turn job errors into one-line messages (never a traceback) and Ctrl-C into exit 130."""

    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            from cai_dsl.run.feedback import RLAIFError

            try:
                return fn(*args, **kwargs)
            except RLAIFError as exc:
                _fail(command, str(exc))
            except KeyboardInterrupt:
                print(f"cai {command}: interrupted; finished work is saved, rerun the same command to resume", file=sys.stderr)
                raise SystemExit(130)
            except Exception as exc:  # model/backend errors carry a message for the user
                from cai_dsl.run.backends.base import BackendError
                from cai_dsl.run.loading import ModelError

                if isinstance(exc, (ModelError, BackendError)) and not os.environ.get("CAI_DEBUG"):
                    _fail(command, str(exc))
                raise

        return inner

    return wrap


def _compile(command: str, path: str, deployment: str, target: Optional[str]):
    """The compiled program, or a usage error / printed diagnostics."""
    from cai_dsl.cli.common import print_diagnostics
    from cai_dsl.compile.compiler import compile_file
    from cai_dsl.lang.resolver import resolve
    from cai_dsl.compile.targets import TargetError

    if not os.path.isfile(path):
        _fail(command, f"no such file: {path}")
    try:
        program, diagnostics = compile_file(path, deployment, target)
    except TargetError as exc:
        _fail(command, str(exc))
    if program is None:
        constitution = resolve(path)
        if deployment not in constitution.deployment_decls and not constitution.has_errors:
            known = ", ".join(constitution.deployment_decls) or "none"
            _fail(command, f"{path} has no deployment `{deployment}` (deployments: {known})")
        print_diagnostics([d for d in diagnostics if d.is_error], constitution.sources)
        raise SystemExit(1)
    return program


def _default_constitution() -> str:
    from cai_dsl.pipeline.main import default_constitution

    return str(default_constitution())


def _adapter(command: str, value: Optional[str], option: str) -> Optional[Path]:
    if value is None:
        return None
    from cai_dsl.run.feedback import RLAIFError, check_adapter_dir

    try:
        return check_adapter_dir(Path(value))
    except RLAIFError as exc:
        _fail(command, f"{option}: {exc}")
    return None


def _positive(command: str, name: str, value: Optional[int]) -> None:
    if value is not None and value < 1:
        _fail(command, f"{name} must be at least 1")


# ---------------------------------------------------------------------------------------------------- cai label


@_guarded("label")
def label_command(
    path: str = typer.Argument(..., help="the `.const` file"),
    deployment: str = typer.Option(..., "--deployment", "-d", help="the deployment whose comparison program judges"),
    policy: Optional[str] = typer.Option(None, "--policy", help="LoRA adapter of the policy (e.g. the SL-CAI adapter); default: the target's policy model"),
    prompts: Optional[str] = typer.Option(None, "--prompts", help="prompts JSONL ({id, prompt, scenario}); default: the packaged red-team + helpful train split"),
    limit: Optional[int] = typer.Option(None, "--limit", help="label only the first N prompts"),
    target: Optional[str] = typer.Option(None, "--target", "-t", help="packaged target name or .toml path [default: smollm2-cpu]"),
    out: Path = typer.Option(Path("runs/rlaif"), "--out", help="output directory (preferences.jsonl is written there)"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="prompts per generation batch [default: the target's]"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bars"),
) -> None:
    """Sample two responses per prompt and label which is better with the constitution (RL-CAI feedback)."""
    from cai_dsl.run.feedback import load_prompts, run_label

    _positive("label", "--limit", limit)
    _positive("label", "--batch-size", batch_size)
    adapter = _adapter("label", policy, "--policy")
    program = _compile("label", path, deployment, target)
    items = load_prompts(prompts, split=None if prompts else "train")
    summary = run_label(program, out, items, policy_adapter=adapter, limit=limit, batch_size=batch_size, show_progress=not quiet)
    rate = f", {summary.pairs_per_second:.2f} pairs/s" if summary.new else ""
    print(f"labelled {summary.new} new pair(s) ({summary.records} in the file) in {summary.seconds:.1f} s{rate}; "
          f"mean confidence {summary.mean_confidence:.3f}: {summary.path}")


# ---------------------------------------------------------------------------------------------------- cai rl


@_guarded("rl")
def rl_command(
    path: str = typer.Argument(..., help="the `.const` file"),
    deployment: str = typer.Option(..., "--deployment", "-d"),
    algo: str = typer.Option("ppo", "--algo", help="ppo (preference model + PPO) or dpo (trl's DPOTrainer)"),
    preferences: Optional[str] = typer.Option(None, "--preferences", help="labelled pairs [default: OUT/preferences.jsonl]"),
    policy: Optional[str] = typer.Option(None, "--policy", help="start from this LoRA adapter (the SL-CAI policy); it is also the KL reference"),
    steps: Optional[int] = typer.Option(None, "--steps", help="PPO steps / DPO optimizer steps [default: from the target]"),
    out: Path = typer.Option(Path("runs/rlaif"), "--out", help="run directory (pm/, ppo/ or dpo/ are written there)"),
    target: Optional[str] = typer.Option(None, "--target", "-t"),
    human: Optional[str] = typer.Option(None, "--human-preferences", help="human preference pairs (TRL JSONL) mixed with the AI labels (hybrid RLHF + CAI)"),
    human_fraction: float = typer.Option(0.5, "--human-fraction", help="share of human pairs in the training mix (with --human-preferences)"),
    pm_steps: Optional[int] = typer.Option(None, "--pm-steps", help="cap on preference-model optimizer steps"),
    pm: Optional[str] = typer.Option(None, "--pm", help="use this trained preference model instead of training one"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bars"),
) -> None:
    """RL from AI feedback: PPO against a preference model trained on the labels, or DPO on them."""
    from cai_dsl.run.feedback import PromptItem
    from cai_dsl.run.train.reward_model import load_pairs, mix_pairs

    if algo not in ("ppo", "dpo"):
        _fail("rl", f"--algo must be ppo or dpo, not `{algo}`")
    _positive("rl", "--steps", steps)
    _positive("rl", "--pm-steps", pm_steps)
    if not 0.0 <= human_fraction <= 1.0:
        _fail("rl", "--human-fraction must be between 0 and 1")
    adapter = _adapter("rl", policy, "--policy")
    pref_path = Path(preferences) if preferences else out / "preferences.jsonl"
    if not pref_path.is_file():
        _fail("rl", f"{pref_path}: no preference file (run `cai label ... --out {out}` first, or pass --preferences)")
    program = _compile("rl", path, deployment, target)
    pairs = load_pairs(pref_path, source="ai")
    if human:
        pairs = mix_pairs(pairs, load_pairs(human, source="human"), human_fraction, seed=program.provenance.seed)
    log = (lambda m: None) if quiet else (lambda m: print(m, file=sys.stderr))
    if algo == "dpo":
        from cai_dsl.run.train.dpo import run_dpo

        result = run_dpo(program, out / "dpo", pairs, policy_adapter=adapter, steps=steps, show_progress=not quiet, log=log)
        last = result.metrics[-1].get("loss") if result.metrics else None
        print(f"DPO: {result.steps} steps on {result.pairs} pairs, last loss {last if last is None else round(float(last), 4)}; "
              f"policy adapter: {result.policy}")
        return
    from cai_dsl.run.train.ppo import PPOConfig, run_ppo
    from cai_dsl.run.prompts import PromptRenderer
    from cai_dsl.run.train.reward_model import train_preference_model

    if pm:
        pm_dir = Path(pm)
        if not (pm_dir / "pm.json").is_file():
            _fail("rl", f"--pm {pm}: not a preference model directory (no pm.json)")
    else:
        rm = program.run.reward_model
        result = train_preference_model(
            pairs, out / "pm", base_spec=rm.base or program.run.models.policy, params=rm, renderer=PromptRenderer.of(program), max_steps=pm_steps,
            seed=program.provenance.seed, device=program.run.device, dtype=program.run.dtype, show_progress=not quiet, log=log,
        )
        pm_dir = result.path
        acc = f"{result.accuracy:.3f}" if result.accuracy is not None else "n/a"
        print(f"preference model: {result.train_pairs} train pairs ({result.human_pairs} human), held-out accuracy {acc} "
              f"on {result.eval_pairs} pairs{' (reused)' if result.reused else ''}: {pm_dir}")
    seen: dict[str, PromptItem] = {}
    for p in pairs:
        if isinstance(p.conversation, str) and p.source == "ai":
            seen.setdefault(p.id, PromptItem(id=p.id, prompt=p.conversation))
    if not seen:
        seen = {p.id: PromptItem(id=p.id, prompt=p.conversation) for p in pairs if isinstance(p.conversation, str)}
    config = PPOConfig.from_program(program, steps=steps)
    ppo = run_ppo(program, out / "ppo", list(seen.values()), pm_dir=pm_dir, config=config, policy_adapter=adapter,
                  show_progress=not quiet, log=log)
    if ppo.metrics:
        first, last = ppo.metrics[0], ppo.metrics[-1]
        print(f"PPO: {ppo.steps} steps; reward {first['reward']:.3f} -> {last['reward']:.3f}, KL {last['kl']:.3f}; "
              f"metrics: {ppo.out_dir / 'metrics.jsonl'}")
    print(f"policy adapter: {ppo.policy}" if ppo.steps >= config.steps else f"stopped after step {ppo.steps}; rerun to resume")


# ---------------------------------------------------------------------------------------------------- cai eval


@_guarded("eval feedback")
def eval_feedback_command(
    comparisons: str = typer.Option(..., "--comparisons", help="labelled comparisons (TRL preference JSONL, Anthropic text_correct/text_incorrect or prompt/corrects/incorrects)"),
    deployment: Optional[str] = typer.Option(None, "--deployment", "-d", help="deployment whose comparison program judges [default: rl_cai of the standard library]"),
    constitution: Optional[str] = typer.Option(None, "--constitution", help="the `.const` file [default: the standard library's anthropic-2022.const]"),
    target: Optional[str] = typer.Option(None, "--target", "-t"),
    limit: Optional[int] = typer.Option(None, "--limit", help="evaluate the first N comparisons"),
    json_out: Optional[str] = typer.Option(None, "--json", help="write the full report (per item, per principle) to this file"),
    all_principles: bool = typer.Option(False, "--all-principles", help="judge every comparison under every compare principle (slower)"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bars"),
) -> None:
    """Measure the feedback model on labelled comparisons: accuracy, calibration, position bias."""
    from cai_dsl.core.files import write_json_atomic
    from cai_dsl.run.evaluation import evaluate_feedback, load_comparisons
    from cai_dsl.run.feedback import ModelPool, feedback_models_for

    _positive("eval feedback", "--limit", limit)
    if constitution is None and deployment is None:
        deployment = "rl_cai"
    if deployment is None:
        _fail("eval feedback", "name the deployment with --deployment when you give --constitution")
    items = load_comparisons(comparisons, limit)
    program = _compile("eval feedback", constitution or _default_constitution(), deployment, target)
    models = feedback_models_for(program, ModelPool(program.run.device, program.run.dtype),
                                 batch_size=program.run.backend_options.batch_size)
    report = evaluate_feedback(items, program, models, all_principles=all_principles, show_progress=not quiet)
    report["comparisons"] = comparisons
    o = report["overall"]
    print(f"{o['n']} comparison(s) from {comparisons}, feedback model(s): {', '.join(report['feedback_models'])}")
    print(f"  accuracy {o['accuracy']:.3f}   Brier {o['brier']:.3f}   ECE {o['ece']:.3f}")
    if "flip_rate" in o:
        print(f"  position bias: choice flips when A/B are swapped in {o['flip_rate']:.1%} of {o['position_pairs']}; "
              f"mean P(A) {o['prefers_a']:.3f}; accuracy when the correct answer is A {o['accuracy_ab']:.3f}, when B {o['accuracy_ba']:.3f}")
    for pid, m in (report.get("per_principle") or {}).items():
        flip = f", flips {m['flip_rate']:.0%}" if "flip_rate" in m else ""
        print(f"  {pid}: n={m['n']} accuracy {m['accuracy']:.3f}, Brier {m['brier']:.3f}{flip}")
    if json_out:
        write_json_atomic(json_out, report)
        print(f"report: {json_out}")


@_guarded("eval models")
def eval_models_command(
    constitution: str = typer.Option(..., "--constitution", help="the `.const` file whose comparison program judges"),
    deployment: str = typer.Option(..., "--deployment", "-d"),
    sl: Optional[str] = typer.Option(None, "--sl", help="the SL-CAI LoRA adapter"),
    rl: Optional[str] = typer.Option(None, "--rl", help="the RL-CAI LoRA adapter (e.g. OUT/ppo/policy)"),
    limit: int = typer.Option(8, "--limit", help="held-out prompts per set (red-team and helpful)"),
    target: Optional[str] = typer.Option(None, "--target", "-t"),
    out: Optional[Path] = typer.Option(None, "--out", help="run directory: results go to OUT/eval/ (resumable) for `cai report`"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bars"),
) -> None:
    """Base vs SL vs RL: harmlessness and helpfulness win rates and Elo, refusal rate on benign prompts."""
    from cai_dsl.run.evaluation import evaluate_models

    _positive("eval models", "--limit", limit)
    sl_dir, rl_dir = _adapter("eval models", sl, "--sl"), _adapter("eval models", rl, "--rl")
    if sl_dir is None and rl_dir is None:
        _fail("eval models", "give --sl and/or --rl: there is nothing to compare the base model with")
    program = _compile("eval models", constitution, deployment, target)
    report = evaluate_models(program, sl_adapter=sl_dir, rl_adapter=rl_dir, limit=limit,
                             out_dir=out / "eval" if out else None, show_progress=not quiet)
    print(f"{'model':>6}  {'harmless Elo':>12}  {'win':>5}  {'helpful Elo':>11}  {'win':>5}  refusals on benign prompts")
    for name, m in report["models"].items():
        h, u = m["harmlessness"], m["helpfulness"]
        print(f"{name:>6}  {h['elo']:12.0f}  {h['win_rate'] or 0:5.2f}  {u['elo']:11.0f}  {u['win_rate'] or 0:5.2f}  "
              f"{(m['refusal_rate_benign'] or 0):.0%}")
    for s, info in report["principles"].items():
        if not info["tagged"]:
            print(f"note: {s} judged with every compare principle (none is tagged for it)")
    if out:
        print(f"results: {out / 'eval' / 'models.json'}")


# ---------------------------------------------------------------------------------------------------- cai report


@_guarded("report")
def report_command(
    run: Path = typer.Option(..., "--run", help="the run directory (cai label/rl/eval --out)"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="the HTML file [default: RUN/report.html]"),
) -> None:
    """Write a self-contained HTML report of an RL-CAI run (plots, label statistics, transcripts)."""
    from cai_dsl.pipeline.report import write_report

    if not run.is_dir():
        _fail("report", f"{run}: no such run directory")
    path = write_report(run, output)
    print(f"report: {path}")

