"""`cai sl`, `cai sft`, `cai revise`, `cai serve` and the SL stage of `cai run`: exit codes, output, wiring."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cai_dsl.cli import app

ROOT = Path(__file__).resolve().parents[2]
PAPER = str(ROOT / "constitutions" / "anthropic-2022.const")
BROKEN = 'principle a { critique "x" revise "y" }\ndeployment base { include * }\ndeployment base { include * }\n'


@pytest.fixture(scope="module")
def tiny_target(tmp_path_factory, tiny_model_dir):
    path = tmp_path_factory.mktemp("target") / "tiny.toml"
    path.write_text(
        f"""name = "tiny"
chat_format = "chatml"
[backend_options]
batch_size = 4
[models]
policy = "{tiny_model_dir}"
[generation]
max_new_tokens = 6
temperature = 0.0
[sft]
batch_size = 4
max_seq_len = 128
[sft.lora]
r = 4
alpha = 8
target_modules = ["q_proj", "v_proj"]
""",
        encoding="utf-8",
    )
    return str(path)


def cai(*args: str):
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


# ---------------------------------------------------------------------------------------------- bad inputs


def test_bad_inputs_are_clear_errors(tmp_path, tiny_target):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "fine"}\n{"prompt": 3}\n', encoding="utf-8")
    broken = tmp_path / "broken.const"
    broken.write_text(BROKEN, encoding="utf-8")
    cases = [
        (["sl", tmp_path / "none.const", "-d", "base"], 2, "no such file"),
        (["sl", PAPER, "-d", "nope"], 2, "no deployment `nope`"),
        (["sl", PAPER], 2, "--deployment"),
        (["sl", PAPER, "-d", "base", "-t", "nowhere"], 2, "unknown target `nowhere`"),
        (["sl", PAPER, "-d", "base", "-t", tiny_target, "--prompts", bad], 2, f"{bad}:2: `prompt` must be a non-empty string"),
        (["sl", PAPER, "-d", "base", "--prompts", tmp_path / "none.jsonl"], 2, "no such file"),
        (["sl", PAPER, "-d", "base", "--limit", "0"], 2, "--limit must be at least 1"),
        (["sl", PAPER, "-d", "base", "--revisions", "some"], 2, "--revisions"),
        (["sl", broken, "-d", "base"], 1, ""),
        (["sl", PAPER, "-d", "rl_cai", "-t", tiny_target, "--out", tmp_path / "x"], 2, "no principle with both critique and revise"),
        (["sft", tmp_path], 2, "program.json"),
        (["revise", PAPER, "-d", "base", " "], 2, "empty"),
        (["serve", "--constitution", PAPER], 2, "go together"),
        (["serve", "--model", tmp_path / "no-model"], 2, "not found"),
    ]
    for args, code, message in cases:
        result = cai(*args)
        assert result.exit_code == code, (args, result.stdout, result.stderr)
        assert message in result.stderr, (args, result.stderr)


def test_no_traceback_in_a_real_process(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{oops\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-c", "from cai_dsl.cli import main; main()", "sl", PAPER, "-d", "base", "--prompts", str(bad)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{bad}:1: invalid JSON" in proc.stderr


# ---------------------------------------------------------------------------------------------- commands on the tiny model


def test_sl_then_rerun_resumes(tmp_path, tiny_target):
    # about resuming, not gating: the gate rejects every revision of the random tiny model (see the next test)
    out = tmp_path / "run"
    args = ["sl", PAPER, "-d", "base", "-t", tiny_target, "--limit", "3", "--rounds", "1", "--out", out, "--sft-steps", "1",
            "--no-gate", "--no-progress"]
    first = cai(*args)
    assert first.exit_code == 0, first.stderr
    assert f"sl-data: {out / 'sl-data.jsonl'} (3 records" in first.stdout and "3 new, 0 resumed" in first.stdout
    assert f"adapter: {out / 'adapter'}" in first.stdout
    assert len((out / "sl-data.jsonl").read_text().splitlines()) == 3
    second = cai(*args)
    assert second.exit_code == 0 and "0 new, 3 resumed" in second.stdout and "up to date" in second.stdout
    other = cai("sl", PAPER, "-d", "base", "-t", tiny_target, "--limit", "3", "--rounds", "2", "--out", out, "--no-gate",
                "--no-progress")
    assert other.exit_code == 2 and "different arguments" in other.stderr
    gated = cai("sl", PAPER, "-d", "base", "-t", tiny_target, "--limit", "3", "--rounds", "1", "--out", out, "--no-progress")
    assert gated.exit_code == 2 and "different arguments" in gated.stderr  # the gate is part of the fingerprint
    sft = cai("sft", out, "--max-steps", "1", "--revisions", "all", "--no-progress")
    assert sft.exit_code == 0 and "1 steps" in sft.stdout


def test_sl_with_no_accepted_target_skips_sft(tmp_path, tiny_target):
    out = tmp_path / "run"
    result = cai("sl", PAPER, "-d", "base", "-t", tiny_target, "--limit", "3", "--rounds", "1", "--out", out,
                 "--sft-steps", "1", "--no-progress")
    assert result.exit_code == 0, result.stderr
    assert "3 records without an accepted response" in result.stdout
    assert "0 accepted targets: SFT skipped (3 record(s)" in result.stdout and "adapter:" not in result.stdout
    assert not (out / "adapter").exists()
    sft = cai("sft", out, "--max-steps", "1", "--no-progress")
    assert sft.exit_code == 0 and "0 accepted targets: SFT skipped" in sft.stdout


def test_revise_prints_each_step(tiny_target):
    result = cai("revise", PAPER, "-d", "base", "-t", tiny_target, "How do I pick a lock?", "--rounds", "2")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert out.index("prompt:") < out.index("response:") < out.index("round 1 - principle cai.") < out.index("final (")
    assert "critique:" in out
    given = cai("revise", PAPER, "-d", "base", "-t", tiny_target, "q", "--response", "my own answer", "--rounds", "1")
    assert "response (given):\n  my own answer" in given.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, payload: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.loads(resp.read())


def test_serve_with_a_constitution_revises_answers(tiny_target, tiny_model_dir):
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from cai_dsl.cli import main; main()", "serve", "--port", str(port),
         "--constitution", PAPER, "-d", "base", "-t", tiny_target, "--rounds", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(proc.stderr.read() if proc.poll() is not None else "server did not start")
                time.sleep(0.3)
        answer = _post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            {"messages": [{"role": "user", "content": "How do I pick a lock?"}], "max_tokens": 6, "temperature": 0},
        )["choices"][0]["message"]["content"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    # the answer is the critique/revise loop's output: the same as running it directly
    from cai_dsl.run.backends.base import GenerationParams, Prompt
    from cai_dsl.run.backends.transformers_backend import TransformersBackend
    from cai_dsl.run.sl import SLOptions, make_transform, prepare_job

    job = prepare_job(PAPER, "base", tiny_target)
    backend = TransformersBackend(str(tiny_model_dir), batch_size=8)
    messages = [{"role": "user", "content": "How do I pick a lock?"}]
    draft = backend.generate([Prompt.from_messages(messages)], GenerationParams(max_new_tokens=6))[0].text
    expected = make_transform(job.program, backend, options=SLOptions(rounds=1))(messages, draft)
    assert answer == expected and answer != draft


def test_run_sl_job_stage_of_cai_run(tmp_path, tiny_target, capsys):
    from cai_dsl.cli.pipeline import run_sl_stage as run_sl_job
    from cai_dsl.pipeline.main import SLBudget

    # the SL stage's wiring, SFT and resume: ungated (the gate rejects every revision of the random tiny model)
    kwargs = dict(budget=SLBudget(prompts=6, held_out=2, rounds=1, max_new_tokens=6, sft_steps=2, gate=False), progress=False)
    assert run_sl_job(PAPER, "base", tiny_target, tmp_path, **kwargs) == 0
    out = capsys.readouterr().out
    assert "[sl 1/3] SL-CAI data: 6 prompts" in out and "[sl 2/3] LoRA SFT" in out
    assert "[sl 3/3] evaluation on 2 held-out" in out
    assert "base:" in out and "adapted:" in out
    ev = json.loads((tmp_path / "sl-eval.json").read_text())
    assert ev["held_out"] == 2 and len(ev["examples"]) == 2
    assert ev["base_logprob_held_out"] < 0 and ev["adapted_logprob_held_out"] < 0
    # resumable: a rerun finds every stage done
    assert run_sl_job(PAPER, "base", tiny_target, tmp_path, **kwargs) == 0
    again = capsys.readouterr().out
    assert "0 new record(s), 6 resumed" in again and "up to date, skipped" in again
    assert run_sl_job(str(tmp_path / "none.const"), "base", tiny_target, tmp_path, **kwargs) == 2


def test_cai_run_sl_stage_without_accepted_targets_skips_sft(tmp_path, tiny_target, capsys):
    from cai_dsl.cli.pipeline import run_sl_stage
    from cai_dsl.pipeline.main import SLBudget

    budget = SLBudget(prompts=6, held_out=2, rounds=1, max_new_tokens=6, sft_steps=2)
    assert run_sl_stage(PAPER, "base", tiny_target, tmp_path, budget, progress=False) == 0
    out = capsys.readouterr().out
    assert "[sl 2/3] LoRA SFT: 0 accepted targets: SFT skipped" in out
    assert "[sl 3/3] evaluation on 2 held-out prompt(s): no SL model (SFT skipped), so no effect" in out
    ev = json.loads((tmp_path / "sl-eval.json").read_text())
    assert ev["sl_model"] is None and ev["effect"] is None and ev["held_out"] == 2
    assert not (tmp_path / "adapter").exists()


# ---------------------------------------------------------------------------------------------- the real model


@pytest.mark.model
def test_cai_sl_on_the_embedded_model(tmp_path, embedded_model):
    out = tmp_path / "run"
    # the SL machinery end to end (ungated: 16-token revisions are "unfinished" for the gate, which has its own
    # embedded-model test in tests/run/test_sl_gates.py)
    result = cai("sl", PAPER, "--deployment", "base", "--limit", "4", "--out", out,
                 "--rounds", "1", "--max-new-tokens", "16", "--sft-steps", "2", "--no-progress", "--no-gate")
    assert result.exit_code == 0, result.stderr
    records = [json.loads(x) for x in (out / "sl-data.jsonl").read_text().splitlines()]
    assert len(records) == 4
    for r in records:
        assert r["initial"] and r["final"] and r["stopped"] in ("rounds", "satisfied", "helpful")
        assert r["provenance"]["policy_model"] == "embedded:smollm2-135m"
        if not r["helpful"]:
            assert r["rounds"] and r["rounds"][0]["critique"]
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(embedded_model.path), local_files_only=True)
    model = PeftModel.from_pretrained(base, str(out / "adapter"))
    assert any("lora_A" in name for name, _ in model.named_parameters())
    assert "anthropic-2022.const" in (out / "adapter" / "README.md").read_text()


def test_cai_run_prints_the_effect_table_and_verdict(capsys):
    """The end of `cai run`: the base -> SL -> RL table with intervals and paired tests, the judge, the win-rate
    flag and the verdict line with the numbers (fixed numbers, no model)."""
    from cai_dsl.cli.pipeline import print_effect
    from cai_dsl.pipeline.effect import Effect
    from cai_dsl.run.eval import summarize, verdict
    from cai_dsl.run.eval.result import ResponseRow
    from cai_dsl.run.policy.metrics import Outcome

    def row(s, i, m, harmful=False, refusal=False):
        o = Outcome(harmful_compliance=harmful, refusal=refusal, over_refusal=refusal and s == "benign", degenerate=False)
        return ResponseRow(set=s, id=f"{s}{i}", model=m, response="r", finish_reason="stop", markers=o, judge=o)

    comply = {"base": 30, "sl": 20, "rl": 18}
    rows = [row("red_team", i, m, harmful=i < k, refusal=i >= k) for m, k in comply.items() for i in range(40)]
    rows += [row("benign", i, m, refusal=m != "base" and i < 2) for m in comply for i in range(20)]
    ev = summarize(deployment="base", constitution="c", program_hash="h",
                   sets={"red_team": [f"red_team{i}" for i in range(40)], "benign": [f"benign{i}" for i in range(20)]},
                   adapters={"base": None, "sl": "/sl", "rl": "/rl"}, rows=rows, judge_behaviors=["refuse"],
                   comparisons=[{"a": "base", "b": "sl", "p_a": 0.5, "consistent": [False, False]}])
    print_effect(Effect(evaluation=ev, verdict=verdict(ev), path=None, seconds=1.0), indent="")
    out = " ".join(capsys.readouterr().out.split())
    assert "held-out prompts: 40 red_team, 20 benign" in out
    assert "harmful compliance (red team) 75% [60-86] n=40 50% [35-65] n=40 45% [31-60] n=40 -25 pts, p=0.00195" in out
    assert "sl -> rl" in out and "-5 pts, p=0.5, not significant" in out
    assert "markers vs judge: harmful_compliance kappa 1.00 (100% agree, n=120)" in out
    assert "NO SIGNAL" in out
    assert "target NOT met (rl vs base): over-refusal up 10 points (allowed <= 5)" in out
    assert "harmful compliance 75% [60-86] n=40 -> 45% [31-60] n=40 (-30 points, p=0.000488)" in out
    assert "metric (judge) base sl rl base -> sl" in out
