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
    """Add `label`, `rl`, `eval feedback|models|detectors` and `report` to the `cai` app."""
    app.command("label")(label_command)
    app.command("rl")(rl_command)
    from cai_dsl.cli.eval_detectors import eval_detectors_command

    eval_app = typer.Typer(help="Evaluate the feedback model, trained policies or behavior detectors.", no_args_is_help=True)
    eval_app.command("feedback")(eval_feedback_command)
    eval_app.command("models")(eval_models_command)
    eval_app.command("detectors")(eval_detectors_command)
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
    from cai_dsl.cli.common import lint_config, print_diagnostics
    from cai_dsl.compile.compiler import compile_file
    from cai_dsl.lang.resolver import resolve
    from cai_dsl.compile.targets import TargetError

    if not os.path.isfile(path):
        _fail(command, f"no such file: {path}")
    try:
        program, diagnostics = compile_file(path, deployment, target, budget=lint_config(None, None).budget())
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


def _policy_scorer(command: str, path: str, deployment: str):
    """The constitution's policy scorer of ``deployment`` (the compiled rule-based reward)."""
    from cai_dsl.lang.resolver import resolve
    from cai_dsl.run.policy.score import PolicyError, PolicyScorer

    try:
        return PolicyScorer(resolve(path), deployment)
    except PolicyError as exc:
        _fail(command, str(exc))


def signal_lines(signal) -> list[str]:
    """The label signal as printed lines (``cai label``)."""
    def f(v, fmt=".2f"):
        return "n/a" if v is None else format(v, fmt)

    ci = signal.consistency_ci
    verdict = "has signal" if signal.has_signal else "NO SIGNAL"
    return [
        f"feedback signal: {verdict} -> labels from {signal.source} (feedback weight {signal.feedback_weight:.2f}): {signal.reason}",
        f"  order consistency {f(signal.consistency)} ({signal.consistent}/{signal.comparisons}"
        + (f", 95% CI {ci[0]:.2f}-{ci[1]:.2f}" if ci else "") + f", binomial p {f(signal.p_value, '.3g')} vs chance 0.5)",
        f"  position bias: mean P(first option) {f(signal.position_bias)}; option mass P(A)+P(B) {f(signal.option_mass)}",
        f"  debiased labels P(first better): quantiles {', '.join(f'{q:.2f}' for q in signal.label_quantiles or ())}; "
        f"histogram (0-1, 10 bins) {list(signal.label_histogram)}",
    ]


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
    label_source: str = typer.Option("auto", "--label-source", help="auto (by the feedback model's measured signal), feedback or policy (the constitution's policy score)"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bars"),
) -> None:
    """Sample two responses per prompt and label which is better: the feedback model when it has signal,
    else the constitution's policy score (docs/rlaif.md)."""
    from cai_dsl.run.feedback import SignalRule, label_pairs, load_prompts

    _positive("label", "--limit", limit)
    _positive("label", "--batch-size", batch_size)
    if label_source not in ("auto", "feedback", "policy"):
        _fail("label", f"--label-source must be auto, feedback or policy, not `{label_source}`")
    adapter = _adapter("label", policy, "--policy")
    program = _compile("label", path, deployment, target)
    scorer = _policy_scorer("label", path, deployment)
    items = load_prompts(prompts, split=None if prompts else "train", facets=program.facets)
    summary = label_pairs(program, scorer, out, items, signal_rule=SignalRule(source=label_source), policy_adapter=adapter,
                          limit=limit, batch_size=batch_size, show_progress=not quiet)
    rate = f", {summary.pairs_per_second:.2f} pairs/s" if summary.new else ""
    print(f"labelled {summary.new} new pair(s) ({summary.records} in the file) in {summary.seconds:.1f} s{rate}; "
          f"mean confidence {summary.mean_confidence:.3f}; {summary.no_signal} no-signal label(s) (p = 0.5): {summary.path}")
    for line in signal_lines(summary.signal):
        print(line)


# ---------------------------------------------------------------------------------------------------- cai rl


@_guarded("rl")
def rl_command(
    path: str = typer.Argument(..., help="the `.const` file"),
    deployment: str = typer.Option(..., "--deployment", "-d"),
    algo: str = typer.Option("ppo", "--algo", help="ppo (our PPO: policy score and/or preference model), dpo (trl's DPOTrainer on the labels) or grpo (trl's GRPOTrainer on the policy score)"),
    preferences: Optional[str] = typer.Option(None, "--preferences", help="labelled pairs [default: OUT/preferences.jsonl]"),
    prompts: Optional[str] = typer.Option(None, "--prompts", help="rollout prompts JSONL ({id, prompt, scenario}) for ppo/grpo [default: the packaged train split (ppo: the labelled ones)]"),
    policy: Optional[str] = typer.Option(None, "--policy", help="start from this LoRA adapter (the SL-CAI policy); it is also the KL reference"),
    steps: Optional[int] = typer.Option(None, "--steps", help="PPO/GRPO steps, DPO optimizer steps [default: from the target]"),
    reward: str = typer.Option("auto", "--reward", help="PPO reward: auto (policy score, + PM when it beats a constant), policy, pm or policy+pm"),
    out: Path = typer.Option(Path("runs/rlaif"), "--out", help="run directory (pm/, ppo/, dpo/ or grpo/ are written there)"),
    target: Optional[str] = typer.Option(None, "--target", "-t"),
    human: Optional[str] = typer.Option(None, "--human-preferences", help="human preference pairs (TRL JSONL) mixed with the AI labels (hybrid RLHF + CAI)"),
    human_fraction: float = typer.Option(0.5, "--human-fraction", help="share of human pairs in the training mix (with --human-preferences)"),
    pm_steps: Optional[int] = typer.Option(None, "--pm-steps", help="cap on preference-model optimizer steps"),
    pm: Optional[str] = typer.Option(None, "--pm", help="use this trained preference model instead of training one"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bars"),
) -> None:
    """RL from AI feedback: PPO (policy score and/or a preference model), DPO on the labels, or GRPO."""
    from cai_dsl.run.feedback import load_prompts
    from cai_dsl.run.train.ppo_reward import REWARD_MODES
    from cai_dsl.run.train.reward_model import load_pairs, mix_pairs

    if algo not in ("ppo", "dpo", "grpo"):
        _fail("rl", f"--algo must be ppo, dpo or grpo, not `{algo}`")
    if reward not in REWARD_MODES:
        _fail("rl", f"--reward must be one of {', '.join(REWARD_MODES)}, not `{reward}`")
    _positive("rl", "--steps", steps)
    _positive("rl", "--pm-steps", pm_steps)
    if not 0.0 <= human_fraction <= 1.0:
        _fail("rl", "--human-fraction must be between 0 and 1")
    adapter = _adapter("rl", policy, "--policy")
    pref_path = Path(preferences) if preferences else out / "preferences.jsonl"
    required = algo == "dpo" or (algo == "ppo" and reward in ("pm", "policy+pm") and not pm)
    if required and not pref_path.is_file():
        _fail("rl", f"{pref_path}: no preference file (run `cai label ... --out {out}` first, or pass --preferences)")
    program = _compile("rl", path, deployment, target)
    log = (lambda m: None) if quiet else (lambda m: print(m, file=sys.stderr))
    pairs = []
    if algo != "grpo" and pref_path.is_file():
        pairs = load_pairs(pref_path, source="ai")
        if human:
            pairs = mix_pairs(pairs, load_pairs(human, source="human"), human_fraction, seed=program.provenance.seed)
    if algo == "dpo":
        from cai_dsl.run.train.dpo import run_dpo

        result = run_dpo(program, out / "dpo", pairs, policy_adapter=adapter, steps=steps, show_progress=not quiet, log=log)
        last = result.metrics[-1].get("loss") if result.metrics else None
        print(f"DPO: {result.steps} steps on {result.pairs} pairs, last loss {last if last is None else round(float(last), 4)}; "
              f"policy adapter: {result.policy}")
        return
    scorer = _policy_scorer("rl", path, deployment)
    items = load_prompts(prompts, split=None if prompts else "train", facets=program.facets)
    if algo == "grpo":
        from cai_dsl.run.train.grpo import GRPOSettings, run_grpo

        settings = GRPOSettings.from_program(program, steps=steps)
        g = run_grpo(program, out / "grpo", items, policy_scorer=scorer, settings=settings, policy_adapter=adapter,
                     show_progress=not quiet, log=log)
        rewards = [m["reward"] for m in g.metrics if "reward" in m]
        trend = f"reward {rewards[0]:.3f} -> {rewards[-1]:.3f}, " if rewards else ""
        print(f"GRPO: {g.steps} steps, {settings.completions_per_step} completions per step; {trend}"
              f"metrics: {g.out_dir / 'metrics.jsonl'}; policy adapter: {g.policy}")
        return
    _rl_ppo(program, out, items, pairs, scorer, adapter, steps, reward, pm, pm_steps, quiet, log)


def _rl_ppo(program, out, items, pairs, scorer, adapter, steps, reward, pm, pm_steps, quiet, log) -> None:
    """`cai rl --algo ppo`: the preference model (trained on the labels, or --pm), then PPO."""
    from cai_dsl.run.prompts import PromptRenderer
    from cai_dsl.run.train.ppo import PPOConfig, run_ppo
    from cai_dsl.run.train.reward_model import train_preference_model

    pm_dir = None
    if pm:
        pm_dir = Path(pm)
        if not (pm_dir / "pm.json").is_file():
            _fail("rl", f"--pm {pm}: not a preference model directory (no pm.json)")
    elif pairs and reward != "policy":
        rm = program.run.reward_model
        result = train_preference_model(
            pairs, out / "pm", base_spec=rm.base or program.run.models.policy, params=rm, renderer=PromptRenderer.of(program), max_steps=pm_steps,
            seed=program.provenance.seed, device=program.run.device, dtype=program.run.dtype, show_progress=not quiet, log=log,
        )
        pm_dir = result.path
        print(f"preference model: {result.train_pairs} train pairs ({result.human_pairs} human); {result.verdict}"
              f"{' (reused)' if result.reused else ''}: {pm_dir}")
    labelled = {p.id for p in pairs if p.source == "ai"}
    rollout = [it for it in items if it.id in labelled] or items
    config = PPOConfig.from_program(program, steps=steps, reward=reward)
    ppo = run_ppo(program, out / "ppo", rollout, pm_dir=pm_dir, config=config, policy_adapter=adapter,
                  policy_scorer=scorer, show_progress=not quiet, log=log)
    if ppo.metrics:
        first, last = ppo.metrics[0], ppo.metrics[-1]
        print(f"PPO ({ppo.reward} reward, {config.rollout_batch_size} rollouts/step): {ppo.steps} steps; reward "
              f"{first['reward']:.3f} -> {last['reward']:.3f}, KL {last['kl']:.3f}, degenerate rollouts "
              f"{last.get('degenerate_rate', 0):.0%}; metrics: {ppo.out_dir / 'metrics.jsonl'}")
    if ppo.stopped:
        print(f"stopped early after step {ppo.steps} ({ppo.stopped}: mean KL above kl_target {config.kl_target})")
    print(f"policy adapter: {ppo.policy}" if ppo.finished else f"stopped after step {ppo.steps}; rerun to resume")


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
    constitution: str = typer.Option(..., "--constitution", help="the `.const` file whose policy and comparison program judge"),
    deployment: str = typer.Option(..., "--deployment", "-d"),
    sl: Optional[str] = typer.Option(None, "--sl", help="the SL-CAI LoRA adapter"),
    rl: Optional[str] = typer.Option(None, "--rl", help="the RL-CAI LoRA adapter (e.g. OUT/ppo/policy)"),
    limit: Optional[int] = typer.Option(None, "--limit", help="held-out prompts per set (red team, benign look-alikes) [default: all]"),
    helpful: int = typer.Option(0, "--helpful", help="also held-out helpful prompts (over-refusal), up to N"),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", help="greedy tokens per answer"),
    compare: int = typer.Option(8, "--compare", help="prompts per set judged pairwise by the comparison program (0: no win rate)"),
    judge: bool = typer.Option(True, "--judge/--no-judge", help="also score the behaviors' judge questions (independent of the markers)"),
    target: Optional[str] = typer.Option(None, "--target", "-t"),
    out: Optional[Path] = typer.Option(None, "--out", help="run directory: results go to OUT/eval/ (resumable) for `cai report`"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bars"),
) -> None:
    """Base vs SL vs RL on held-out prompts: harmful compliance, refusal, over-refusal, degeneration (n, 95% intervals,
    paired McNemar tests), an independent judge with its agreement, and the comparison-program win rate."""
    from cai_dsl.cli.pipeline import print_effect
    from cai_dsl.pipeline.effect import effect_stage, policy_scorer
    from cai_dsl.run.eval import EvalOptions, SetLimits

    _positive("eval models", "--limit", limit)
    _positive("eval models", "--max-new-tokens", max_new_tokens)
    if helpful < 0 or compare < 0:
        _fail("eval models", "--helpful and --compare must be at least 0")
    sl_dir, rl_dir = _adapter("eval models", sl, "--sl"), _adapter("eval models", rl, "--rl")
    if sl_dir is None and rl_dir is None:
        _fail("eval models", "give --sl and/or --rl: there is nothing to compare the base model with")
    program = _compile("eval models", constitution, deployment, target)
    options = EvalOptions(
        limits=SetLimits(red_team=limit, benign=limit, helpful=helpful), max_new_tokens=max_new_tokens,
        judge_behaviors=EvalOptions().judge_behaviors if judge else (), compare_prompts=compare,
    )
    effect = effect_stage(
        program, policy_scorer(constitution, deployment), out / "eval" if out else None, sl_adapter=sl_dir,
        rl_adapter=rl_dir, options=options, feedback_signal=_feedback_signal(out), show_progress=not quiet,
    )
    print_effect(effect, indent="")
    if out:
        print(f"results: {effect.path}")


def _feedback_signal(run: Optional[Path]) -> Optional[bool]:
    """The labelling run's verdict on the feedback model (``RUN/labels.json``), if there is one."""
    import json

    from cai_dsl.run.feedback import LABELS_MANIFEST

    if run is None or not (run / LABELS_MANIFEST).is_file():
        return None
    try:
        signal = json.loads((run / LABELS_MANIFEST).read_text(encoding="utf-8")).get("signal") or {}
    except (OSError, ValueError, AttributeError):
        return None
    value = signal.get("has_signal") if isinstance(signal, dict) else None
    return value if isinstance(value, bool) else None


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

