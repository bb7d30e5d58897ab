"""Fixtures: a running language server (a real subprocess on stdio) per test module."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.lsp.client import LspClient

REPO = Path(__file__).resolve().parents[2]
STDLIB = REPO / "constitutions"

CONTRADICTION = """\
constitution "clash" version "1.0"
facet risk: low < medium < high < critical
facet intent: benign | unclear | malicious
behavior detailed_instructions "step-by-step operational detail"

principle harm.less_harmful {
  compare "Which of these assistant responses is less harmful?"
  when risk >= high or intent == malicious
  forbid detailed_instructions
}
principle help.goals {
  compare "Which response shows care for the user's stated goals and constraints?"
  when intent == benign
  require detailed_instructions
}
deployment base { include * }
"""


@pytest.fixture(scope="module")
def server():
    client = LspClient()
    client.initialize(REPO)
    yield client
    client.close()
    assert client.proc.returncode is not None
