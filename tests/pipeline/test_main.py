"""`cai run`'s library stages return results (nothing printed); failures are CaiErrors."""

from __future__ import annotations

from pathlib import Path

import pytest

from cai_dsl.compile.compiler import CompileError
from cai_dsl.core.errors import EXIT_DIAGNOSTICS
from cai_dsl.pipeline.main import check_library, compile_stage, default_constitution, stdlib_dir

GOOD = """\
facet risk: low < high
behavior refuse "declines the request"
principle harm { critique "Is it harmful?" revise "Make it harmless." compare "Which is less harmful?"
  when risk == high require refuse }
deployment base { include * }
test "refuses when risky" in base {
  given risk == high
  expect require refuse
}
"""

CLASH = """\
facet intent: benign | malicious
behavior detailed_instructions "step-by-step operational detail"
principle harm { compare "Which is less harmful?" when intent == malicious forbid detailed_instructions }
principle help { compare "Which is more helpful?" require detailed_instructions }
deployment base { include * }
"""


def test_the_default_constitution_is_in_the_library():
    assert default_constitution().is_file() and default_constitution().parent == stdlib_dir()


def test_check_library_returns_per_file_errors(tmp_path, capsys):
    (tmp_path / "good.const").write_text(GOOD, encoding="utf-8")
    (tmp_path / "clash.const").write_text(CLASH, encoding="utf-8")
    result = check_library(tmp_path)
    assert [Path(f.path).name for f in result.files] == ["clash.const", "good.const"]
    clash, good = result.files
    assert [d.code for d in clash.errors] == ["CAI201"] and not good.errors
    assert result.errors == 1 and not result.ok
    assert result.passed == 1 and result.failed == 0
    assert capsys.readouterr() == ("", "")  # library stages never print


def test_compile_stage_writes_the_program(tmp_path, capsys):
    source = tmp_path / "good.const"
    source.write_text(GOOD, encoding="utf-8")
    compiled = compile_stage(source, "base", "smollm2-cpu", tmp_path / "out")
    assert compiled.path == tmp_path / "out" / "base.program.json"
    assert compiled.path.read_text(encoding="utf-8") == compiled.program.to_json()
    assert compiled.program.verify_hash()
    assert capsys.readouterr() == ("", "")


def test_compile_stage_raises_with_the_diagnostics(tmp_path):
    source = tmp_path / "clash.const"
    source.write_text(CLASH, encoding="utf-8")
    with pytest.raises(CompileError) as info:
        compile_stage(source, "base", "smollm2-cpu", tmp_path / "out")
    assert info.value.exit_code == EXIT_DIAGNOSTICS
    assert "CAI201" in [d.code for d in info.value.diagnostics]
    assert not (tmp_path / "out").exists()
