"""The files in editors/ stay in step with the grammar."""

from __future__ import annotations

import json
import re

from cai_dsl.lsp.completion import keywords
from tests.lsp.conftest import REPO


def test_textmate_grammar_highlights_every_keyword():
    grammar = json.loads((REPO / "editors" / "const.tmLanguage.json").read_text())
    assert grammar["scopeName"] == "source.const"
    word_rules = [re.compile(p["match"]) for p in grammar["patterns"] if "match" in p and "\\b(" in p["match"]]
    missing = [k for k in keywords() if not any(r.fullmatch(k) for r in word_rules)]
    assert not missing, f"add these keywords to editors/const.tmLanguage.json: {missing}"


def test_language_configuration_is_json():
    config = json.loads((REPO / "editors" / "language-configuration.json").read_text())
    assert config["comments"]["lineComment"] == "# "
