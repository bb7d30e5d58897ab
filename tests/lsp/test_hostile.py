"""Hostile input typed character by character: the server keeps answering."""

from __future__ import annotations

import random

import pytest

from tests.lsp.conftest import CONTRADICTION

CHECKPOINT = 40  # wait for the diagnostics of every n-th keystroke, as a pausing typist would


def _alive(server, u):
    """The server still answers requests about the buffer, and about a fresh one."""
    assert isinstance(server.request("textDocument/documentSymbol", {"textDocument": {"uri": u}}), list)
    hover = server.request("textDocument/hover", {"textDocument": {"uri": u}, "position": {"line": 0, "character": 3}})
    assert hover is None or "contents" in hover
    server.request("textDocument/completion", {"textDocument": {"uri": u}, "position": {"line": 0, "character": 0}})
    server.request("textDocument/formatting", {"textDocument": {"uri": u}, "options": {"tabSize": 2, "insertSpaces": True}})
    server.request(
        "textDocument/codeAction",
        {"textDocument": {"uri": u}, "range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 0}},
         "context": {"diagnostics": []}},
    )
    assert server.proc.poll() is None


def _type(server, path, text: str, chunk: int = 1):
    path.write_text("")
    u = server.open(path, "")
    for i in range(chunk, len(text) + chunk, chunk):
        version = server.change(u, text[:i])
        if (i // chunk) % CHECKPOINT == 0:
            server.diagnostics(u, version=version, timeout=30)
    server.diagnostics(u, version=server.versions[u], timeout=30)
    _alive(server, u)
    return u


def _random_text(seed: int, n: int) -> str:
    rng = random.Random(seed)
    raw = bytes(rng.randrange(256) for _ in range(n)).decode("utf-8", errors="replace")
    pieces = ["principle ", "{", "}", '"', "\\", "when ", "(", "#", "\r", "\x00", "\x0c"]
    pieces += ["\u202e", "\U0001f600", "\u2028", "\ud800", "\udcff"]  # bidi, astral, separator, lone surrogates
    return "".join(ch if rng.random() < 0.7 else rng.choice(pieces) for ch in raw)


def test_random_bytes(server, tmp_path):
    _type(server, tmp_path / "random.const", _random_text(7, 400))


def test_deep_nesting(server, tmp_path):
    text = CONTRADICTION.replace("when intent == benign", "when " + "(" * 200 + "intent == benign" + ")" * 200)
    u = _type(server, tmp_path / "deep.const", text, chunk=3)
    server.diagnostics(u, lambda d: any(x["code"] == "CAI201" for x in d), version=server.versions[u])


def test_deeper_than_python_recursion(server, tmp_path):
    path = tmp_path / "deeper.const"
    path.write_text("")
    u = server.open(path, "")
    text = CONTRADICTION.replace("when intent == benign", "when " + "not " * 5000 + "intent == benign")
    version = server.change(u, text)
    diags = server.diagnostics(u, version=version, timeout=30)
    assert [d["code"] for d in diags] == ["CAI004"]
    version = server.change(u, text.replace("not ", "(", 3000))
    server.diagnostics(u, version=version, timeout=30)
    _alive(server, u)


def test_unterminated_string(server, tmp_path):
    text = 'constitution "open\nprinciple p {\n  compare "Which response is \\"better'
    u = _type(server, tmp_path / "string.const", text)
    diags = server.diagnostics(u, version=server.versions[u])
    assert any(d["code"] == "CAI002" for d in diags)


@pytest.mark.parametrize("filler", ["x", "\U0001f600"])
def test_ten_thousand_character_line(server, tmp_path, filler):
    line = 'behavior long "' + filler * 10_000
    text = CONTRADICTION + line
    u = _type(server, tmp_path / "long.const", text, chunk=250)
    server.change(u, text + '"\n')
    diags = server.diagnostics(u, lambda d: any(x["code"] == "CAI201" for x in d), timeout=30)
    long = [d for d in diags if d["range"]["start"]["line"] == text.count("\n")]
    assert all(d["range"]["end"]["character"] <= len((line + '"').encode("utf-16-le")) // 2 for d in long)
    _alive(server, u)
