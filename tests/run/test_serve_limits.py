"""`cai serve` under hostile input and load (issue 13, item 7): limits, OpenAI-style errors, timeouts, auth.

A server on the tiny model (loopback only); no wall-clock assertions: every client has a generous timeout,
and the properties are the statuses and error objects.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from cai_dsl.cli import app
from cai_dsl.run.serve import ServeError, ServeLimits, make_server

LIMITS = ServeLimits(max_body_bytes=64 << 10, max_tokens=64, max_prompts=4, timeout_s=20.0)
CHAT = "/v1/chat/completions"
USER = [{"role": "user", "content": "hi"}]


@contextmanager
def _serving(backend, **kwargs):
    srv = make_server(backend, "127.0.0.1", 0, **kwargs)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(10)


@pytest.fixture(scope="module")
def server(tiny_backend):
    with _serving(tiny_backend, limits=LIMITS) as srv:
        yield srv


def _request(server, method: str, path: str, body: bytes | dict | None = None, headers: dict | None = None):
    """(status, decoded JSON body) of one request on a fresh connection."""
    raw = json.dumps(body).encode() if isinstance(body, dict) else body
    conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=120)
    try:
        conn.request(method, path, body=raw, headers={"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()


def _assert_error(status: int, body: dict, expected_status: int, param: str | None = None) -> dict:
    assert status == expected_status, body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if param is not None:
        assert error["param"] == param, error
    return error


def _raw_exchange(server, data: bytes) -> bytes:
    """Send ``data`` on a raw socket and read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", server.server_port), timeout=120) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_body_over_the_limit_is_a_413_before_reading(server):
    # only the headers are sent: the answer comes from Content-Length alone, then the connection closes
    head = f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {10 << 20}\r\n\r\n"
    reply = _raw_exchange(server, head.encode())
    status_line, _, rest = reply.partition(b"\r\n")
    assert b" 413 " in status_line
    body = json.loads(rest.split(b"\r\n\r\n", 1)[1])
    assert body["error"]["code"] == "request_too_large"


def test_max_tokens_is_bounded(server):
    for key in ("max_tokens", "max_completion_tokens"):
        status, body = _request(server, "POST", CHAT, {"messages": USER, key: LIMITS.max_tokens + 1})
        _assert_error(status, body, 400, key)
    status, body = _request(server, "POST", "/v1/completions", {"prompt": "hi", "max_tokens": 10**9})
    _assert_error(status, body, 400, "max_tokens")
    status, body = _request(server, "POST", CHAT, {"messages": USER, "max_tokens": LIMITS.max_tokens, "stop": "e"})
    assert status == 200, body


def test_unknown_model_is_a_404(server):
    status, body = _request(server, "POST", CHAT, {"model": "gpt-4o", "messages": USER, "max_tokens": 2})
    assert _assert_error(status, body, 404, "model")["code"] == "model_not_found"
    status, body = _request(server, "POST", "/v1/completions", {"model": "gpt-4o", "prompt": "hi"})
    _assert_error(status, body, 404, "model")
    status, body = _request(server, "POST", CHAT, {"model": 7, "messages": USER})
    _assert_error(status, body, 400, "model")
    status, body = _request(server, "POST", CHAT, {"model": server.model_name, "messages": USER, "max_tokens": 2})
    assert status == 200 and body["model"] == server.model_name


@pytest.mark.parametrize(
    "field, value",
    [
        ("tools", [{"type": "function", "function": {"name": "f"}}]),
        ("tool_choice", "required"),
        ("response_format", {"type": "json_object"}),
        ("n", 2),
        ("logprobs", "yes"),
        ("stream", True),
        ("frequency_penalty", 0.5),
        ("logit_bias", {"1": 5}),
        ("no_such_field", 1),
    ],
)
def test_unsupported_fields_are_refused_by_name(server, field, value):
    status, body = _request(server, "POST", CHAT, {"messages": USER, "max_tokens": 2, field: value})
    error = _assert_error(status, body, 400, field)
    assert field in error["message"]


def test_neutral_values_of_unsupported_fields_are_accepted(server):
    req = {"messages": USER, "max_tokens": 2, "tools": [], "response_format": {"type": "text"}, "n": 1,
           "frequency_penalty": 0, "user": "someone"}
    status, body = _request(server, "POST", CHAT, req)
    assert status == 200, body


def test_completions_prompt_count_is_limited(server):
    status, body = _request(server, "POST", "/v1/completions", {"prompt": ["a"] * (LIMITS.max_prompts + 1)})
    assert "at most" in _assert_error(status, body, 400, "prompt")["message"]
    status, body = _request(server, "POST", "/v1/completions", {"prompt": ["a"] * LIMITS.max_prompts, "max_tokens": 1})
    assert status == 200 and len(body["choices"]) == LIMITS.max_prompts


def test_malformed_bodies(server):
    _assert_error(*_request(server, "POST", CHAT, b"[" * 60000), 400)  # nested deeper than the JSON parser
    _assert_error(*_request(server, "POST", CHAT, b"\xff\xfe"), 400)
    _assert_error(*_request(server, "POST", CHAT, {"messages": USER, "temperature": "hot"}), 400, "temperature")
    _assert_error(*_request(server, "POST", CHAT, {"messages": USER, "echo": 3}), 400, "echo")
    _assert_error(*_request(server, "POST", CHAT, {"messages": [{"role": "tool", "content": "x"}]}), 400, "messages")
    _assert_error(*_request(server, "POST", "/v1/completions", {"prompt": [[10**9]]}), 400, "prompt")


def test_half_sent_request_times_out(tiny_backend):
    # a body promised but never sent, and a request line never finished: both connections are dropped
    with _serving(tiny_backend, limits=replace(LIMITS, timeout_s=0.5)) as srv:
        head = f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{{\"messages\""
        reply = _raw_exchange(srv, head.encode())
        assert reply == b"" or b" 408 " in reply.partition(b"\r\n")[0]
        assert _raw_exchange(srv, b"POST /v1/chat/compl") == b""
        assert _request(srv, "GET", "/health") == (200, {"status": "ok"})


def test_api_key_and_non_loopback_bind(tiny_backend):
    with pytest.raises(ServeError, match="API key"):
        make_server(tiny_backend, "0.0.0.0", 0)
    result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--model", "embedded:none"])
    assert result.exit_code == 2 and "API key" in result.stderr
    with _serving(tiny_backend, api_key="sekret", limits=LIMITS) as srv:
        big = b"{" + b" " * (32 << 10)
        error = _assert_error(*_request(srv, "POST", CHAT, big, {"Authorization": "Bearer wrong"}), 401)
        assert error["type"] == "authentication_error"
        _assert_error(*_request(srv, "GET", "/v1/models"), 401)
        ok = {"messages": USER, "max_tokens": 2}
        status, body = _request(srv, "POST", CHAT, ok, {"Authorization": "Bearer sekret"})
        assert status == 200, body


def test_twenty_concurrent_clients_and_malformed_requests(server):
    good = {"messages": USER, "max_tokens": 3, "temperature": 0}
    cases = []
    for i in range(20):
        if i % 4 == 0:
            cases.append((CHAT, b"{broken", 400))
        elif i % 4 == 1:
            cases.append(("/v1/completions", json.dumps({"prompt": ["x"] * 50}).encode(), 400))
        else:
            cases.append((CHAT, json.dumps({**good, "seed": i}).encode(), 200))

    def one(case):
        path, body, expected = case
        status, reply = _request(server, "POST", path, body)
        return status, expected, reply

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(one, cases))
    for status, expected, reply in results:
        assert status == expected, reply
        if expected == 200:
            assert reply["choices"][0]["message"]["role"] == "assistant"
        else:
            assert set(reply["error"]) == {"message", "type", "param", "code"}
    assert _request(server, "GET", "/health") == (200, {"status": "ok"})
