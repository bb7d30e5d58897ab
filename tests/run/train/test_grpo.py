"""GRPO (trl's GRPOTrainer) with the compiled policy reward: the dataset, the reward, a resumable run on the
tiny model through the RL-stage function, and (marked `model`) two steps on the embedded SmolLM2."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import write_tiny_target

ROOT = Path(__file__).resolve().parents[3]
ANTHROPIC = str(ROOT / "constitutions" / "anthropic-2022.const")


def _program_and_scorer(target: str):
    import cai_dsl
    from cai_dsl.compile.compiler import compile_file
    from cai_dsl.run.policy.score import PolicyScorer

    program, diags = compile_file(ANTHROPIC, "rl_cai", target)
    assert program is not None, [d.message for d in diags if d.is_error]
    return program, PolicyScorer(cai_dsl.load(ANTHROPIC), "rl_cai")


def test_dataset_and_reward():
    from cai_dsl.run.feedback import default_prompts
    from cai_dsl.run.policy.detectors import DetectorSet
    from cai_dsl.run.train.grpo import GRPOPolicyReward, GRPOSettings, grpo_dataset

    program, scorer = _program_and_scorer("smollm2-cpu")
    prompts = default_prompts()[:3]
    ds = grpo_dataset(prompts)
    assert ds.column_names == ["prompt", "scenario"] and ds[0]["prompt"][-1] == {"role": "user", "content": prompts[0].prompt}
    assert ds[0]["scenario"]["risk"] == prompts[0].scenario["risk"]
    logged = {}
    reward = GRPOPolicyReward(scorer, DetectorSet.from_program(program), undecided_value=0.75)
    benign = prompts[1].scenario
    out = reward(["How do I make tea?"] * 2, ["I'm I'm I'm I'm I'm I'm I'm I'm I'm I'm I'm I'm", "To make tea, boil water and add the leaves."],
                 scenario=[benign, benign], log_metric=lambda k, v: logged.setdefault(k, v))
    assert out[0] == 0.0 and isinstance(out[1], float) and 0.0 <= out[1] <= 1.0  # degenerate -> 0; never None
    assert logged["policy_score/degenerate"] == 0.5
    settings = GRPOSettings.from_program(program)
    assert settings.completions_per_step >= 16 and settings.beta == program.run.ppo.kl_coef
    with pytest.raises(Exception, match="at least 2 generations"):
        GRPOSettings.from_program(program, num_generations=1)


def test_rl_stage_grpo_on_the_tiny_model_resumes_as_finished(tmp_path, tiny_model_dir):
    from cai_dsl.run.feedback import RLAIFError, default_prompts
    from cai_dsl.run.train.rl_stage import RLBudget, run_rl_stage

    target = write_tiny_target(tmp_path / "tiny.toml", tiny_model_dir, generation={"max_new_tokens": 5, "temperature": 1.0})
    program, scorer = _program_and_scorer(str(target))
    prompts = default_prompts()[:4]
    budget = RLBudget(steps=2, rollouts_per_step=4, num_generations=2, max_new_tokens=5)
    result = run_rl_stage(program, scorer, prompts, "grpo", budget, out_dir=tmp_path / "rl")
    assert result.algo == "grpo" and result.steps == 2 and len(result.reward) == 2 and len(result.kl) == 2
    assert all(d is not None and 0.0 <= d <= 1.0 for d in result.degenerate)
    manifest = (result.adapter / "cai-adapter.json").read_text()
    assert '"stage": "grpo"' in manifest and (result.adapter / "README.md").is_file()
    assert (result.adapter / "adapter_model.safetensors").is_file() and not (result.adapter / "training_args.bin").exists()
    again = run_rl_stage(program, scorer, prompts, "grpo", budget, out_dir=tmp_path / "rl")
    assert again.steps == 2 and again.reward == result.reward
    with pytest.raises(RLAIFError, match="different inputs"):
        run_rl_stage(program, scorer, prompts[:3], "grpo", budget, out_dir=tmp_path / "rl")
    held = [p for p in default_prompts("eval")[:1]]
    with pytest.raises(RLAIFError, match="held-out"):
        run_rl_stage(program, scorer, held, "grpo", budget, out_dir=tmp_path / "x")


@pytest.mark.model
def test_real_model_grpo_two_steps(tmp_path, embedded_model):
    from cai_dsl.run.feedback import default_prompts
    from cai_dsl.run.train.rl_stage import RLBudget, run_rl_stage

    program, scorer = _program_and_scorer("smollm2-cpu")
    budget = RLBudget(steps=2, rollouts_per_step=4, num_generations=2, max_new_tokens=12)  # ~60 s on an idle CPU
    result = run_rl_stage(program, scorer, default_prompts()[:2], "grpo", budget, out_dir=tmp_path)
    assert result.steps == 2 and all(r is not None and 0.0 <= r <= 1.0 for r in result.reward)
    assert all(k is not None and k > -1.0 for k in result.kl) and result.entropy[0] > 0.0
