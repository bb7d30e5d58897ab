"""One renderer per output format behind FORMATS; every diagnostics `--format` of the CLI is
checked against that registry."""

from __future__ import annotations

import json

import pytest
import typer.main

from cai_dsl.cli import app
from cai_dsl.cli.checking import TEST_FORMATS
from cai_dsl.core.source import Span
from cai_dsl.diagnostics import rules
from cai_dsl.diagnostics.render import FORMATS, RenderContext, render

SPAN = Span(file="c.const", line=2, column=3, end_line=2, end_column=8)
DIAGS = [
    rules.CONTRADICTION("a and b clash", SPAN, deployment="base", witness={"risk": "high"}, help="add a priority"),
    rules.UNUSED_FACET("facet `x` is never used"),
]
CONTEXT = RenderContext(sources={"c.const": "x\n  hello world\n"}, rules=rules.all_rules(), tool_version="9.9")

#: CLI commands whose --format selects a diagnostics renderer, and the formats they accept.
DIAGNOSTIC_FORMAT_COMMANDS = {"lint": tuple(FORMATS), "test": TEST_FORMATS}


def test_registry_has_the_four_formats():
    assert list(FORMATS) == ["text", "json", "sarif", "github"]
    assert all(f.name == name and f.description for name, f in FORMATS.items())


def test_each_renderer():
    text = render("text", DIAGS, CONTEXT)
    assert text.startswith("error[CAI201] contradiction: a and b clash [base]\n  --> c.const:2:3\n")
    assert "  |   ^^^^^" in text and "  = witness: risk=high" in text and "  = help: add a priority" in text
    data = json.loads(render("json", DIAGS, CONTEXT))
    assert data["summary"] == {"errors": 1, "warnings": 1, "infos": 0, "by_code": {"CAI112": 1, "CAI201": 1}}
    sarif = json.loads(render("sarif", DIAGS, CONTEXT))
    run = sarif["runs"][0]
    assert run["tool"]["driver"]["version"] == "9.9"
    assert [r["ruleId"] for r in run["results"]] == ["CAI201", "CAI112"]
    assert run["results"][0]["locations"][0]["physicalLocation"]["region"]["endColumn"] == 8
    assert render("github", DIAGS, CONTEXT).splitlines() == [
        "::error file=c.const,line=2,col=3,endLine=2,endColumn=8::CAI201 contradiction: a and b clash",
        "::warning::CAI112 unused-facet: facet `x` is never used",
    ]
    with pytest.raises(KeyError):
        render("xml", DIAGS, CONTEXT)


def _format_options() -> dict:
    group = typer.main.get_command(app)
    found = {}
    for name, command in group.commands.items():
        for param in command.params:
            if "--format" in getattr(param, "opts", ()):
                found[name] = param
    return found


def test_every_format_option_is_checked_against_the_registry():
    options = _format_options()
    for command in DIAGNOSTIC_FORMAT_COMMANDS:
        assert command in options, command
    for command, accepted in DIAGNOSTIC_FORMAT_COMMANDS.items():
        assert set(accepted) <= set(FORMATS), command
        assert all(f in (options[command].help or "") for f in accepted), (command, options[command].help)
    # every other --format belongs to a command with its own registry (e.g. export formats)
    assert set(options) - set(DIAGNOSTIC_FORMAT_COMMANDS) <= {"export"}


@pytest.mark.parametrize("command", sorted(DIAGNOSTIC_FORMAT_COMMANDS))
def test_unknown_format_is_a_usage_error(command, tmp_path, capsys):
    path = tmp_path / "c.const"
    path.write_text('facet risk: low < high\n')
    with pytest.raises(SystemExit) as exc:
        typer.main.get_command(app).main([command, str(path), "--format", "xml"], standalone_mode=False)
    assert exc.value.code == 2
    assert "unknown --format `xml`" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_lint_accepts_every_registered_format(fmt, tmp_path, capsys):
    path = tmp_path / "c.const"
    path.write_text('facet risk: low < high\n')
    with pytest.raises(SystemExit) as exc:
        typer.main.get_command(app).main(["lint", str(path), "--format", fmt], standalone_mode=False)
    assert exc.value.code in (0, 1)
