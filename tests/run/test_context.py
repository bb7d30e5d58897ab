"""One execution context: device ``auto`` is resolved once, the same way, for every stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import write_tiny_target

ROOT = Path(__file__).resolve().parents[2]
ANTHROPIC = str(ROOT / "constitutions" / "anthropic-2022.const")


class Reached(Exception):
    """Raised where a stage loads a model: carries the context's device and dtype."""

    def __init__(self, device: str, dtype: str):
        super().__init__(device)
        self.device, self.dtype = device, dtype


@pytest.fixture
def gpu(monkeypatch):
    """A machine where torch sees a GPU; loading a model raises :class:`Reached` instead."""
    import torch

    from cai_dsl.run.context import ExecutionContext

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)

    def load(self, spec, *, adapter=None, dtype=None):
        raise Reached(self.device, self.dtype)

    monkeypatch.setattr(ExecutionContext, "load", load)


@pytest.fixture
def auto_target(tmp_path, tiny_model_dir):
    return write_tiny_target(tmp_path / "auto.toml", tiny_model_dir, device="auto", dtype="auto")


@pytest.fixture
def program(auto_target):
    from cai_dsl.compile.compiler import compile_file

    program, _ = compile_file(ANTHROPIC, "rl_cai", str(auto_target))
    assert program.run.device == "auto"
    return program


def test_device_and_dtype_policy(monkeypatch):
    import torch

    from cai_dsl.run.context import ExecutionContext, resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    import cai_dsl.run.context as context

    monkeypatch.setattr(context, "cpu_has_native_bf16", lambda: False)
    cpu = ExecutionContext.create("auto", "auto")
    assert (cpu.device, cpu.use_cpu, cpu.bf16, cpu.torch_dtype()) == ("cpu", True, False, torch.float32)
    monkeypatch.setattr(context, "cpu_has_native_bf16", lambda: True)
    cpu = ExecutionContext.create("auto", "auto")  # a CPU with AVX512-BF16/AMX: bfloat16 weights, bf16 training
    assert (cpu.device, cpu.use_cpu, cpu.bf16, cpu.torch_dtype()) == ("cpu", True, True, torch.bfloat16)
    assert ExecutionContext.create("cpu", "float32").bf16 is False
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    gpu = ExecutionContext.create("auto", "auto")
    assert (gpu.device, gpu.use_cpu, gpu.bf16, gpu.torch_dtype()) == ("cuda", False, True, torch.bfloat16)
    assert ExecutionContext.create("cpu", "bfloat16").bf16 is True  # asked for: bfloat16 on any CPU


def _sl_data(run: Path, program) -> None:
    from cai_dsl.run.data import DATA_FILE

    run.mkdir(parents=True, exist_ok=True)
    (run / "program.json").write_text(program.to_json(), encoding="utf-8")
    record = {"id": "r1", "prompt": "hi", "helpful": False, "initial": "a", "rounds": [], "final": "hello", "stopped": "rounds"}
    (run / DATA_FILE).write_text(json.dumps(record) + "\n", encoding="utf-8")


class FakeTrainerConfig:
    """A trl config that reports the device and precision it was given (building a real one would touch CUDA)."""

    __dataclass_fields__: dict = {}

    def __init__(self, **kwargs):
        raise Reached("cpu" if kwargs["use_cpu"] else "cuda", "bfloat16" if kwargs["bf16"] else "float32")


def test_every_stage_asks_the_one_context(gpu, program, auto_target, tmp_path, monkeypatch):
    import trl

    monkeypatch.setattr(trl, "SFTConfig", FakeTrainerConfig)
    from cai_dsl.lang.resolver import resolve
    from cai_dsl.run.empirical import measure_principles  # noqa: F401 - the module loads
    from cai_dsl.run.eval import evaluate_models
    from cai_dsl.run.feedback import ModelPool, default_prompts, feedback_models_for, run_label
    from cai_dsl.run.policy.score import PolicyScorer
    from cai_dsl.run.sl_loop import ModelSet
    from cai_dsl.run.train.dpo import run_dpo
    from cai_dsl.run.train.reward_model import PreferencePair
    from cai_dsl.run.train.sft import train_sft

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}", encoding="utf-8")
    _sl_data(tmp_path / "sl", program)
    stages = {
        "sl": lambda: ModelSet(program).backend("policy"),
        "sft": lambda: train_sft(tmp_path / "sl", progress=False),
        "label": lambda: run_label(program, tmp_path / "label", default_prompts()[:1], show_progress=False),
        "dpo": lambda: run_dpo(program, tmp_path / "dpo", [PreferencePair("p", "q", "a", "b", 0.9)], show_progress=False),
        "eval": lambda: evaluate_models(program, PolicyScorer(resolve(ANTHROPIC), "rl_cai"), sl_adapter=adapter, show_progress=False),
        "feedback": lambda: feedback_models_for(program, ModelPool.of(program)),
    }
    for name, call in stages.items():
        with pytest.raises(Reached) as reached:
            call()
        assert (name, reached.value.device, reached.value.dtype) in ((name, "cuda", "auto"), (name, "cuda", "bfloat16"))
    from cai_dsl.run.empirical import empirical_lints

    src = tmp_path / "c.const"
    src.write_text('principle kind { compare "Which is kinder?"\n'
                   '  example compare { prompt "hi" a "Hello!" b "Go away." better a } }\ndeployment d { include * }\n')
    with pytest.raises(Reached) as reached:
        empirical_lints(resolve(str(src)), None, str(auto_target))
    assert reached.value.device == "cuda"
