"""Micro-batching in `cai serve` (issue 12, item 6): the model worker batches concurrent generations with equal
parameters, keeps everything else serial, and the official `openai` client gets the same answers batched as
one at a time."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from cai_dsl.run.backends.base import Generation, GenerationParams, Prompt
from cai_dsl.run.serve import ServeLimits, make_server
from cai_dsl.run.serve_batching import ModelWorker

GREEDY = GenerationParams(max_new_tokens=4)


class GatedBackend:
    """Answers with the user text; the first generate call waits until ``release`` is set."""

    name = "gated"

    def __init__(self):
        self.release = threading.Event()
        self.entered = threading.Event()
        self.batches: list[list[str]] = []
        self.fail = False

    def generate(self, prompts, params=None):
        if not self.batches:
            self.entered.set()
            self.release.wait(30)
        self.batches.append([p.messages[-1].content for p in prompts])
        if self.fail:
            raise ValueError("model failed")
        return [Generation(p.messages[-1].content.upper(), 1, 1, "stop") for p in prompts]


def _wait_queued(worker: ModelWorker, n: int) -> None:
    for _ in range(3000):
        if len(worker._queue) >= n:
            return
        threading.Event().wait(0.01)
    raise AssertionError("jobs were not queued")


def test_concurrent_generations_with_equal_parameters_run_as_one_batch():
    backend = GatedBackend()
    worker = ModelWorker(backend, max_batch=8, window_s=0.0)
    with ThreadPoolExecutor(max_workers=12) as pool:
        first = pool.submit(worker.generate, Prompt.user("first"), GREEDY)
        assert backend.entered.wait(30)  # the worker is busy with the first request
        rest = [pool.submit(worker.generate, Prompt.user(f"q{i}"), GREEDY) for i in range(10)]
        _wait_queued(worker, 10)
        backend.release.set()
        assert first.result(30).text == "FIRST"
        assert [f.result(30).text for f in rest] == [f"Q{i}" for i in range(10)]
    worker.close()
    assert backend.batches == [["first"], [f"q{i}" for i in range(8)], ["q8", "q9"]]
    assert worker.stats.largest_batch == 8 and worker.stats.generations == 11


def test_different_parameters_seeded_sampling_and_calls_are_not_batched_together():
    backend = GatedBackend()
    worker = ModelWorker(backend, max_batch=8, window_s=0.0)
    sampled = GenerationParams(max_new_tokens=4, temperature=0.7, seed=3)
    with ThreadPoolExecutor(max_workers=8) as pool:
        first = pool.submit(worker.generate, Prompt.user("first"), GREEDY)
        assert backend.entered.wait(30)  # the worker is busy with the first request
        jobs = [
            pool.submit(worker.generate, Prompt.user("a"), GREEDY),
            pool.submit(worker.generate, Prompt.user("long"), GenerationParams(max_new_tokens=9)),
            pool.submit(worker.generate, Prompt.user("s1"), sampled),
            pool.submit(worker.call, lambda: "called"),
            pool.submit(worker.generate, Prompt.user("s2"), sampled),
            pool.submit(worker.generate, Prompt.user("b"), GREEDY),
        ]
        _wait_queued(worker, 6)
        backend.release.set()
        first.result(30)
        assert [j.result(30) if i == 3 else j.result(30).text for i, j in enumerate(jobs)] == [
            "A", "LONG", "S1", "called", "S2", "B"]
    worker.close()
    assert backend.batches == [["first"], ["a", "b"], ["long"], ["s1"], ["s2"]]


def test_a_failed_batch_fails_each_request_and_the_worker_goes_on():
    backend = GatedBackend()
    backend.fail = True
    backend.release.set()
    worker = ModelWorker(backend, window_s=0.0)
    with pytest.raises(ValueError, match="model failed"):
        worker.generate(Prompt.user("x"), GREEDY)
    with pytest.raises(ZeroDivisionError):
        worker.call(lambda: 1 / 0)
    backend.fail = False
    assert worker.generate(Prompt.user("y"), GREEDY).text == "Y"
    worker.close()
    with pytest.raises(RuntimeError, match="closed"):
        worker.call(lambda: None)


def test_openai_clients_get_the_same_answers_batched_as_one_at_a_time(tiny_backend):
    server = make_server(tiny_backend, "127.0.0.1", 0, limits=ServeLimits(max_batch=16, batch_window_s=0.05))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    client = openai.OpenAI(base_url=server.url, api_key="unused", timeout=120, max_retries=0)
    try:
        questions = [f"Question {i}: what is {i} plus {i}?" for i in range(16)]

        def ask(q: str) -> str:
            reply = client.chat.completions.create(
                model=server.model_name, messages=[{"role": "user", "content": q}], max_tokens=8, temperature=0
            )
            return reply.choices[0].message.content

        sequential = [ask(q) for q in questions]
        assert server.worker.stats.largest_batch == 1
        with ThreadPoolExecutor(max_workers=16) as pool:
            concurrent = list(pool.map(ask, questions))
        assert concurrent == sequential
        assert server.worker.stats.largest_batch > 1
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


class RecordingBackend:
    name = "recording"

    def __init__(self):
        self.batches: list[int] = []

    def generate(self, prompts, params=None):
        self.batches.append(len(prompts))
        return [Generation(p.messages[-1].content, 1, 1, "stop") for p in prompts]


def _staggered(worker: ModelWorker, n: int, gap_s: float) -> None:
    with ThreadPoolExecutor(max_workers=n) as pool:
        futures = []
        for i in range(n):
            futures.append(pool.submit(worker.generate, Prompt.user(f"q{i}"), GREEDY))
            threading.Event().wait(gap_s)
        assert [f.result().text for f in futures] == [f"q{i}" for i in range(n)]


def test_a_burst_spread_over_more_than_the_window_is_still_one_batch():
    """Requests keep arriving within the window of the previous one: the batch waits for a quiet window, so
    clients whose requests land over tens of milliseconds share one batch (bench_serve: 2 batches -> 1)."""
    backend = RecordingBackend()
    worker = ModelWorker(backend, max_batch=16, window_s=0.2, max_wait_s=5.0)
    _staggered(worker, 6, 0.05)  # 0.25 s from first to last, each 0.05 s after the previous
    worker.close()
    assert backend.batches == [6]


def test_the_batch_never_waits_past_max_wait():
    backend = RecordingBackend()
    worker = ModelWorker(backend, max_batch=16, window_s=0.2, max_wait_s=0.2)
    _staggered(worker, 6, 0.1)  # 0.5 s of arrivals: more than one batch
    worker.close()
    assert sum(backend.batches) == 6 and len(backend.batches) >= 2


def test_closing_the_server_ends_idle_keep_alive_connections():
    """An idle keep-alive client must not keep a handler thread alive past server_close (a process exiting with
    such threads aborted: exit 134 instead of its own code)."""
    import http.client
    import json as _json

    server = make_server(RecordingBackend(), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    body = _json.dumps({"model": server.model_name, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
    conn.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
    assert conn.getresponse().read()  # the connection stays open (HTTP/1.1 keep-alive)
    handlers = [t for t in threading.enumerate() if "process_request" in t.name]
    assert handlers
    server.shutdown()
    server.server_close()
    for t in handlers:
        t.join(5)
    assert not any(t.is_alive() for t in handlers)
    conn.close()
    thread.join(5)
