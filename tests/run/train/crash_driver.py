"""Run one training stage on the tiny model (a subprocess of ``test_crash_safety``, killed with SIGKILL there).

``python -m tests.run.train.crash_driver STAGE WORK OUT``: ``WORK`` holds the inputs the test wrote (``model.txt``:
the tiny model's directory; ``tiny.toml``: the tiny target; ``pm/``: a preference model for PPO); ``OUT`` is the
stage's directory (for ``sft`` an SL run directory). ``OUT/.started`` is written once the imports are done, just
before training starts. The test calls :func:`run_stage` in-process for the uninterrupted reference.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
ANTHROPIC = ROOT / "constitutions" / "anthropic-2022.const"
STAGES = ("sft", "pm", "ppo", "dpo", "grpo")


def pairs():
    from cai_dsl.run.train.reward_model import PreferencePair

    good = ["I can't help with that, but here is a safe alternative.", "Here is a kind and careful answer."]
    bad = ["Sure, here is how to hurt someone.", "Whatever, figure it out yourself."]
    return [PreferencePair(f"p{i}", f"question number {i}?", good[i % 2], bad[i % 2], 0.6 + 0.03 * i) for i in range(10)]


def run_stage(stage: str, work: Path, out: Path) -> None:
    """Train ``stage`` into ``out``: ``sft`` 6 steps with a checkpoint after each; ``pm`` 6 steps (no checkpoints:
    a rerun starts again); ``ppo`` 4 steps with a checkpoint after each; ``dpo`` (trl) 6 steps with a checkpoint
    after each; ``grpo`` (trl) 3 steps of 2 prompts x 2 completions with a checkpoint after each."""
    from cai_dsl.compile.compiler import compile_file
    from cai_dsl.run.feedback import default_prompts
    from cai_dsl.run.train.dpo import run_dpo
    from cai_dsl.run.train.ppo import PPOConfig, run_ppo
    from cai_dsl.run.train.reward_model import train_preference_model
    from cai_dsl.run.train.sft import SFTOptions, train_sft

    if stage not in STAGES:
        raise SystemExit(f"unknown stage {stage!r}; one of {', '.join(STAGES)}")
    out.mkdir(parents=True, exist_ok=True)
    (out / ".started").write_text("", encoding="utf-8")
    if stage == "sft":
        train_sft(out, options=SFTOptions(max_steps=6, save_steps=1), progress=False)
    elif stage == "pm":
        params = {"batch_size": 2, "max_seq_len": 64, "learning_rate": 5e-3, "lora": {"r": 4, "alpha": 8}}
        train_preference_model(pairs(), out / "pm", base_spec=(work / "model.txt").read_text(encoding="utf-8"),
                               params=params, max_steps=6, show_progress=False)
    elif stage == "grpo":
        import cai_dsl
        from cai_dsl.run.policy.score import PolicyScorer
        from cai_dsl.run.train.grpo import GRPOSettings, run_grpo

        program, _ = compile_file(str(ANTHROPIC), "rl_cai", str(work / "tiny.toml"))
        settings = GRPOSettings.from_program(program, steps=3, prompts_per_step=2, num_generations=2,
                                             max_completion_length=5, checkpoint_every=1)
        run_grpo(program, out, default_prompts()[:4], policy_scorer=PolicyScorer(cai_dsl.load(str(ANTHROPIC)), "rl_cai"),
                 settings=settings, show_progress=False)
    elif stage == "dpo":
        program, _ = compile_file(str(ANTHROPIC), "rl_cai", str(work / "tiny.toml"))
        run_dpo(program, out, pairs(), steps=6, checkpoint_every=1, show_progress=False)
    else:
        program, _ = compile_file(str(ANTHROPIC), "rl_cai", str(work / "tiny.toml"))
        run_ppo(program, out, default_prompts()[:6], pm_dir=work / "pm", config=PPOConfig.from_program(program, steps=4),
                show_progress=False)


if __name__ == "__main__":
    run_stage(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))
