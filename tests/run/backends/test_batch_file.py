"""The batch-file seam (issue 12, item 5): requests written as an OpenAI batch file, run by `cai batch run`
against `cai serve`, read back into the same records an online run gives."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import write_tiny_target

from cai_dsl.cli import app
from cai_dsl.run.backends import GenerationParams, Prompt
from cai_dsl.run.backends.batch_file import BatchFileBackend, BatchPending, custom_id, run_batch
from cai_dsl.run.backends.openai_backend import OpenAIBackend
from cai_dsl.run.serve import make_server
from cai_dsl.run.sl import SLOptions, default_prompts, prepare_job, run_sl

ROOT = Path(__file__).resolve().parents[3]
PAPER = ROOT / "constitutions" / "anthropic-2022.const"
PROMPTS = [Prompt.user("Name a colour."), Prompt.user("Say hi.", assistant_prefix="Hello")]
PARAMS = GenerationParams(max_new_tokens=6, temperature=0.7, seed=5)


@pytest.fixture(scope="module")
def server(tiny_backend, tiny_model_dir):
    # served under the target's model spec, as `vllm serve --served-model-name` would
    srv = make_server(tiny_backend, "127.0.0.1", 0, model_name=str(tiny_model_dir))
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(10)


def _batch(tmp_path, server, tiny_model_dir) -> BatchFileBackend:
    return BatchFileBackend(tmp_path / "batch", server.model_name, tokenizer=str(tiny_model_dir))


def test_requests_are_written_then_answered_from_the_results(tmp_path, server, tiny_model_dir):
    backend = _batch(tmp_path, server, tiny_model_dir)
    with pytest.raises(BatchPending, match="2 requests have no result yet") as info:
        backend.generate(PROMPTS, PARAMS)
    assert info.value.exit_code == 3
    lines = [json.loads(x) for x in backend.requests_path.read_text().splitlines()]
    assert [r["url"] for r in lines] == ["/v1/chat/completions", "/v1/completions"]
    assert all(r["custom_id"] == custom_id(r["url"], r["body"]) and r["method"] == "POST" for r in lines)
    with pytest.raises(BatchPending, match=r"\(0 added"):  # asking again adds nothing
        backend.generate(PROMPTS, PARAMS)
    sent, failed = run_batch(backend.requests_path, server.url, backend.directory / "results.jsonl")
    assert (sent, failed) == (2, 0)
    assert run_batch(backend.requests_path, server.url, backend.directory / "results.jsonl") == (0, 0)  # resumable
    online = OpenAIBackend(server.url, server.model_name, tokenizer=str(tiny_model_dir))
    assert _batch(tmp_path, server, tiny_model_dir).generate(PROMPTS, PARAMS) == online.generate(PROMPTS, PARAMS)


def test_scores_round_trip_and_equal_the_online_scores(tmp_path, server, tiny_model_dir):
    backend = _batch(tmp_path, server, tiny_model_dir)
    with pytest.raises(BatchPending):
        backend.score(PROMPTS, [" Yes", " No"])
    result = CliRunner().invoke(app, ["batch", "run", str(backend.requests_path), "--url", server.url])
    assert result.exit_code == 0, result.output
    assert "2 requests sent, 0 failed" in result.output
    scores = _batch(tmp_path, server, tiny_model_dir).score(PROMPTS, [" Yes", " No"])
    online = OpenAIBackend(server.url, server.model_name, tokenizer=str(tiny_model_dir)).score(PROMPTS, [" Yes", " No"])
    assert scores == online


def test_a_failed_request_is_reported_and_retried(tmp_path, server, tiny_model_dir):
    backend = _batch(tmp_path, server, tiny_model_dir)
    with pytest.raises(BatchPending):
        backend.generate(PROMPTS[:1], PARAMS)
    results = backend.directory / "results.jsonl"
    assert run_batch(backend.requests_path, "http://127.0.0.1:9/v1", results, concurrency=1) == (1, 1)
    with pytest.raises(Exception, match="batch request .* failed"):
        _batch(tmp_path, server, tiny_model_dir).generate(PROMPTS[:1], PARAMS)
    assert run_batch(backend.requests_path, server.url, results) == (1, 0)  # the failure is sent again
    assert _batch(tmp_path, server, tiny_model_dir).generate(PROMPTS[:1], PARAMS)[0].text


def test_sl_through_batch_files_gives_the_records_of_an_online_run(tmp_path, server, tiny_model_dir):
    tables = {"max_revisions": 1, "generation": {"max_new_tokens": 6, "temperature": 0.7, "top_p": 0.9}}
    batch_dir = tmp_path / "batch"
    batch = write_tiny_target(tmp_path / "batch.toml", tiny_model_dir, backend="batch",
                              backend_options={"batch_size": 4, "batch_dir": str(batch_dir)}, **tables)
    online = write_tiny_target(tmp_path / "online.toml", tiny_model_dir, backend="openai",
                               backend_options={"batch_size": 4, "base_url": server.url}, **tables)
    items = default_prompts(4, seed=0)
    options = SLOptions(rounds=1, gate=False)
    trips = 0
    while True:
        try:
            offline = run_sl(prepare_job(PAPER, "base", str(batch)), items, tmp_path / "offline", options=options,
                             progress=False)
            break
        except BatchPending:
            trips += 1
            assert trips < 10
            run_batch(batch_dir / "requests.jsonl", server.url, batch_dir / f"results-{trips}.jsonl")
    assert trips >= 3  # initial responses, critiques, revisions: each waits for the one before
    direct = run_sl(prepare_job(PAPER, "base", str(online)), items, tmp_path / "online", options=options, progress=False)
    fields = ("id", "initial", "rounds", "final", "stopped")
    assert [{k: r[k] for k in fields} for r in offline.records] == [{k: r[k] for k in fields} for r in direct.records]
    assert len(offline.records) == len(items)
