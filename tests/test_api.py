"""The scripting API: cai_dsl.load / cai_dsl.check / cai_dsl.compile, and a cheap `import cai_dsl`."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import cai_dsl
from cai_dsl.core.errors import EXIT_DIAGNOSTICS, CaiError

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "constitutions" / "anthropic-2022.const"

CLASH = """\
facet intent: benign | malicious
behavior detailed_instructions "step-by-step operational detail"
principle harm { compare "Which is less harmful?" when intent == malicious forbid detailed_instructions }
principle help { compare "Which is more helpful?" require detailed_instructions }
deployment base { include * }
"""


def test_import_is_cheap_and_lazy():
    code = "import sys, cai_dsl; print(sorted(m for m in sys.modules if m.startswith(('cai_dsl.', 'pydantic', 'z3', 'torch'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_load_check_compile_round_trip():
    constitution = cai_dsl.load(PAPER)
    diagnostics = cai_dsl.check(constitution)
    assert not [d for d in diagnostics if d.is_error]
    program = cai_dsl.compile(constitution, "base", target="smollm2-cpu")
    assert program.provenance.deployment == "base" and program.verify_hash()
    # the callable stage packages stay callable after their submodules are imported
    importlib.import_module("cai_dsl.check.checker")
    importlib.import_module("cai_dsl.compile.compiler")

    assert cai_dsl.check(constitution) == diagnostics
    assert cai_dsl.compile(constitution, "base", target="smollm2-cpu").to_json() == program.to_json()


def test_load_raises_a_cai_error_with_the_diagnostics(tmp_path):
    path = tmp_path / "broken.const"
    path.write_text("principle {\n", encoding="utf-8")
    with pytest.raises(cai_dsl.LoadError) as info:
        cai_dsl.load(path)
    assert isinstance(info.value, CaiError) and info.value.exit_code == EXIT_DIAGNOSTICS
    assert info.value.diagnostics and all(d.is_error for d in info.value.diagnostics)
    assert str(path) in info.value.sources


def test_check_reports_and_compile_refuses_errors(tmp_path):
    path = tmp_path / "clash.const"
    path.write_text(CLASH, encoding="utf-8")
    constitution = cai_dsl.load(path)
    errors = [d for d in cai_dsl.check(constitution) if d.is_error]
    assert [d.code for d in errors] == ["CAI201"]
    with pytest.raises(CaiError) as info:
        cai_dsl.compile(constitution, "base")
    assert info.value.exit_code == EXIT_DIAGNOSTICS and [d.code for d in info.value.diagnostics] == ["CAI201"]


def test_unknown_attribute():
    with pytest.raises(AttributeError):
        cai_dsl.nothing_here  # noqa: B018
