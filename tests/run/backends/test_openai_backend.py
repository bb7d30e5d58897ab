"""The OpenAI-compatible server (cai serve) and the OpenAI backend, against the tiny model."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cai_dsl.run.backends import BackendError, GenerationParams, Prompt
from cai_dsl.run.backends.openai_backend import OpenAIBackend
from cai_dsl.run.serve import make_server

PROMPTS = [
    Prompt.user("hi"),
    Prompt.user("Why is the sky blue? Explain like I am five.", system="Be brief."),
    Prompt.user("Name a colour.", assistant_prefix="My favourite colour is"),
]


def _start(server):
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread


@pytest.fixture(scope="module")
def server(tiny_backend):
    srv = make_server(tiny_backend, "127.0.0.1", 0)
    thread = _start(srv)
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


@pytest.fixture
def client(server, tiny_backend, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    return OpenAIBackend(server.url, tokenizer=tiny_backend.tokenizer, max_retries=0)


def _post(url: str, body: bytes, headers: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_models_endpoint_and_autodiscovery(server, client, tiny_model_dir):
    with urllib.request.urlopen(server.url + "/models", timeout=10) as resp:
        data = json.loads(resp.read())
    assert data["data"][0]["id"] == tiny_model_dir.name
    assert client.model == tiny_model_dir.name


def test_generate_agrees_with_direct_backend(client, tiny_backend):
    params = GenerationParams(max_new_tokens=6)
    remote = client.generate(PROMPTS, params)
    local = tiny_backend.generate(PROMPTS, params)
    assert [g.text for g in remote] == [g.text for g in local]
    assert remote[0].prompt_tokens == local[0].prompt_tokens
    assert remote[0].completion_tokens == local[0].completion_tokens
    assert all(g.finish_reason == "length" for g in remote)


def test_assistant_prefix_without_tokenizer_uses_continue_final_message(server, tiny_backend):
    client = OpenAIBackend(server.url, max_retries=0)
    params = GenerationParams(max_new_tokens=5)
    assert client.generate(PROMPTS[2:], params)[0].text == tiny_backend.generate(PROMPTS[2:], params)[0].text
    with pytest.raises(BackendError, match="tokenizer"):
        client.score(PROMPTS[:1], ["A"])


def test_stop_strings_through_the_server(client, tiny_backend):
    full = tiny_backend.generate(PROMPTS[:1], GenerationParams(max_new_tokens=8))[0].text
    stop = full[3:5]
    params = GenerationParams(max_new_tokens=8, stop=(stop,))
    assert client.generate(PROMPTS[:1], params)[0].text == full[: full.find(stop)]


def test_score_agrees_with_direct_backend(client, tiny_backend):
    options = ["A", " B", " Paris is nice"]
    remote = client.score(PROMPTS, options)
    local = tiny_backend.score(PROMPTS, options)
    for row_r, row_l in zip(remote, local, strict=True):
        assert row_r == pytest.approx(row_l, abs=1e-4)


def test_malformed_json_is_a_400(server):
    status, body = _post(server.url + "/chat/completions", b"{not json")
    assert status == 400
    assert body["error"]["type"] == "invalid_request_error"
    assert "JSON" in body["error"]["message"]
    status, body = _post(server.url + "/chat/completions", b"[1, 2]")
    assert status == 400
    status, body = _post(server.url + "/chat/completions", json.dumps({"messages": "hi"}).encode())
    assert status == 400 and body["error"]["param"] == "messages"
    status, body = _post(
        server.url + "/chat/completions", json.dumps({"messages": [{"role": "user", "content": "x"}], "n": 2}).encode()
    )
    assert status == 400 and body["error"]["param"] == "n"
    status, body = _post(server.url + "/nope", b"{}")
    assert status == 404
    # error replies keep a keep-alive connection usable
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=30)
    conn.request("POST", "/v1/chat/completions", body=b"{oops", headers={"Content-Type": "application/json"})
    first = conn.getresponse()
    assert first.status == 400
    first.read()
    conn.request("GET", "/v1/models")
    second = conn.getresponse()
    assert second.status == 200 and json.loads(second.read())["object"] == "list"
    conn.close()
    # the server is still alive
    with urllib.request.urlopen(server.url.replace("/v1", "/health"), timeout=10) as resp:
        assert json.loads(resp.read()) == {"status": "ok"}


def test_chat_logprobs(server):
    body = {
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 4,
        "temperature": 0,
        "logprobs": True,
        "top_logprobs": 2,
    }
    status, data = _post(server.url + "/chat/completions", json.dumps(body).encode())
    assert status == 200, data
    content = data["choices"][0]["logprobs"]["content"]
    assert len(content) == data["usage"]["completion_tokens"] == 4
    assert all(c["logprob"] <= 0 and len(c["top_logprobs"]) == 2 for c in content)
    assert "".join(c["token"] for c in content) == data["choices"][0]["message"]["content"]


def test_completions_echo_logprobs(server, tiny_backend):
    body = {"prompt": "The cat sat on the", "max_tokens": 0, "echo": True, "logprobs": 1}
    status, data = _post(server.url + "/completions", json.dumps(body).encode())
    assert status == 200, data
    choice = data["choices"][0]
    assert choice["text"] == "The cat sat on the"
    lp = choice["logprobs"]
    assert lp["token_logprobs"][0] is None
    assert len(lp["tokens"]) == len(tiny_backend.encode("The cat sat on the"))
    assert all(v <= 0 for v in lp["token_logprobs"][1:])
    body = {"prompt": ["Hello", [1, 2, 3]], "max_tokens": 3, "temperature": 0, "logprobs": 0}
    status, data = _post(server.url + "/completions", json.dumps(body).encode())
    assert status == 200, data
    assert [c["index"] for c in data["choices"]] == [0, 1]
    assert len(data["choices"][0]["logprobs"]["token_logprobs"]) >= 1


def test_transform_hook_and_api_key(tiny_backend, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    seen = []

    def shout(messages, answer):
        seen.append(messages)
        return answer.upper() + "!"

    srv = make_server(tiny_backend, transform=shout, api_key="sekret")
    thread = _start(srv)
    try:
        with pytest.raises(BackendError, match="HTTP 401"):
            OpenAIBackend(srv.url, model="m", max_retries=0).generate(PROMPTS[:1], GenerationParams(max_new_tokens=3))
        client = OpenAIBackend(srv.url, api_key="sekret", max_retries=0)
        out = client.generate(PROMPTS[:1], GenerationParams(max_new_tokens=3))[0]
        plain = tiny_backend.generate(PROMPTS[:1], GenerationParams(max_new_tokens=3))[0]
        assert out.text == plain.text.upper() + "!"
        assert seen == [[{"role": "user", "content": "hi"}]]
        monkeypatch.setenv("OPENAI_API_KEY", "sekret")
        assert OpenAIBackend(srv.url, max_retries=0).model == tiny_backend.loaded.name
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)


# -- retries, against a stub server ---------------------------------------------------------------------------


class _Flaky(BaseHTTPRequestHandler):
    plan: list[tuple[int, dict]]  # set per test by the fixture
    calls = 0

    def log_message(self, *args):
        pass

    def do_POST(self):  # noqa: N802
        type(self).calls += 1
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, headers = self.plan.pop(0) if self.plan else (200, {})
        if status == 200:
            body = {
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1},
            }
        else:
            body = {"error": {"message": f"busy ({status})"}}
        raw = json.dumps(body).encode()
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


@pytest.fixture
def flaky():
    handler: type[_Flaky] = type("Flaky", (_Flaky,), {"plan": [], "calls": 0})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = _start(srv)
    yield srv, handler
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def test_retries_503_then_succeeds(flaky):
    srv, handler = flaky
    handler.plan = [(503, {}), (429, {"Retry-After": "0.05"})]
    sleeps: list[float] = []
    client = OpenAIBackend(f"http://127.0.0.1:{srv.server_port}", model="m", backoff=0.01, sleep=sleeps.append)
    out = client.generate([Prompt.user("x")], GenerationParams(max_new_tokens=2))[0]
    assert out.text == "ok" and out.prompt_tokens == 3
    assert handler.calls == 3
    assert sleeps == [0.01, 0.05]  # exponential backoff, raised to the server's Retry-After


def test_gives_up_after_max_retries(flaky):
    srv, handler = flaky
    handler.plan = [(503, {})] * 10
    sleeps: list[float] = []
    client = OpenAIBackend(
        f"http://127.0.0.1:{srv.server_port}/v1", model="m", max_retries=2, backoff=0.1, sleep=sleeps.append
    )
    with pytest.raises(BackendError, match=r"after 3 attempts \(HTTP 503: busy"):
        client.generate([Prompt.user("x")])
    assert sleeps == [0.1, 0.2]


def test_client_errors_are_not_retried(flaky):
    srv, handler = flaky
    handler.plan = [(400, {})]
    client = OpenAIBackend(f"http://127.0.0.1:{srv.server_port}/v1", model="m", sleep=lambda s: None)
    with pytest.raises(BackendError, match="HTTP 400: busy"):
        client.generate([Prompt.user("x")])
    assert handler.calls == 1


def test_connection_refused_is_retried_then_explained():
    import socket

    with socket.socket() as s:  # find a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps: list[float] = []
    client = OpenAIBackend(f"http://127.0.0.1:{port}/v1", model="m", max_retries=1, sleep=sleeps.append)
    with pytest.raises(BackendError, match="Is the server running"):
        client.generate([Prompt.user("x")])
    assert len(sleeps) == 1


def test_bad_base_url():
    with pytest.raises(BackendError, match="base_url"):
        OpenAIBackend("localhost:8000")
