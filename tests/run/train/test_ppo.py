"""PPO: the objective against hand computations, the frozen reference and KL on the tiny model, resumable
checkpoints, and (marked `model`) a short real-model run that raises the preference model's reward."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.conftest import write_tiny_target

ROOT = Path(__file__).resolve().parents[3]
ANTHROPIC = str(ROOT / "constitutions" / "anthropic-2022.const")


def test_gae_three_steps_by_hand():
    import torch

    from cai_dsl.run.train.ppo import compute_gae

    gamma, lam = 0.9, 0.8
    rewards = torch.tensor([[1.0, 0.0, 2.0, 0.0]])
    values = torch.tensor([[0.5, 1.0, 1.5, 7.0]])  # the 4th position is padding: ignored
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    # by hand: delta2 = 2 + 0 - 1.5 = 0.5, A2 = 0.5
    #          delta1 = 0 + .9*1.5 - 1 = 0.35, A1 = 0.35 + .9*.8*0.5 = 0.71
    #          delta0 = 1 + .9*1.0 - .5 = 1.4,  A0 = 1.4 + .72*0.71 = 1.9112
    adv, ret = compute_gae(rewards, values, mask, gamma, lam)
    assert adv[0].tolist() == pytest.approx([1.9112, 0.71, 0.5, 0.0])
    assert ret[0].tolist() == pytest.approx([2.4112, 1.71, 2.0, 0.0])
    # gamma = lam = 1: advantages are reward-to-go minus the value
    adv, _ = compute_gae(rewards, values, mask, 1.0, 1.0)
    assert adv[0, :3].tolist() == pytest.approx([3.0 - 0.5, 2.0 - 1.0, 2.0 - 1.5])


def test_clipped_surrogate_and_value_loss_by_hand():
    import torch

    from cai_dsl.run.train.ppo import ppo_loss

    old = torch.log(torch.tensor([[0.2, 0.4]]))
    new = torch.log(torch.tensor([[0.3, 0.2]]))  # ratios 1.5 and 0.5
    adv = torch.tensor([[1.0, 2.0]])
    # token 0: -A*r = -1.5, clipped -A*1.2 = -1.2 -> max -1.2 (clipped)
    # token 1: -A*r = -1.0, clipped -A*0.8 = -1.6 -> max -1.0 (not clipped)
    values, old_values, returns = torch.tensor([[1.0, 3.0]]), torch.tensor([[0.8, 2.0]]), torch.tensor([[1.5, 2.0]])
    # V clipped to old +- 0.2: [1.0, 2.2]; squared errors max([.25, 1.0], [.25, .04]) = [.25, 1.0]
    mask = torch.ones(1, 2)
    loss, stats = ppo_loss(new, old, adv, values, old_values, returns, mask, clip_range=0.2, clip_range_value=0.2, vf_coef=0.1)
    assert stats["policy_loss"] == pytest.approx(-1.1)
    assert stats["value_loss"] == pytest.approx(0.5 * (0.25 + 1.0) / 2)
    assert float(loss) == pytest.approx(-1.1 + 0.1 * 0.3125)
    assert stats["clip_fraction"] == pytest.approx(0.5)
    assert stats["approx_kl"] == pytest.approx(0.5 * (math.log(1.5) ** 2 + math.log(0.5) ** 2) / 2)
    # a masked token changes nothing
    loss2, _ = ppo_loss(
        torch.cat([new, torch.zeros(1, 1)], 1), torch.cat([old, torch.zeros(1, 1)], 1), torch.cat([adv, torch.ones(1, 1) * 9], 1),
        torch.cat([values, torch.ones(1, 1)], 1), torch.cat([old_values, torch.zeros(1, 1)], 1), torch.cat([returns, torch.ones(1, 1) * 5], 1),
        torch.tensor([[1.0, 1.0, 0.0]]), clip_range=0.2, clip_range_value=0.2, vf_coef=0.1,
    )
    assert float(loss2) == pytest.approx(float(loss))


def test_kl_penalised_rewards_and_whitening():
    import torch

    from cai_dsl.run.train.ppo import kl_penalized_rewards, masked_mean, whiten

    logp = torch.tensor([[-1.0, -2.0, -0.5], [-1.0, -1.0, 0.0]])
    ref = torch.tensor([[-1.5, -2.0, -1.0], [-1.0, -0.5, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    rewards, kl = kl_penalized_rewards(torch.tensor([2.0, -1.0]), logp, ref, mask, kl_coef=0.1)
    assert kl.flatten().tolist() == pytest.approx([0.5, 0.0, 0.5, 0.0, -0.5, 0.0])
    assert rewards.flatten().tolist() == pytest.approx([-0.05, 0.0, -0.05 + 2.0, 0.0, 0.05 - 1.0, 0.0])
    w = whiten(rewards, mask)
    assert float(masked_mean(w, mask)) == pytest.approx(0.0, abs=1e-6)
    scaled = whiten(rewards, mask, shift_mean=False)
    assert float(masked_mean(scaled, mask)) == pytest.approx(float(masked_mean(rewards, mask)), abs=1e-6)


def _tiny_trainer(tiny_model_dir, **overrides):
    import torch
    from peft import LoraConfig, get_peft_model

    from cai_dsl.run.loading import load_model
    from cai_dsl.run.train.ppo import PPOConfig, PPOTrainerLite
    from cai_dsl.run.train.reward_model import RewardScorer

    loaded = load_model(str(tiny_model_dir))
    lora = dict(task_type="CAUSAL_LM", r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = get_peft_model(loaded.model, LoraConfig(**lora), adapter_name="policy")
        model.add_adapter("reward", LoraConfig(**lora))
        head = torch.nn.Linear(loaded.model.config.hidden_size, 1, bias=False)
    reward = RewardScorer(model, head, loaded.tokenizer, adapter_name="reward", max_len=64)
    config = PPOConfig(**{"rollout_batch_size": 4, "mini_batch_size": 2, "ppo_epochs": 2, "learning_rate": 5e-3,
                          "max_new_tokens": 6, "temperature": 1.0, **overrides})
    return loaded, PPOTrainerLite(model, loaded.tokenizer, reward, config)


def test_reference_frozen_and_kl_zero_at_step_0(tiny_model_dir):
    import torch

    from cai_dsl.run.loading import load_model

    loaded, trainer = _tiny_trainer(tiny_model_dir)
    model = trainer.model
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if ".policy." not in n}
    policy = {n: p.detach().clone() for n, p in model.named_parameters() if ".policy." in n}
    assert frozen and policy
    prompts = [[1, 2, 3, 4], [5, 6, 7], [8, 9, 10, 11, 12], [13, 14]]
    stats = trainer.step(["a", "b", "c", "d"], prompts, step_seed=7)
    assert stats["kl"] == pytest.approx(0.0, abs=1e-6)  # the fresh LoRA is the reference
    for k in ("reward", "entropy", "clip_fraction", "value_loss", "policy_loss"):
        assert math.isfinite(stats[k])
    for n, p in model.named_parameters():
        if ".policy." in n:
            continue
        assert torch.equal(p, frozen[n]), f"{n} changed"  # base weights and the reward adapter are frozen
    assert any(not torch.equal(p, policy[n]) for n, p in model.named_parameters() if ".policy." in n)

    # adapters disabled = the base model, unchanged by the step
    ids = torch.tensor([[1, 2, 3, 4, 5, 6]])
    fresh = load_model(str(tiny_model_dir)).model
    with torch.no_grad():
        base_logits = fresh(input_ids=ids).logits
        with model.disable_adapter():
            ref_logits = model(input_ids=ids).logits
        policy_logits = model(input_ids=ids).logits
    assert torch.allclose(ref_logits, base_logits, atol=1e-6)
    assert not torch.allclose(policy_logits, base_logits, atol=1e-6)
    # the second step sees a non-zero KL to the reference
    assert trainer.step(["a", "b", "c", "d"], prompts, step_seed=8)["kl"] != pytest.approx(0.0, abs=1e-7)


PPO_TABLES = {
    "generation": {"max_new_tokens": 5, "temperature": 1.0},
    "sft": {"lora": {"r": 4, "alpha": 8}},
    "ppo": {"learning_rate": 0.003, "rollout_batch_size": 4, "mini_batch_size": 2, "ppo_epochs": 1, "total_episodes": 12},
}


def _write_pm(tmp_path, tiny_model_dir):
    from cai_dsl.run.train.reward_model import PreferencePair, train_preference_model

    pairs = [PreferencePair(f"p{i}", f"question {i}", "a kind answer", "a rude answer", 0.8) for i in range(6)]
    return train_preference_model(pairs, tmp_path / "pm", base_spec=str(tiny_model_dir),
                                  params={"batch_size": 2, "max_seq_len": 64, "lora": {"r": 4, "alpha": 8}},
                                  max_steps=1, show_progress=False).path


def test_run_ppo_checkpoints_resume_identically(tmp_path, tiny_model_dir):
    from cai_dsl.compile.compiler import compile_file
    from cai_dsl.run.feedback import RLAIFError, default_prompts
    from cai_dsl.run.train.ppo import PPOConfig, run_ppo

    target = write_tiny_target(tmp_path / "tiny.toml", tiny_model_dir, **PPO_TABLES)
    program, _ = compile_file(ANTHROPIC, "rl_cai", str(target))
    pm = _write_pm(tmp_path, tiny_model_dir)
    prompts = default_prompts()[:6]
    config = PPOConfig.from_program(program)
    assert config.steps == 3 and config.rollout_batch_size == 4 and config.lora_r == 4

    full = run_ppo(program, tmp_path / "a", prompts, pm_dir=pm, config=config, show_progress=False)
    assert full.steps == 3 and (tmp_path / "a" / "policy" / "adapter_model.safetensors").is_file()
    assert [m["step"] for m in full.metrics] == [1, 2, 3] and full.metrics[0]["kl"] == pytest.approx(0.0, abs=1e-6)

    part = run_ppo(program, tmp_path / "b", prompts, pm_dir=pm, config=config, show_progress=False, stop_after=1)
    assert part.steps == 1 and not (tmp_path / "b" / "policy").exists()
    resumed = run_ppo(program, tmp_path / "b", prompts, pm_dir=pm, config=config, show_progress=False)
    assert resumed.resumed_from == 1 and resumed.new_steps == 2
    keys = ("reward", "kl", "entropy", "value_loss", "clip_fraction")
    for a, b in zip(full.metrics, resumed.metrics):
        assert [a[k] for k in keys] == pytest.approx([b[k] for k in keys], rel=1e-4, abs=1e-6)
    # finished: nothing more to do; other settings are refused
    assert run_ppo(program, tmp_path / "b", prompts, pm_dir=pm, config=config, show_progress=False).new_steps == 0
    with pytest.raises(RLAIFError, match="different inputs or settings"):
        run_ppo(program, tmp_path / "b", prompts, pm_dir=pm, config=PPOConfig.from_program(program, kl_coef=0.5), show_progress=False)


@pytest.mark.model
def test_real_model_ppo_raises_the_preference_models_reward(embedded_model):
    """A few PPO steps on the embedded SmolLM2 raise the PM's expected reward on the training prompts.

    The expectation is measured without sampling noise: over a fixed set of 8 responses per prompt sampled
    from the initial policy, weighted by the policy's (normalised) probability of each. The PM is the PPO
    layout's: a LoRA adapter ``reward`` on the same base plus a linear head (here untrained and random)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from cai_dsl.run.backends.base import Prompt, prompt_ids, render_chat
    from cai_dsl.run.loading import load_model
    from cai_dsl.run.train.ppo import PPOConfig, PPOTrainerLite
    from cai_dsl.run.train.reward_model import RewardScorer

    loaded = load_model("embedded:smollm2-135m")  # a private copy: training changes it
    lora = dict(task_type="CAUSAL_LM", r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = get_peft_model(loaded.model, LoraConfig(**lora), adapter_name="policy")
        model.add_adapter("reward", LoraConfig(**lora))
        head = torch.nn.Linear(loaded.model.config.hidden_size, 1, bias=False)
        torch.nn.init.normal_(head.weight, std=loaded.model.config.hidden_size ** -0.5)
    reward = RewardScorer(model, head, loaded.tokenizer, adapter_name="reward", max_len=128)
    config = PPOConfig(rollout_batch_size=4, mini_batch_size=4, ppo_epochs=2, learning_rate=5e-4, value_learning_rate=1e-2,
                       kl_coef=0.01, max_new_tokens=8, temperature=1.0)
    trainer = PPOTrainerLite(model, loaded.tokenizer, reward, config)
    texts = ["How do I make tea?", "Tell me about cats.", "What is the capital of France?", "Give me a tip for sleeping well."]
    ids = [prompt_ids(loaded.tokenizer, render_chat(loaded.tokenizer, Prompt.user(t))) for t in texts]

    k = 8
    inp, mask, response, P = trainer.generate([i for i in ids for _ in range(k)], seed=999)
    rewards = torch.tensor(reward.score([t for t in texts for _ in range(k)], trainer.response_texts(response, mask[:, P:])))
    resp_mask = mask[:, P:].float()

    def expected_reward() -> float:
        with torch.no_grad():
            logprobs, _, _ = trainer.policy_forward(inp, mask, response, P)
        weights = torch.softmax((logprobs * resp_mask).sum(-1).view(len(texts), k), dim=-1)
        return float((weights * rewards.view(len(texts), k)).sum(-1).mean())

    before = expected_reward()
    metrics = [trainer.step(texts, ids, step_seed=step) for step in range(3)]
    after = expected_reward()
    assert metrics[0]["kl"] == pytest.approx(0.0, abs=1e-5) and metrics[-1]["kl"] != 0.0
    assert after > before, (before, after)


def test_running_moments_normalise_sequence_scores():
    import torch

    from cai_dsl.run.train.ppo_losses import RunningMoments

    m = RunningMoments()
    m.update([1.0, 2.0, 3.0])
    m.update([4.0])
    assert m.count == 4 and m.mean == pytest.approx(2.5) and m.std == pytest.approx(torch.tensor([1.0, 2, 3, 4]).std().item())
    again = RunningMoments.from_json(m.to_json())
    assert float(again.normalize(torch.tensor(2.5))) == pytest.approx(0.0)


def test_missing_eos_penalty_and_kl_early_stop(tiny_model_dir):
    class Constant:
        def score(self, conversations, responses):
            return [1.0] * len(responses)

    prompts = [[1, 2, 3, 4], [5, 6, 7], [8, 9, 10, 11, 12], [13, 14]]
    # 6 new tokens from the tiny model almost never end with EOS: the unnormalised score shows the penalty
    from dataclasses import replace

    _, trainer = _tiny_trainer(tiny_model_dir, normalize_rewards=False, missing_eos_penalty=0.5, kl_target=1e-9)
    trainer.reward = Constant()
    first = trainer.step(["a", "b", "c", "d"], prompts, step_seed=7)
    assert first["reward"] == 1.0 and first["normalized_reward"] == pytest.approx(1.0 - 0.5 * (1 - first["eos_rate"]))
    assert not first["kl_stop"]  # KL 0 at step 1
    frozen = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if ".policy." in n}
    trainer.config = replace(trainer.config, kl_target=-1.0)  # the sampled KL estimate may be below 0
    second = trainer.step(["a", "b", "c", "d"], prompts, step_seed=8)
    assert second["kl"] > -1.0 and second["kl_stop"]
    assert all(torch_equal(p, frozen[n]) for n, p in trainer.model.named_parameters() if ".policy." in n)  # no update


def torch_equal(a, b) -> bool:
    import torch

    return torch.equal(a, b)


def test_run_ppo_with_the_policy_reward_stops_on_kl(tmp_path, tiny_model_dir):
    import cai_dsl
    from cai_dsl.compile.compiler import compile_file
    from cai_dsl.run.feedback import RLAIFError, default_prompts
    from cai_dsl.run.policy.score import PolicyScorer
    from cai_dsl.run.train.ppo import PPOConfig, run_ppo

    target = write_tiny_target(tmp_path / "tiny.toml", tiny_model_dir, **PPO_TABLES)
    program, _ = compile_file(ANTHROPIC, "rl_cai", str(target))
    scorer = PolicyScorer(cai_dsl.load(ANTHROPIC), "rl_cai")
    prompts = default_prompts()[:6]
    with pytest.raises(RLAIFError, match="needs a preference model"):
        run_ppo(program, tmp_path / "x", prompts, config=PPOConfig.from_program(program, reward="pm"), policy_scorer=scorer)
    config = PPOConfig.from_program(program, kl_target=-1.0)  # auto without a PM: the policy score
    result = run_ppo(program, tmp_path / "p", prompts, config=config, policy_scorer=scorer, show_progress=False)
    assert result.reward == "policy" and result.stopped == "kl" and result.steps == 1 and result.finished
    assert result.metrics[-1]["kl_stop"] and 0.0 <= result.metrics[0]["degenerate_rate"] <= 1.0
    again = run_ppo(program, tmp_path / "p", prompts, config=config, policy_scorer=scorer, show_progress=False)
    assert again.new_steps == 0 and again.stopped == "kl"
