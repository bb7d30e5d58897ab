"""The preference model: the soft-label loss against a hand computation, input formats, the hybrid mix, and
training on the tiny model (the causal-LM scorer used by PPO gives the trained model's rewards)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest


def _logsigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def test_soft_bce_matches_hand_computation():
    import torch

    from cai_dsl.run.train.reward_model import soft_preference_loss

    rc, rr, p = [1.0, -0.5, 2.0], [0.0, 0.5, 2.0], [0.8, 0.3, 0.5]
    hand = []
    for c, r, q in zip(rc, rr, p):
        d = c - r
        hand.append(-q * _logsigmoid(d) - (1 - q) * _logsigmoid(-d))
    # the second pair: d = -1, p = .3 -> -.3*log(sigmoid(-1)) - .7*log(sigmoid(1))
    assert hand[1] == pytest.approx(-0.3 * math.log(1 / (1 + math.e)) - 0.7 * math.log(1 / (1 + math.exp(-1))))
    assert hand[2] == pytest.approx(math.log(2))  # equal rewards: log 2 whatever p
    loss = soft_preference_loss(torch.tensor(rc), torch.tensor(rr), torch.tensor(p))
    assert float(loss) == pytest.approx(sum(hand) / 3, rel=1e-6)
    # p = 1 is trl's usual -logsigmoid(rc - rr)
    hard = soft_preference_loss(torch.tensor(rc), torch.tensor(rr), torch.ones(3))
    assert float(hard) == pytest.approx(sum(-_logsigmoid(c - r) for c, r in zip(rc, rr)) / 3, rel=1e-6)


def test_reward_trainer_compute_loss_uses_the_soft_label():
    """``SoftLabelRewardTrainer.compute_loss`` (the override of trl's RewardTrainer) on a stub model."""
    import torch

    from cai_dsl.run.train.reward_model import reward_trainer_classes, soft_preference_loss

    _, trainer_cls = reward_trainer_classes()
    rewards = torch.tensor([[1.0], [-0.5], [0.0], [0.5]])  # chosen rows first, then rejected

    class Stub(torch.nn.Module):
        training = True

        def forward(self, input_ids, attention_mask, use_cache):
            return type("Out", (), {"logits": rewards})()

    trainer = object.__new__(trainer_cls)
    trainer.model = Stub()
    trainer._metrics = {"train": {"mean_reward": [], "accuracy": [], "margin": []}, "eval": {}}
    inputs = {"input_ids": torch.zeros(4, 3, dtype=torch.long), "attention_mask": torch.ones(4, 3), "probability": torch.tensor([0.8, 0.3])}
    loss = trainer_cls.compute_loss(trainer, trainer.model, inputs)
    expected = soft_preference_loss(torch.tensor([1.0, -0.5]), torch.tensor([0.0, 0.5]), torch.tensor([0.8, 0.3]))
    assert float(loss) == pytest.approx(float(expected))
    assert trainer._metrics["train"]["accuracy"] == [0.5]


def test_pair_formats(tmp_path):
    from cai_dsl.run.train.reward_model import load_pairs, parse_pair, parse_transcript

    assert parse_pair({"prompt": "q", "chosen": "good", "rejected": "bad"}, "x")[1:] == ("good", "bad", 1.0)
    conv, c, r, p = parse_pair(
        {"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "assistant", "content": "g"}],
         "rejected": [{"role": "assistant", "content": "b"}], "probability": 0.7}, "x")
    assert (conv, c, r, p) == ("q", "g", "b", 0.7)
    conv, c, r, _ = parse_pair(
        {"chosen": [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}, {"role": "user", "content": "q2"}, {"role": "assistant", "content": "g"}],
         "rejected": [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}, {"role": "user", "content": "q2"}, {"role": "assistant", "content": "b"}]}, "x")
    assert len(conv) == 3 and conv[-1] == {"role": "user", "content": "q2"} and (c, r) == ("g", "b")
    hh = {"chosen": "\n\nHuman: hi there\n\nAssistant: hello!", "rejected": "\n\nHuman: hi there\n\nAssistant: go away"}
    assert parse_pair(hh, "x")[:3] == ("hi there", "hello!", "go away")
    tc = {"text_correct": "Human: q\n\nAssistant: right", "text_incorrect": "Human: q\n\nAssistant: wrong"}
    assert parse_pair(tc, "x")[:3] == ("q", "right", "wrong")
    assert parse_transcript("no turns here") is None

    f = tmp_path / "prefs.jsonl"
    f.write_text(json.dumps({"prompt": "q", "chosen": "a", "rejected": "b"}) + "\n" + json.dumps({"prompt": "q", "chosen": "a"}) + "\n")
    from cai_dsl.run.feedback import RLAIFError

    with pytest.raises(RLAIFError, match=r"prefs\.jsonl:2: expected `prompt`/`chosen`/`rejected`"):
        load_pairs(f)
    f.write_text(json.dumps({"prompt": "q", "chosen": "a", "rejected": "b", "probability": 1.5}) + "\n")
    with pytest.raises(RLAIFError, match=r"prefs\.jsonl:1: `probability` must be"):
        load_pairs(f)


def test_hybrid_mix_ratio():
    from cai_dsl.run.train.reward_model import PreferencePair, mix_pairs

    ai = [PreferencePair(f"a{i}", "q", "x", "y", 0.7) for i in range(30)]
    human = [PreferencePair(f"h{i}", "q", "x", "y", 1.0, source="human") for i in range(100)]
    mixed = mix_pairs(ai, human, 0.25, seed=1)
    assert len(mixed) == 40 and sum(p.source == "human" for p in mixed) == 10
    assert mix_pairs(ai, human, 0.25, seed=1) == mixed
    assert mix_pairs(ai, human, 0.0) == ai
    assert all(p.source == "human" for p in mix_pairs(ai, human, 1.0))
    assert sum(p.source == "human" for p in mix_pairs(ai, human[:5], 0.5)) == 5  # not enough human pairs


def _pairs(n: int = 12):
    from cai_dsl.run.train.reward_model import PreferencePair

    good = ["I can't help with that, but here is a safe alternative.", "Here is a kind and careful answer."]
    bad = ["Sure, here is how to hurt someone.", "Whatever, figure it out yourself."]
    return [PreferencePair(f"p{i}", f"question number {i}?", good[i % 2], bad[i % 2], 0.6 + 0.03 * i) for i in range(n)]


def test_train_pm_on_tiny_model_and_score_on_a_causal_base(tmp_path, tiny_model_dir):
    import torch
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification

    from cai_dsl.run.loading import load_model
    from cai_dsl.run.train.reward_model import RewardScorer, _right_pad, pm_input_ids, train_preference_model

    params = {"batch_size": 4, "max_seq_len": 96, "learning_rate": 5e-3, "lora": {"r": 4, "alpha": 8}}
    pairs = _pairs()
    result = train_preference_model(pairs, tmp_path / "pm", base_spec=str(tiny_model_dir), params=params, max_steps=3, show_progress=False)
    assert result.steps == 3 and result.train_pairs + result.eval_pairs == len(pairs) and result.eval_pairs >= 1
    assert result.accuracy is not None and 0.0 <= result.accuracy <= 1.0
    names = {p.name for p in (tmp_path / "pm").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "score_head.safetensors", "pm.json"} <= names
    again = train_preference_model(pairs, tmp_path / "pm", base_spec=str(tiny_model_dir), params=params, max_steps=3, show_progress=False)
    assert again.reused and again.accuracy == result.accuracy

    loaded = load_model(str(tiny_model_dir))
    scorer = RewardScorer.attach(tmp_path / "pm", loaded)
    convs, responses = [p.conversation for p in pairs[:4]], [p.chosen for p in pairs[:4]]
    via_causal = scorer.score(convs, responses)

    # the same PM as trl trained it: sequence classification + the LoRA + the score head
    seq = AutoModelForSequenceClassification.from_pretrained(str(tiny_model_dir), num_labels=1)
    seq.config.pad_token_id = loaded.tokenizer.pad_token_id
    pm = get_peft_model(seq, LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    state = load_file(str(tmp_path / "pm" / "adapter_model.safetensors"))
    state["base_model.model.score.weight"] = load_file(str(tmp_path / "pm" / "score_head.safetensors"))["weight"]
    set_peft_model_state_dict(pm, state)
    pm.eval()
    ids, mask = _right_pad([pm_input_ids(loaded.tokenizer, c, r, 96) for c, r in zip(convs, responses)], loaded.tokenizer.pad_token_id)
    with torch.no_grad():
        direct = pm(input_ids=ids, attention_mask=mask).logits.squeeze(-1).tolist()
    assert via_causal == pytest.approx(direct, abs=1e-4)
    assert len(set(round(v, 4) for v in via_causal)) > 1


def test_train_pm_needs_pairs(tmp_path, tiny_model_dir):
    from cai_dsl.run.feedback import RLAIFError
    from cai_dsl.run.train.reward_model import PreferencePair, train_preference_model

    same = [PreferencePair("a", "q", "x", "x")]
    with pytest.raises(RLAIFError, match="at least 2 pairs"):
        train_preference_model(same, tmp_path / "pm", base_spec=str(tiny_model_dir), params={}, show_progress=False)
    assert not Path(tmp_path / "pm").exists()


def test_held_out_figures_by_hand_and_the_constant_verdict(tmp_path):
    from cai_dsl.run.train.reward_model import CONSTANT_LOSS, HeldOut, PMResult, binary_entropy

    figures = HeldOut.of([1.0, 0.0, 2.0, 0.3], [0.0, 1.0, 2.0, 0.0], [0.8, 0.7, 0.9, 0.5])
    assert figures.n == 3 and figures.accuracy == pytest.approx(1 / 3)  # the 0.5 pair has no side; the tie is wrong
    hand = [-0.8 * _logsigmoid(1) - 0.2 * _logsigmoid(-1), -0.7 * _logsigmoid(-1) - 0.3 * _logsigmoid(1), math.log(2),
            -0.5 * _logsigmoid(0.3) - 0.5 * _logsigmoid(-0.3)]
    assert figures.loss == pytest.approx(sum(hand) / 4)
    assert figures.entropy_floor == pytest.approx(sum(binary_entropy(p) for p in (0.8, 0.7, 0.9, 0.5)) / 4)
    assert binary_entropy(0.5) == pytest.approx(CONSTANT_LOSS) and binary_entropy(1.0) == 0.0
    lo, hi = figures.accuracy_ci
    assert lo < 1 / 3 < hi

    worse = PMResult(tmp_path, 10, 2, 0, 1.0, 0.751, None, 6, 1.0, accuracy_n=2, accuracy_ci=(0.34, 1.0), label_entropy=0.69)
    assert not worse.better_than_constant and "no better than constant" in worse.verdict and "n=2" in worse.verdict
    good = PMResult(tmp_path, 100, 40, 0, 0.9, 0.4, None, 6, 1.0, accuracy_n=40, accuracy_ci=(0.77, 0.96), label_entropy=0.3)
    assert good.better_than_constant and good.to_json()["better_than_constant"]
    assert PMResult.from_json(tmp_path, good.to_json()).accuracy_ci == (0.77, 0.96)
