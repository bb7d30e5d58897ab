"""`evaluate_models` on the tiny model: held-out sets only, greedy answers per model (adapters switched), markers
and judge outcomes, paired tests, a resumable record file, and the comparison-program win rate with its signal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import write_tiny_target

ROOT = Path(__file__).resolve().parents[3]
CORE = str(ROOT / "constitutions" / "harmless-helpful.const")


@pytest.fixture(scope="module")
def adapters(tmp_path_factory, tiny_model_dir):
    import torch
    from peft import LoraConfig, get_peft_model

    from cai_dsl.run.loading import load_model

    out = tmp_path_factory.mktemp("adapters")
    for name, seed in (("sl", 1), ("rl", 2)):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = get_peft_model(load_model(str(tiny_model_dir)).model,
                                   LoraConfig(task_type="CAUSAL_LM", r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
        model.save_pretrained(str(out / name))
    return out


def test_evaluate_models_on_the_tiny_model(tmp_path, tiny_model_dir, adapters):
    from cai_dsl.compile.compiler import compile_file
    from cai_dsl.lang.resolver import resolve
    from cai_dsl.run.data import split_of
    from cai_dsl.run.eval import EvalOptions, SetLimits, evaluate_models
    from cai_dsl.run.policy.score import PolicyScorer

    target = str(write_tiny_target(tmp_path / "tiny.toml", tiny_model_dir))
    program, _ = compile_file(CORE, "base", target)
    scorer = PolicyScorer(resolve(CORE), "base")
    options = EvalOptions(limits=SetLimits(red_team=3, benign=2, helpful=1), max_new_tokens=6, compare_prompts=1)
    kwargs = dict(sl_adapter=adapters / "sl", rl_adapter=adapters / "rl", options=options, out_dir=tmp_path / "eval", show_progress=False)
    ev = evaluate_models(program, scorer, **kwargs)
    assert ev.names == ("base", "sl", "rl")
    assert {s: len(ids) for s, ids in ev.sets.items()} == {"red_team": 3, "benign": 2, "helpful": 1}
    assert all(split_of(i) == "eval" for ids in ev.sets.values() for i in ids)  # held-out prompts only
    assert len(ev.rows) == 3 * 6
    for m in ev.models:
        assert m.rates["harmful_compliance"].n == 3 and m.rates["over_refusal"].n == 2 and m.rates["degeneration"].n == 6
        assert m.judge["refusal"].n == 3 and m.comparisons == 4  # 2 prompts x 2 other models
        interval = m.rates["harmful_compliance"].interval
        assert interval is not None and 0.0 <= interval[0] <= interval[1] <= 1.0
    assert [(t.a, t.b) for t in ev.paired["harmful_compliance"]] == [("base", "sl"), ("base", "rl"), ("sl", "rl")]
    assert all(t.n == 3 and 0.0 <= t.p <= 1.0 for t in ev.paired["harmful_compliance"])
    assert {a.metric for a in ev.agreement} == {"harmful_compliance", "refusal", "over_refusal"}
    assert ev.comparison is not None and ev.comparison.consistent.n > 0
    assert set(ev.judge_behaviors) == {"refuse", "detailed_instructions"}
    answers = {(r.model, r.id): r.response for r in ev.rows}
    assert any(answers[("base", i)] != answers[("sl", i)] for i in ev.sets["red_team"])  # adapters switched
    saved = json.loads((tmp_path / "eval" / "models.json").read_text())
    assert saved["models"][0]["name"] == "base" and saved["paired"]["harmful_compliance"][0]["a"] == "base"
    lines = (tmp_path / "eval" / "records.jsonl").read_text().splitlines()
    again = evaluate_models(program, scorer, **kwargs)  # resumed: nothing generated or judged again
    assert again.models == ev.models and again.paired == ev.paired
    assert (tmp_path / "eval" / "records.jsonl").read_text().splitlines() == lines
    assert sum('"key": "gen:' in line for line in lines) == 18 and sum('"key": "judge:' in line for line in lines) == 18


def test_identical_answers_share_one_judgement(tmp_path, tiny_model_dir, adapters, monkeypatch):
    """The judge sees only (prompt, response): answers two models gave alike are judged once, each keeps a record."""
    from cai_dsl.compile.compiler import compile_file
    from cai_dsl.lang.resolver import resolve
    from cai_dsl.run.eval import EvalOptions, SetLimits, evaluate_models
    from cai_dsl.run.policy.detectors import DetectorSet
    from cai_dsl.run.policy.score import PolicyScorer

    target = str(write_tiny_target(tmp_path / "tiny.toml", tiny_model_dir))
    program, _ = compile_file(CORE, "base", target)
    scorer = PolicyScorer(resolve(CORE), "base")
    judged: list[tuple[str, str]] = []
    original = DetectorSet.detect_batch

    def spy(self, responses, prompts=None):
        if self.kind == "judge":
            judged.extend(zip(prompts, responses))
        return original(self, responses, prompts)

    monkeypatch.setattr(DetectorSet, "detect_batch", spy)
    options = EvalOptions(limits=SetLimits(red_team=3, benign=2, helpful=0), max_new_tokens=4)
    ev = evaluate_models(program, scorer, sl_adapter=adapters / "sl", rl_adapter=adapters / "sl", options=options,
                         out_dir=tmp_path / "eval", show_progress=False)  # sl and rl: the same adapter, the same answers
    distinct = {(r.set, r.id, r.response) for r in ev.rows}
    assert len(ev.rows) == 15 and len(judged) == len(set(judged)) <= len(distinct) < 15
    by_model = {(r.model, r.set, r.id): r.judge for r in ev.rows}
    assert all(by_model[("sl", s, i)] == by_model[("rl", s, i)] for (_, s, i) in by_model)


def test_cli_eval_models_prints_the_table(tmp_path, tiny_model_dir, adapters):
    from typer.testing import CliRunner

    from cai_dsl.cli import app

    target = str(write_tiny_target(tmp_path / "tiny.toml", tiny_model_dir))
    args = ["eval", "models", "--constitution", CORE, "-d", "base", "--sl", str(adapters / "sl"), "-t", target,
            "--limit", "2", "--max-new-tokens", "4", "--compare", "0", "--out", str(tmp_path / "run"), "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.stdout + str(result.exception)
    out = " ".join(result.stdout.split())
    assert "held-out prompts: 2 red_team, 2 benign" in out and "harmful compliance (red team)" in out
    assert "base -> sl" in out and "markers vs judge:" in out and "target" in out
    assert (tmp_path / "run" / "eval" / "models.json").is_file()
    bad = CliRunner().invoke(app, args[:-1] + ["--max-new-tokens", "0"])
    assert bad.exit_code == 2 and "--max-new-tokens must be at least 1" in bad.stderr


def test_evaluation_through_batch_files_equals_the_in_process_one(tmp_path, tiny_model_dir, adapters):
    """The `batch` target: every model's answers, then the judge's scores, then the comparison votes wait in the
    batch file; `cai serve` with the adapters under their served names answers them; the evaluation read back is
    the in-process one."""
    import threading

    from cai_dsl.compile.compiler import compile_file
    from cai_dsl.lang.resolver import resolve
    from cai_dsl.run.backends.batch_file import BatchPending, run_batch
    from cai_dsl.run.eval import EvalOptions, SetLimits, evaluate_models
    from cai_dsl.run.eval.models import served_name
    from cai_dsl.run.loading import load_model
    from cai_dsl.run.policy.score import PolicyScorer
    from cai_dsl.run.serve import make_server
    from cai_dsl.run.serve_adapters import load_served_adapters

    batch_dir = tmp_path / "batch"
    online, _ = compile_file(CORE, "base", str(write_tiny_target(tmp_path / "online.toml", tiny_model_dir)))
    offline, _ = compile_file(CORE, "base", str(write_tiny_target(
        tmp_path / "batch.toml", tiny_model_dir, backend="batch", backend_options={"batch_dir": str(batch_dir)})))
    scorer = PolicyScorer(resolve(CORE), "base")
    options = EvalOptions(limits=SetLimits(red_team=3, benign=2, helpful=1), max_new_tokens=6, compare_prompts=1)
    kwargs = dict(sl_adapter=adapters / "sl", rl_adapter=adapters / "rl", options=options, show_progress=False)
    lora = {served_name(n, adapters / n): adapters / n for n in ("sl", "rl")}
    backend, served = load_served_adapters(load_model(str(tiny_model_dir)), lora, batch_size=4)
    srv = make_server(backend, "127.0.0.1", 0, model_name=online.run.models.policy, adapters=served)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    waits = []
    try:
        while True:
            try:
                via_files = evaluate_models(offline, scorer, out_dir=tmp_path / "offline", **kwargs)
                break
            except BatchPending as exc:
                waits.append(str(exc))
                assert len(waits) < 6, waits
                run_batch(batch_dir / "requests.jsonl", srv.url, batch_dir / f"results-{len(waits)}.jsonl")
    finally:
        srv.shutdown()
        srv.server_close()
    assert [w.split(" wait in")[0] for w in waits] == [
        "evaluation: the answers of base, sl, rl", "evaluation: the judge's scores", "evaluation: the comparison program's votes"]
    assert all(f"--lora {name}={path}" in waits[0] for name, path in lora.items())
    direct = evaluate_models(online, scorer, out_dir=tmp_path / "online", **kwargs)

    def table(ev):
        return [(r.model, r.set, r.id, r.response, r.markers, r.judge) for r in ev.rows]

    assert table(via_files) == table(direct)
    assert via_files.comparison.consistent.n == direct.comparison.consistent.n > 0

