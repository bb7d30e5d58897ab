"""SL-CAI pipeline: inputs, the batched critique/revision loop, records, provenance, resumption."""

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

from cai_dsl.run.backends.base import Generation, GenerationParams, Prompt
from cai_dsl.run.sl import (
    BatchedGenerator,
    ModelSet,
    PromptItem,
    SLError,
    SLOptions,
    SLRunner,
    default_prompts,
    load_prompts,
    make_transform,
    prepare_job,
    revise_once,
    run_sl,
)

ROOT = Path(__file__).resolve().parents[2]
PAPER = ROOT / "constitutions" / "anthropic-2022.const"
HARMLESS = ROOT / "constitutions" / "harmless-helpful.const"


SL_TABLES = {
    "max_revisions": 2,
    "generation": {"max_new_tokens": 8, "temperature": 0.7, "top_p": 0.9},
    "sft": {"batch_size": 4, "max_seq_len": 256, "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}},
}


@pytest.fixture(scope="module")
def tiny_target(tmp_path_factory, tiny_model_dir):
    return write_tiny_target(tmp_path_factory.mktemp("target") / "tiny.toml", tiny_model_dir, **SL_TABLES)


@pytest.fixture(scope="module")
def paper_job():
    return prepare_job(PAPER, "base")


# ---------------------------------------------------------------------------------------------- a fake model


class FakeBackend:
    """Deterministic stand-in for a model: answers by what the last message asks."""

    name = "fake"
    batch_size = 8

    def __init__(self, satisfied_when: str = "SAFE") -> None:
        self.satisfied_when = satisfied_when
        self.calls: list[tuple[str, int]] = []
        self.prompts: list[Prompt] = []
        self.revisions = 0

    def generate(self, prompts, params=None):
        kind = "initial"
        out = []
        for p in prompts:
            last = p.messages[-1].content
            if last.startswith("CritiqueRequest:"):
                kind = "critique"
                convo = " ".join(m.content for m in p.messages)
                text = "No issues." if self.satisfied_when in convo else "The response could be more careful."
            elif last.startswith("RevisionRequest:"):
                kind = "revision"
                self.revisions += 1
                text = f"revision {self.revisions}"
            else:
                text = "initial answer"
            out.append(Generation(text=text, prompt_tokens=5, completion_tokens=3, finish_reason="stop"))
        self.calls.append((kind, len(prompts)))
        self.prompts.extend(prompts)
        return out

    def score(self, prompts, continuations):
        return [[-float(i) for i in range(len(continuations))] for _ in prompts]  # the first value wins


def _runner(job, backend, **options):
    return SLRunner(job.program, ModelSet.from_backend(job.program, backend), SLOptions(**options))


# ---------------------------------------------------------------------------------------------- inputs


def test_load_prompts_reads_ids_scenarios_and_helpful(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text(
        '{"id": "a", "prompt": "one", "scenario": {"topic": "general"}}\n\n'
        '{"prompt": "two", "helpful": true}\n{"id": 7, "prompt": "three"}\n',
        encoding="utf-8",
    )
    items = load_prompts(f)
    assert [i.id for i in items] == ["a", "line-3", "7"]
    assert items[0].scenario == {"topic": "general"} and items[1].helpful and not items[0].helpful
    assert [i.id for i in load_prompts(f, limit=2)] == ["a", "line-3"]


@pytest.mark.parametrize(
    "lines, message",
    [
        (['{"prompt": "ok"}', "{nope"], "p.jsonl:2: invalid JSON"),
        (['{"prompt": "ok"}', '["a list"]'], "p.jsonl:2: expected a JSON object"),
        (['{"text": "no prompt"}'], "p.jsonl:1: `prompt` must be a non-empty string"),
        (['{"prompt": "  "}'], "p.jsonl:1: `prompt` must be a non-empty string"),
        (['{"id": "x", "prompt": "a"}', '{"id": "x", "prompt": "b"}'], "p.jsonl:2: duplicate id `x` (first on line 1)"),
        (['{"prompt": "a", "scenario": ["topic"]}'], "p.jsonl:1: `scenario` must be an object"),
        (['{"prompt": "a", "helpful": "yes"}'], "p.jsonl:1: `helpful` must be true or false"),
        ([""], "no prompts in the file"),
    ],
)
def test_malformed_prompt_files_name_file_and_line(tmp_path, lines, message):
    f = tmp_path / "p.jsonl"
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(SLError) as err:
        load_prompts(f)
    assert message in str(err.value)
    assert str(err.value).startswith(str(f))


def test_missing_prompt_file(tmp_path):
    with pytest.raises(SLError, match="no such file"):
        load_prompts(tmp_path / "absent.jsonl")


def test_default_sample_is_deterministic_and_mixes_helpful_prompts():
    a = default_prompts(8, seed=0)
    assert [i.id for i in a] == [i.id for i in default_prompts(8, seed=0)]
    assert sum(i.helpful for i in a) == 2 and sum(not i.helpful for i in a) == 6
    assert all(i.id.startswith("hp-") == i.helpful for i in a)
    assert [i.id for i in default_prompts(8, seed=1)] != [i.id for i in a]
    everything = default_prompts(None)
    # the train split only (issue #10: held-out prompts are never sampled): 151 of the 221 red-team prompts (eval_fraction 0.3)
    assert sum(not i.helpful for i in everything) == 151 and sum(i.helpful for i in everything) == 51
    assert all(i.scenario for i in everything)
    with pytest.raises(SLError):
        default_prompts(0)


def test_prepare_job_errors(tmp_path):
    with pytest.raises(SLError, match="no such file"):
        prepare_job(tmp_path / "x.const", "base")
    with pytest.raises(SLError, match="no deployment `nope`.*base"):
        prepare_job(PAPER, "nope")
    with pytest.raises(SLError, match="unknown target `nowhere`"):
        prepare_job(PAPER, "base", "nowhere")


def test_prepare_job_keeps_the_source_texts(paper_job):
    assert set(paper_job.sources) == {rel for rel, _ in paper_job.program.provenance.files}
    assert "deployment base" in paper_job.sources["anthropic-2022.const"]


# ---------------------------------------------------------------------------------------------- the loop (fake model)


def test_pipeline_shape_batched_per_stage(paper_job):
    backend = FakeBackend()
    items = [PromptItem(id=f"p{i}", prompt=f"question {i}") for i in range(5)]
    results = _runner(paper_job, backend, rounds=2).run_chunk(items, "k")
    program = paper_job.program
    # one batched call per stage: initial, then critique + revision for each of the 2 rounds
    assert [k for k, _ in backend.calls] == ["initial", "critique", "revision", "critique", "revision"]
    assert all(n == 5 for _, n in backend.calls)
    for item, res in zip(items, results):
        assert res["initial"] == "initial answer"
        assert [t["round"] for t in res["rounds"]] == [0, 1]
        for t in res["rounds"]:
            assert t["principle"] == program.select_principles(t["round"], None, program.rng(item.id, t["round"]))[0]
            assert t["critique"] and t["revision"].startswith("revision") and not t["satisfied"]
        assert res["final"] == res["rounds"][-1]["revision"]
        assert res["stopped"] == "rounds"
        assert res["tokens"] == {"initial": 3, "critique": 6, "revision": 6}


def test_stop_rule_skips_revision_and_later_rounds(paper_job):
    backend = FakeBackend(satisfied_when="SAFE")
    items = [PromptItem(id="a", prompt="a SAFE question"), PromptItem(id="b", prompt="a risky question")]
    a, b = _runner(paper_job, backend, rounds=2).run_chunk(items, "k")
    assert a["stopped"] == "satisfied" and len(a["rounds"]) == 1
    assert a["rounds"][0]["satisfied"] and a["rounds"][0]["revision"] is None
    assert a["final"] == a["initial"] == "initial answer"
    assert b["stopped"] == "rounds" and len(b["rounds"]) == 2
    # the satisfied prompt left the batch: later stages only carry the other one
    assert backend.calls == [("initial", 2), ("critique", 2), ("revision", 1), ("critique", 1), ("revision", 1)]


def test_helpful_prompts_are_answered_not_revised(paper_job):
    backend = FakeBackend()
    items = [PromptItem(id="h", prompt="bake bread?", helpful=True), PromptItem(id="r", prompt="risky")]
    h, r = _runner(paper_job, backend, rounds=1).run_chunk(items, "k")
    assert h["stopped"] == "helpful" and h["rounds"] == [] and h["final"] == "initial answer"
    assert r["rounds"]


def test_given_response_is_critiqued_not_generated(paper_job):
    backend = FakeBackend()
    steps = []
    res = revise_once(
        paper_job.program,
        ModelSet.from_backend(paper_job.program, backend),
        "question",
        response="my answer",
        options=SLOptions(rounds=1),
        on_step=lambda kind, i, data: steps.append(kind),
    )
    assert res["initial"] == "my answer"
    assert [k for k, _ in backend.calls] == ["critique", "revision"]
    assert steps == ["initial", "critique", "revision"]


def test_history_mode_replays_earlier_rounds(paper_job):
    backend = FakeBackend()
    _runner(paper_job, backend, rounds=2).run_chunk([PromptItem(id="a", prompt="q")], "k")
    second_critique = backend.prompts[3]
    texts = [m.content for m in second_critique.messages]
    assert "initial answer" in texts and "revision 1" in texts  # the initial response, then round 1 as turns
    backend = FakeBackend()
    _runner(paper_job, backend, rounds=2, history=False).run_chunk([PromptItem(id="a", prompt="q")], "k")
    texts = [m.content for m in backend.prompts[3].messages]
    assert "revision 1" in texts and "initial answer" not in texts  # only the latest revision


def test_scenario_from_data_else_classifier():
    job = prepare_job(HARMLESS, "base")
    assert job.program.scenario_classifier.questions
    backend = FakeBackend()
    items = [
        PromptItem(id="tagged", prompt="q", scenario={"topic": "medical", "risk": "low"}),
        PromptItem(id="untagged", prompt="q"),
    ]
    tagged, untagged = _runner(job, backend, rounds=0).run_chunk(items, "k")
    assert tagged["scenario_source"] == "data" and tagged["scenario"]["topic"] == "medical"
    assert untagged["scenario_source"] == "classifier"
    # FakeBackend scores the first value highest: the classifier picks each facet's first value
    for q in job.program.scenario_classifier.questions:
        assert untagged["scenario"][q.facet] == (q.fixed or q.values[0])


def test_transform_revises_chat_answers(paper_job):
    backend = FakeBackend()
    transform = make_transform(paper_job.program, backend, options=SLOptions(rounds=1))
    assert transform([{"role": "user", "content": "hi"}], "draft") == "revision 1"
    assert backend.calls == [("critique", 1), ("revision", 1)]
    # nothing to critique when the conversation does not end with the user
    assert transform([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}], "y") == "y"


# ---------------------------------------------------------------------------------------------- the tiny model


def test_prefix_cached_generation_matches_the_backend(tiny_backend, paper_job):
    program = paper_job.program
    prompts = [
        Prompt.from_chat(program.critique_messages(f"question number {i}", "an answer" * (i + 1), program.critique_revision.pool[i]))
        for i in range(5)
    ]
    params = GenerationParams(max_new_tokens=6, temperature=0.0)
    expected = [g.text for g in tiny_backend.generate(prompts, params)]
    gen = BatchedGenerator(tiny_backend, batch_size=2)
    assert [g.text for g in gen.generate(prompts, params)] == expected
    assert len(gen._prefixes) == 1 and len(next(iter(gen._prefixes))) > 500  # the preamble ran once
    seen = []
    assert [g.text for g in gen.generate(prompts[:1], params, on_batch=lambda r, t: seen.append(r))] == expected[:1]
    assert seen == [1]
    # rows without a long common prefix take the backend's own path
    short = [Prompt.user("hello"), Prompt.user("bye")]
    assert [g.text for g in BatchedGenerator(tiny_backend).generate(short, params)] == [
        g.text for g in tiny_backend.generate(short, params)
    ]


def _sl(job, items, out, **options):
    return run_sl(job, items, out, options=SLOptions(**options), progress=False)


def test_records_provenance_and_resume(tmp_path, tiny_target, tiny_model_dir):
    job = prepare_job(PAPER, "base", str(tiny_target))
    items = default_prompts(6, seed=0)
    out = tmp_path / "run"
    result = _sl(job, items, out, rounds=1, chunk_size=2)
    assert result.new == 6 and result.resumed == 0
    lines = (out / "sl-data.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(x) for x in lines]
    assert sorted(r["id"] for r in records) == sorted(i.id for i in items)
    prov = job.program.provenance
    for r in records:
        assert set(r) >= {"id", "prompt", "scenario", "initial", "rounds", "final", "stopped", "provenance"}
        p = r["provenance"]
        assert p["source_hash"] == prov.source_hash and p["program_hash"] == prov.program_hash
        assert p["seed"] == 0 and p["target"] == "tiny" and p["policy_model"] == str(tiny_model_dir)
        assert p["deployment"] == "base" and p["constitution"] == "anthropic-2022"
        assert r["scenario_source"] == "data"
        if not r["helpful"]:
            assert len(r["rounds"]) == 1 and r["rounds"][0]["principle"] in job.program.critique_revision.pool
    assert json.loads((out / "program.json").read_text())["provenance"]["program_hash"] == prov.program_hash
    assert "anthropic-2022.const" in json.loads((out / "sources.json").read_text())
    # a rerun with the same arguments does nothing
    again = _sl(job, items, out, rounds=1, chunk_size=2)
    assert again.new == 0 and again.resumed == 6 and again.records == result.records
    # lose the last 3 records (and tear a line): the rerun recomputes them identically (sampling included)
    torn = "\n".join(lines[:3]) + "\n" + lines[3][:20]
    (out / "sl-data.jsonl").write_text(torn, encoding="utf-8")
    resumed = _sl(job, items, out, rounds=1, chunk_size=2)
    assert resumed.new == 3 and resumed.resumed == 3
    assert {r["id"]: r for r in resumed.records} == {r["id"]: r for r in records}
    # other arguments: refused, nothing mixed
    with pytest.raises(SLError, match="different arguments"):
        _sl(job, items, out, rounds=2, chunk_size=2)


def _cai(*args: str) -> list[str]:
    return [sys.executable, "-c", "from cai_dsl.cli import main; main()", *args]


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def test_kill_9_and_resume_gives_the_uninterrupted_records(tmp_path, tiny_target):
    args = ["sl", str(PAPER), "-d", "base", "-t", str(tiny_target), "--limit", "8", "--rounds", "1",
            "--chunk-size", "2", "--no-train", "--no-progress"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    reference = tmp_path / "reference"
    subprocess.run(_cai(*args, "--out", str(reference)), check=True, env=env, capture_output=True, timeout=300)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cai(*args, "--out", str(killed)), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = random.Random().randint(1, 6)
    deadline = time.monotonic() + 240
    data = killed / "sl-data.jsonl"
    while proc.poll() is None and _lines(data) < target and time.monotonic() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = _lines(data)
    assert 1 <= partial < 8
    done = subprocess.run(_cai(*args, "--out", str(killed)), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"{8 - partial} new, {partial} resumed" in done.stdout

    def load(path: Path) -> dict[str, dict]:
        rows = [json.loads(x) for x in (path / "sl-data.jsonl").read_text(encoding="utf-8").splitlines()]
        assert len(rows) == len({r["id"] for r in rows})  # no duplicates
        return {r["id"]: r for r in rows}

    assert load(killed) == load(reference)
