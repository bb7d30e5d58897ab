"""Crash safety of the training stages: ``kill -9`` at a random point of SFT, the preference model, PPO, DPO and GRPO, then a
rerun with the same arguments, gives exactly the artifacts of an uninterrupted run (every tensor equal, the same
metadata up to wall times), and the killed run never leaves a final artifact half written."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import write_tiny_target
from tests.run.train.crash_driver import run_stage
from tests.run.train.test_ppo import PPO_TABLES, _write_pm
from tests.run.train.test_sft import RECORDS, _run_dir, _target

ROOT = Path(__file__).resolve().parents[3]
ARTIFACT = {"sft": "adapter", "pm": "pm", "ppo": "policy", "dpo": "policy", "grpo": "policy"}  # the final directory each stage publishes
CHECKPOINTS = {"sft": "checkpoints/checkpoint-*/trainer_state.json", "pm": None, "ppo": "checkpoint/*",
               "dpo": "trainer/checkpoint-*/trainer_state.json",
               "grpo": "trainer/checkpoint-*/trainer_state.json"}  # the PM retrains
TIMES = {"seconds", "train_seconds", "elapsed", "created", "time", "train_runtime", "train_samples_per_second",
         "train_steps_per_second"}  # wall-clock fields: allowed to differ


def _tensors(directory: Path) -> dict[str, dict]:
    from safetensors.torch import load_file

    return {p.name: load_file(str(p)) for p in sorted(directory.glob("*.safetensors"))}


def _strip_times(value):
    if isinstance(value, dict):
        return {k: _strip_times(v) for k, v in value.items() if k not in TIMES}
    if isinstance(value, list):
        return [_strip_times(v) for v in value]
    return value


def _metadata(directory: Path) -> dict[str, object]:
    """Every JSON / JSONL file of ``directory`` (wall times removed), with paths made relative to it."""
    out: dict[str, object] = {}
    for p in sorted(directory.rglob("*.json")) + sorted(directory.rglob("*.jsonl")):
        text = p.read_text(encoding="utf-8").replace(str(directory), "OUT")
        rows = [json.loads(x) for x in text.splitlines() if x.strip()] if p.suffix == ".jsonl" else json.loads(text)
        out[str(p.relative_to(directory))] = _strip_times(rows)
    return out


def _diff(want, got, path: str = "") -> list[str]:
    """Where two JSON values differ (paths and both values), for the failure message."""
    if isinstance(want, dict) and isinstance(got, dict):
        return [d for k in sorted(set(want) | set(got)) for d in _diff(want.get(k), got.get(k), f"{path}/{k}")]
    if isinstance(want, list) and isinstance(got, list) and len(want) == len(got):
        return [d for i, (a, b) in enumerate(zip(want, got)) for d in _diff(a, b, f"{path}[{i}]")]
    return [] if want == got else [f"{path}: {want!r} != {got!r}"]


@pytest.fixture(scope="module")
def work(tmp_path_factory, tiny_model_dir):
    work = tmp_path_factory.mktemp("crash-work")
    (work / "model.txt").write_text(str(tiny_model_dir), encoding="utf-8")
    write_tiny_target(work / "tiny.toml", tiny_model_dir, **PPO_TABLES)
    _write_pm(work, tiny_model_dir)
    return work


def _prepare(stage: str, out: Path, work: Path, tiny_model_dir: Path) -> None:
    if stage == "sft":
        from cai_dsl.run.sl import prepare_job

        job = prepare_job(ROOT / "constitutions" / "anthropic-2022.const", "base", str(_target(work / "sft.toml", tiny_model_dir)))
        _run_dir(out, job, RECORDS)


def _driver(stage: str, work: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "tests.run.train.crash_driver", stage, str(work), str(out)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["sft", "pm", "ppo", "dpo", "grpo"])
def test_kill_9_then_rerun_gives_the_uninterrupted_artifacts(stage, tmp_path, work, tiny_model_dir):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    for out in (reference, killed):
        _prepare(stage, out, work, tiny_model_dir)
    import torch

    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the subprocess runs with one thread: the same kernels, the same sums
    try:
        started = time.perf_counter()
        run_stage(stage, work, reference)
        train_time = time.perf_counter() - started
    finally:
        torch.set_num_threads(torch_threads)

    proc = _driver(stage, work, killed)
    deadline = time.monotonic() + 180
    while not (killed / ".started").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    rng = random.Random(f"kill:{stage}")
    if CHECKPOINTS[stage]:  # after the first checkpoint, so that the rerun resumes from one
        while not any(killed.glob(CHECKPOINTS[stage])) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.3) * train_time)
    else:  # a seeded random point of the training itself (the subprocess runs about as fast as the reference did)
        time.sleep(rng.uniform(0.25, 0.75) * train_time)
    assert proc.poll() is None, f"the {stage} run finished before it could be killed: {proc.communicate()[1][-2000:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    final = killed / ARTIFACT[stage]
    assert not final.exists() or _tensors(final) == {}, "a killed run published its final artifact"

    rerun = _driver(stage, work, killed)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-3000:]

    a, b = _tensors(reference / ARTIFACT[stage]), _tensors(final)
    assert a.keys() == b.keys() and a
    for name in a:
        assert a[name].keys() == b[name].keys()
        for key in a[name]:
            assert torch.equal(a[name][key], b[name][key]), f"{stage}: {name}:{key} differs after kill -9 and rerun"
    want, got = _metadata(reference / ARTIFACT[stage]), _metadata(final)
    assert want == got, _diff(want, got)
