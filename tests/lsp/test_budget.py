"""A slow semantic check never blocks syntax diagnostics, and runs out as an information."""

from __future__ import annotations

import random
import time

import pytest

from tests.lsp.client import LspClient
from tests.lsp.conftest import REPO


def _dense(n: int = 160, facets: int = 8, values: int = 5, seed: int = 1) -> str:
    """Many principles on one behavior with dense conditions: thousands of solver queries."""
    rng = random.Random(seed)
    lines = ['constitution "dense" version "1.0"']
    lines += [f"facet f{f}: " + " < ".join(f"v{i}" for i in range(values)) for f in range(facets)]
    lines.append('behavior b "b"')

    def term() -> str:
        return f"f{rng.randrange(facets)} {rng.choice(['<', '>=', '==', '!='])} v{rng.randrange(values)}"

    for i in range(n):
        effect = "require b" if i % 2 else "forbid b"
        when = f"({term()} or {term()}) and ({term()} or {term()})"
        lines.append(f'principle p{i} {{\n  compare "Which response is better?"\n  when {when}\n  {effect}\n}}')
    lines.append("deployment base { include * }")
    return "\n".join(lines) + "\n"


@pytest.fixture
def budgeted():
    client = LspClient()
    client.initialize(REPO, {"budget": 2})
    yield client
    client.close()


def test_slow_check_gives_could_not_decide_and_never_blocks_typing(budgeted, tmp_path):
    path = tmp_path / "dense.const"
    text = _dense()
    path.write_text(text)
    u = budgeted.open(path)
    budgeted.diagnostics(u, version=1, timeout=30)  # names first, at once
    time.sleep(0.5)  # the semantic check is now running in the worker
    started = time.monotonic()
    version = budgeted.change(u, text + "principle {")
    diags = budgeted.diagnostics(u, lambda d: any(x["code"] == "CAI001" for x in d), version=version, timeout=30)
    assert time.monotonic() - started < 3, "the syntax error waited for the solver"
    version = budgeted.change(u, text)
    diags = budgeted.diagnostics(u, lambda d: any(x["code"] == "LSP001" for x in d), version=version, timeout=60)
    info = next(d for d in diags if d["code"] == "LSP001")
    assert info["severity"] == 3
    assert info["message"].startswith("could not decide within 2 s: the semantic checks of deployment `base`")
    assert text.split("\n")[info["range"]["start"]["line"]].startswith("deployment base")
    # the rest still comes: names and wording lints (the solver's results for `base` do not)
    assert not [d for d in diags if d["code"].startswith("CAI2")]
    assert any(d["code"].startswith("CAI3") for d in diags)
    assert budgeted.request("textDocument/hover", {"textDocument": {"uri": u}, "position": {"line": 10, "character": 11}})
