"""AI feedback: the judging arithmetic (soft labels, position debiasing, ensembles, chain of thought), prompt
files, and the resumable `cai label` job on the tiny model."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_tiny_target

ROOT = Path(__file__).resolve().parents[2]
ANTHROPIC = str(ROOT / "constitutions" / "anthropic-2022.const")


def tiny_target(tmp_path: Path, model_dir: Path) -> str:
    generation = {"max_new_tokens": 6, "temperature": 0.9, "top_p": 0.95, "cot_max_new_tokens": 6}
    return str(write_tiny_target(tmp_path / "tiny.toml", model_dir, max_principles_per_comparison=2, generation=generation))


def compiled(deployment: str = "rl_cai", target: str = "smollm2-cpu", source: str = ANTHROPIC):
    from cai_dsl.compile.compiler import compile_file

    program, diags = compile_file(source, deployment, target)
    assert program is not None, [d.message for d in diags if d.is_error]
    return program


class FakeBackend:
    """Scores (A)/(B) by a rule on the rendered comparison; generates a fixed reasoning."""

    name = "fake"

    def __init__(self, rule):
        self.rule = rule
        self.scored = []

    def score(self, prompts, continuations):
        assert list(continuations) == ["A", "B"]
        out = []
        for p in prompts:
            text = p.messages[-1].content
            a = text.split("(A) ", 1)[1].split("\n(B) ", 1)[0]
            b = text.split("\n(B) ", 1)[1]
            self.scored.append((a, b, p.assistant_prefix))
            out.append(list(self.rule(a, b)))
        return out

    def generate(self, prompts, params):
        from cai_dsl.run.backends.base import Generation

        return [Generation("the first one is kinder", 1, 5, "stop") for _ in prompts]


def prefers(word: str, strength: float = 2.0):
    """log-probs favouring the option whose text contains ``word`` by ``strength`` nats."""
    return lambda a, b: (0.0, -strength) if word in a else (-strength, 0.0)


def always_a(strength: float = 1.0):
    return lambda a, b: (0.0, -strength)


def test_soft_label_debias_and_ensemble_arithmetic():
    from cai_dsl.run.feedback import FeedbackModel, FeedbackScorer, PairQuery

    program = compiled()
    assert program.comparison.position_debias
    content = FeedbackModel(FakeBackend(prefers("good")), weight=1.0, name="content")
    positional = FeedbackModel(FakeBackend(always_a()), weight=3.0, name="position")
    q = PairQuery(key="x", conversation="hi", first="a good answer", second="a bad answer", principles=("cai.compare.p00",))

    (j,) = FeedbackScorer(program, [content]).judge([q])
    p_good = 1 / (1 + math.exp(-2.0))
    d = j.details["cai.compare.p00"]
    assert d["p_ab"] == pytest.approx([p_good])  # first as (A): P(A) favours the good answer
    assert d["p_ba"] == pytest.approx([1 - p_good])  # second as (A): P(A) is the bad answer's
    assert j.p_first == pytest.approx(p_good)  # (p_ab + 1 - p_ba) / 2

    # a pure position preference cancels out under debiasing
    (j,) = FeedbackScorer(program, [positional]).judge([q])
    assert j.p_first == pytest.approx(0.5)

    # two models: weighted mean of their debiased labels (weights 1 and 3)
    (j,) = FeedbackScorer(program, [content, positional]).judge([q])
    assert j.votes["cai.compare.p00"] == pytest.approx((p_good * 1 + 0.5 * 3) / 4)


def test_principles_sampled_per_comparison_and_seeded():
    from cai_dsl.run.feedback import FeedbackModel, FeedbackScorer, PairQuery

    program = compiled(deployment="base")
    scorer = FeedbackScorer(program, [FeedbackModel(FakeBackend(prefers("good")))])
    draws = {tuple(scorer.principles_for(PairQuery(key=f"k{i}", conversation="q", first="a", second="b"))) for i in range(30)}
    assert all(len(d) == program.comparison.principles_per_comparison for d in draws)
    assert len(draws) > 3  # different prompts draw different principles
    again = scorer.principles_for(PairQuery(key="k1", conversation="q", first="a", second="b"))
    assert tuple(again) in draws and again == scorer.principles_for(PairQuery(key="k1", conversation="x", first="y", second="z"))


def test_chain_of_thought_is_clamped():
    from cai_dsl.run.feedback import FeedbackModel, FeedbackScorer, PairQuery

    program = compiled(deployment="rl_cai_cot")
    cot = program.comparison.chain_of_thought
    assert cot.enabled
    backend = FakeBackend(prefers("good", strength=8.0))
    (j,) = FeedbackScorer(program, [FeedbackModel(backend)]).judge(
        [PairQuery(key="x", conversation="hi", first="good", second="bad", principles=("cai.compare.p00",))]
    )
    d = j.details["cai.compare.p00"]
    assert d["p_ab"] == [cot.clamp_max] and d["p_ba"] == [cot.clamp_min]
    assert d["reasoning"] == ["the first one is kinder"]
    assert all(prefix.endswith(cot.answer_prefix) and "the first one is kinder" in prefix for _, _, prefix in backend.scored)


def test_no_compare_principles_is_a_clear_error(tmp_path):
    from cai_dsl.run.feedback import FeedbackModel, FeedbackScorer, RLAIFError

    src = tmp_path / "c.const"
    src.write_text('principle a { critique "Is it rude?" revise "Make it polite." }\ndeployment d { include * }\n')
    program = compiled("d", source=str(src))
    with pytest.raises(RLAIFError, match="no principle with `compare` text"):
        FeedbackScorer(program, [FeedbackModel(FakeBackend(always_a()))])


def test_prompt_files_and_split(tmp_path):
    from cai_dsl.run.feedback import RLAIFError, default_prompts, load_prompt_file, split_of

    bad = tmp_path / "p.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"prompt": \n')
    with pytest.raises(RLAIFError, match=r"p\.jsonl:2: invalid JSON"):
        load_prompt_file(bad)
    bad.write_text('{"prompt": "ok", "id": "a"}\n\n{"prompt": "again", "id": "a"}\n')
    with pytest.raises(RLAIFError, match=r"p\.jsonl:3: duplicate id `a`"):
        load_prompt_file(bad)
    bad.write_text('{"prompt": ""}\n')
    with pytest.raises(RLAIFError, match=r"p\.jsonl:1: `prompt` must be"):
        load_prompt_file(bad)
    train, held = default_prompts("train"), default_prompts("eval")
    assert not {p.id for p in train} & {p.id for p in held}
    assert 0.1 < len(held) / (len(train) + len(held)) < 0.3
    assert train[0].id.startswith("rt-") and train[1].id.startswith("hp-")  # interleaved
    assert split_of("rt-0001") == split_of("rt-0001")


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_label_is_resumable_and_deterministic(tmp_path, tiny_model_dir):
    from cai_dsl.run.feedback import RLAIFError, default_prompts, run_label

    program = compiled(target=tiny_target(tmp_path, tiny_model_dir))
    prompts = default_prompts()[:6]  # batch size 4: two chunks
    full = run_label(program, tmp_path / "a", prompts, show_progress=False)
    assert full.records == full.new == 6
    ref = _records(tmp_path / "a" / "preferences.jsonl")
    r0 = ref[0]
    assert {"prompt", "chosen", "rejected", "probability", "principles", "scores", "provenance"} <= set(r0)
    assert 0.5 <= r0["probability"] <= 1.0 and r0["chosen"] in r0["responses"] and r0["rejected"] in r0["responses"]
    assert set(r0["scores"]) == set(r0["principles"]) and r0["provenance"]["program_hash"] == program.provenance.program_hash

    # a run killed after its first chunk, whose last record was torn mid-write
    class Killed(Exception):
        pass

    def kill(start):
        raise Killed

    with pytest.raises(Killed):
        run_label(program, tmp_path / "b", prompts, show_progress=False, on_chunk=kill)
    path = tmp_path / "b" / "preferences.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    assert len(lines) == 4
    path.write_text("".join(lines[:3]) + lines[3][:25])  # torn last line
    resumed = run_label(program, tmp_path / "b", prompts, show_progress=False)
    assert resumed.new == 3 and resumed.records == 6
    assert _records(path) == ref

    # nothing left to do; a different program is refused
    assert run_label(program, tmp_path / "b", prompts, show_progress=False).new == 0
    other = compiled(deployment="base", target=tiny_target(tmp_path, tiny_model_dir))
    with pytest.raises(RLAIFError, match="different arguments"):
        run_label(other, tmp_path / "b", prompts, show_progress=False)


def test_cli_label_bad_prompts_file(tmp_path):
    bad = tmp_path / "prompts.jsonl"
    bad.write_text('{"prompt": "fine"}\n{oops}\n')
    proc = subprocess.run(
        [sys.executable, "-c", "from cai_dsl.cli import main; main()", "label", ANTHROPIC, "-d", "rl_cai",
         "--prompts", str(bad), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"{bad}:2: invalid JSON" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-c", "from cai_dsl.cli import main; main()", "label", ANTHROPIC, "-d", "nope", "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2 and "no deployment `nope`" in proc.stderr and "Traceback" not in proc.stderr


# ---------------------------------------------------------------------------------------------------- label signal


def _signal_record(i: int, p_ab: float, p_ba: float, mass: float, policy=(None, None)) -> dict:
    p_first = (p_ab + 1 - p_ba) / 2
    return {"id": f"r{i}", "responses": [f"first {i}", f"second {i}"], "p_first": p_first, "policy_scores": list(policy),
            "scores": {"p0": {"p_ab": [p_ab], "p_ba": [p_ba], "mass_ab": [mass], "mass_ba": [mass]}}}


def test_binomial_tail_by_hand():
    from cai_dsl.run.label_signal import binomial_tail

    assert binomial_tail(9, 10) == pytest.approx(11 / 1024)  # C(10,9) + C(10,10) over 2^10
    assert binomial_tail(0, 5) == 1.0 and binomial_tail(3, 3) == pytest.approx(1 / 8)


def test_position_biased_feedback_has_no_signal_and_labels_come_from_the_policy():
    from cai_dsl.run.label_signal import label_record, measure_signal

    # the embedded model's pattern: ~87% on B in both orders -> never order-consistent
    rows = [_signal_record(i, 0.13, 0.13, 0.3, policy=(1.0, 0.0) if i % 2 else (0.2, 0.2)) for i in range(16)]
    signal = measure_signal(rows)
    assert (signal.comparisons, signal.consistent, signal.consistency) == (16, 0, 0.0)
    assert signal.p_value == 1.0 and signal.position_bias == pytest.approx(0.13) and signal.option_mass == pytest.approx(0.3)
    assert not signal.has_signal and signal.source == "policy" and signal.feedback_weight == 0.0
    assert sum(signal.label_histogram) == 16 and signal.label_quantiles[2] == pytest.approx(0.5)
    decided = label_record(rows[1], signal)  # policy prefers the first response
    assert decided["source"] == "policy" and decided["chosen"] == "first 1" and decided["probability"] == 1.0
    assert not decided["no_signal"] and decided["p_first"] == rows[1]["p_first"]
    tie = label_record(rows[0], signal)
    assert tie["probability"] == 0.5 and tie["no_signal"] and tie["policy_p"] == 0.5
    undecided = label_record(_signal_record(99, 0.13, 0.13, 0.3), signal)  # no policy scores: a no-signal label
    assert undecided["probability"] == 0.5 and undecided["no_signal"] and undecided["policy_p"] is None


def test_consistent_feedback_has_signal_and_partial_signal_mixes():
    from cai_dsl.run.label_signal import SignalRule, label_record, measure_signal

    good = [_signal_record(i, 0.9, 0.1, 0.8, policy=(0.0, 1.0)) for i in range(12)]
    signal = measure_signal(good)
    assert signal.consistency == 1.0 and signal.p_value == pytest.approx(0.5**12) and signal.has_signal
    assert signal.source == "feedback" and signal.consistency_ci[0] > 0.7
    record = label_record(good[0], signal)
    assert record["source"] == "feedback" and record["chosen"] == "first 0" and record["probability"] == pytest.approx(0.9)

    # consistent but the model hardly answers A/B (mass 0.2): some signal, w = 2 * (consistency - 0.5)
    mixed_rows = [_signal_record(i, 0.9, 0.1, 0.2, policy=(0.0, 1.0)) if i < 9 else _signal_record(i, 0.9, 0.9, 0.2, policy=(0.0, 1.0))
                  for i in range(12)]
    mixed = measure_signal(mixed_rows)
    assert mixed.consistency == pytest.approx(0.75) and not mixed.has_signal
    assert mixed.source == "mixed" and mixed.feedback_weight == pytest.approx(0.5)
    r = label_record(mixed_rows[0], mixed)  # 0.5 * 0.9 + 0.5 * 0 = 0.45: the second response wins with 0.55
    assert r["source"] == "mixed" and r["chosen"] == "second 0" and r["probability"] == pytest.approx(0.55)
    forced = measure_signal(mixed_rows, SignalRule(source="feedback"))
    assert forced.source == "feedback" and "forced" in forced.reason


def test_option_mass_is_recorded_per_order():
    from cai_dsl.run.feedback import FeedbackModel, FeedbackScorer, PairQuery

    program = compiled()
    (j,) = FeedbackScorer(program, [FeedbackModel(FakeBackend(lambda a, b: (-1.0, -2.0)))]).judge(
        [PairQuery(key="x", conversation="hi", first="one", second="two", principles=("cai.compare.p00",))]
    )
    d = j.details["cai.compare.p00"]
    assert d["mass_ab"] == pytest.approx([math.exp(-1) + math.exp(-2)]) and d["mass_ba"] == d["mass_ab"]


def test_label_pairs_with_policy_scorer_writes_signal_and_sources(tmp_path, tiny_model_dir):
    import cai_dsl
    from cai_dsl.run.feedback import default_prompts, label_pairs, read_label_manifest
    from cai_dsl.run.policy.score import PolicyScorer

    program = compiled(target=tiny_target(tmp_path, tiny_model_dir))
    scorer = PolicyScorer(cai_dsl.load(ANTHROPIC), "rl_cai")
    summary = label_pairs(program, scorer, tmp_path / "l", default_prompts()[:4], show_progress=False)
    assert summary.signal is not None and summary.signal.comparisons >= 4 and summary.records == 4
    rows = _records(summary.path)
    assert all(r["source"] == summary.signal.source and "provisional" not in r for r in rows)
    assert all(len(r["policy_scores"]) == 2 for r in rows) and summary.sources == {summary.signal.source: 4}
    assert summary.no_signal == sum(r["no_signal"] for r in rows)
    manifest = read_label_manifest(tmp_path / "l")
    assert manifest["signal"] == summary.signal and manifest["records"] == 4
    again = label_pairs(program, scorer, tmp_path / "l", default_prompts()[:4], show_progress=False)
    assert again.new == 0 and _records(summary.path) == rows


def test_cli_rl_rejects_unknown_algorithm_and_reward(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-c", "from cai_dsl.cli import main; main()", "rl", ANTHROPIC, "-d", "rl_cai",
                               "--out", str(tmp_path), *args], capture_output=True, text=True, timeout=120)

    proc = run("--algo", "sac")
    assert proc.returncode == 2 and "--algo must be ppo, dpo or grpo" in proc.stderr
    proc = run("--reward", "vibes")
    assert proc.returncode == 2 and "--reward must be one of auto, policy, pm, policy+pm" in proc.stderr
    proc = run("--algo", "dpo")
    assert proc.returncode == 2 and "no preference file" in proc.stderr and "Traceback" not in proc.stderr


# ---------------------------------------------------------------------------------------------------- crash safety


def test_kill_9_during_cai_label_and_rerun_gives_the_uninterrupted_records(tmp_path, tiny_model_dir):
    import os
    import random
    import signal
    import time

    cai = [sys.executable, "-c", "from cai_dsl.cli import main; main()"]
    args = ["label", ANTHROPIC, "-d", "rl_cai", "-t", tiny_target(tmp_path, tiny_model_dir), "--limit", "8",
            "--batch-size", "2", "--quiet"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "CAI_NO_PROGRESS": "1"}
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    subprocess.run([*cai, *args, "--out", str(reference)], check=True, env=env, capture_output=True, timeout=300)
    proc = subprocess.Popen([*cai, *args, "--out", str(killed)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    data = killed / "preferences.jsonl"

    def lines() -> int:
        try:
            return data.read_bytes().count(b"\n")
        except FileNotFoundError:
            return 0

    target, deadline = random.Random().randint(1, 6), time.monotonic() + 240
    while proc.poll() is None and lines() < target and time.monotonic() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = lines()
    assert 1 <= partial < 8
    done = subprocess.run([*cai, *args, "--out", str(killed)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"labelled {8 - partial} new pair(s) (8 in the file)" in done.stdout
    rows = _records(data)
    assert len(rows) == len({r["id"] for r in rows}) == 8  # no duplicates, none lost
    assert {r["id"]: r for r in rows} == {r["id"]: r for r in _records(reference / "preferences.jsonl")}
    assert data.read_bytes() == (reference / "preferences.jsonl").read_bytes()
