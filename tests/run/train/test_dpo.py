"""DPO with trl's DPOTrainer on the tiny model: a LoRA adapter trained a few steps, reference = the base with
adapters disabled (or a frozen copy of a starting adapter), resumable."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import write_tiny_target

ROOT = Path(__file__).resolve().parents[3]
ANTHROPIC = str(ROOT / "constitutions" / "anthropic-2022.const")

DPO_TABLE = {"beta": 0.1, "learning_rate": 0.01, "batch_size": 2, "max_seq_len": 96,
             "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}}


def _pairs():
    from cai_dsl.run.train.reward_model import PreferencePair

    pairs = [PreferencePair(f"p{i}", f"question {i}?", "a kind and careful answer", "a rude answer", 0.9) for i in range(4)]
    pairs.append(PreferencePair("tie", "q", "x", "y", 0.5))  # no preference: dropped
    pairs.append(PreferencePair("same", "q", "x", "x", 0.9))  # identical: dropped
    return pairs


def _program(tmp_path, tiny_model_dir):
    from cai_dsl.compile.compiler import compile_file

    target = write_tiny_target(tmp_path / "tiny.toml", tiny_model_dir, dpo=DPO_TABLE)
    program, _ = compile_file(ANTHROPIC, "rl_cai", str(target))
    return program


def test_dpo_rows_are_conversational_and_drop_ties():
    from cai_dsl.run.train.dpo import dpo_rows

    rows = dpo_rows(_pairs())
    assert len(rows) == 4
    assert rows[0]["prompt"] == [{"role": "user", "content": "question 0?"}]
    assert rows[0]["chosen"] == [{"role": "assistant", "content": "a kind and careful answer"}]


def test_dpo_trains_a_few_steps_on_the_tiny_model(tmp_path, tiny_model_dir):
    from safetensors.torch import load_file

    from cai_dsl.run.train.dpo import run_dpo

    program = _program(tmp_path, tiny_model_dir)
    result = run_dpo(program, tmp_path / "dpo", _pairs(), steps=3, checkpoint_every=2, show_progress=False)
    assert result.steps == 3 and result.pairs == 4 and len(result.metrics) == 3
    assert result.metrics[0]["loss"] == pytest.approx(0.6931, abs=1e-3)  # policy == reference at the start
    assert result.metrics[-1]["loss"] < result.metrics[0]["loss"]
    weights = load_file(str(result.policy / "adapter_model.safetensors"))
    assert any("lora_B" in k and float(v.abs().sum()) > 0 for k, v in weights.items())  # trained
    assert (tmp_path / "dpo" / "metrics.jsonl").is_file() and (tmp_path / "dpo" / "summary.json").is_file()
    # the same run again resumes from the last checkpoint: no new steps
    again = run_dpo(program, tmp_path / "dpo", _pairs(), steps=3, checkpoint_every=2, show_progress=False)
    assert again.steps == 3

    # starting from an adapter: it is trained further against a frozen copy of itself
    started = run_dpo(program, tmp_path / "dpo2", _pairs(), steps=1, policy_adapter=result.policy, show_progress=False)
    assert started.steps == 1 and started.metrics[0]["loss"] == pytest.approx(0.6931, abs=1e-3)


def test_dpo_needs_usable_pairs(tmp_path, tiny_model_dir):
    from cai_dsl.run.train.dpo import run_dpo
    from cai_dsl.run.feedback import RLAIFError
    from cai_dsl.run.train.reward_model import PreferencePair

    program = _program(tmp_path, tiny_model_dir)
    with pytest.raises(RLAIFError, match="no usable preference pairs"):
        run_dpo(program, tmp_path / "d", [PreferencePair("a", "q", "x", "x")], steps=1, show_progress=False)
