"""The `cai` command line: exit codes, output formats, no tracebacks on bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = str(ROOT / "examples" / "language-example.const")
CLASH = """facet risk: low < high
behavior caveat "states limits"
principle a { compare "Which response states fewer limits?" when risk == high forbid caveat }
principle b { compare "Which response states its limits?" require caveat }
deployment base { include * }
"""


def cai(*args, cwd=None):
    proc = subprocess.run(
        [sys.executable, "-c", "from cai_dsl.cli import main; main()", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


@pytest.fixture
def clash_file(tmp_path):
    path = tmp_path / "clash.const"
    path.write_text(CLASH)
    return str(path)


def test_parse_ok_and_json_ast():
    proc = cai("parse", EXAMPLE, "--json")
    assert proc.returncode == 0
    data = json.loads(proc.stdout)
    assert data["ast"]["kind"] == "file" and "base" in data["deployments"]
    assert data["ast"]["items"][0]["span"]["line"] == 1


@pytest.mark.parametrize(
    "content", [b"\xff\xfe\x00binary", b'principle p { critique "open', b"(" * 5000, b"principle " * 2000, b""]
)
def test_malformed_input_gives_position_and_exit_1(tmp_path, content):
    path = tmp_path / "bad.const"
    path.write_bytes(content)
    proc = cai("parse", str(path))
    if content == b"":
        assert proc.returncode == 0
        return
    assert proc.returncode == 1
    assert f"{path}:" in proc.stderr and "-->" in proc.stderr


def test_missing_path_is_usage_error():
    proc = cai("lint", "/no/such/file.const")
    assert proc.returncode == 2 and "no such file" in proc.stderr


def test_unknown_format_is_usage_error(clash_file):
    assert cai("lint", clash_file, "--format", "xml").returncode == 2


def test_lint_text_exit_1_with_witness(clash_file):
    proc = cai("lint", clash_file)
    assert proc.returncode == 1
    assert "error[CAI201] contradiction" in proc.stdout
    assert "witness: risk=high" in proc.stdout
    assert f"--> {clash_file}:3:11" in proc.stdout


def test_lint_json_schema(clash_file):
    proc = cai("lint", clash_file, "--format", "json")
    data = json.loads(proc.stdout)
    keys = {"code", "name", "severity", "message", "file", "line", "column", "end_line", "end_column",
            "deployment", "principles", "witness", "help"}
    assert set(data) == {"diagnostics", "summary"}
    for d in data["diagnostics"]:
        assert keys <= set(d)
        assert d["code"].startswith("CAI") and d["name"] == d["name"].lower() and " " not in d["name"]
        assert d["severity"] in ("error", "warning", "info")
        assert isinstance(d["principles"], list)
        assert d["witness"] is None or all(isinstance(v, str) for v in d["witness"].values())
    contradiction = next(d for d in data["diagnostics"] if d["code"] == "CAI201")
    assert contradiction["witness"] == {"risk": "high"} and contradiction["deployment"] == "base"
    assert data["summary"]["errors"] >= 1


def test_lint_sarif(clash_file):
    data = json.loads(cai("lint", clash_file, "--format", "sarif").stdout)
    assert data["version"] == "2.1.0"
    run = data["runs"][0]
    ids = {r["id"] for r in run["tool"]["driver"]["rules"]}
    assert "CAI201" in ids
    result = next(r for r in run["results"] if r["ruleId"] == "CAI201")
    assert result["level"] == "error"
    assert result["locations"][0]["physicalLocation"]["region"]["startLine"] == 3


def test_lint_github_annotations(clash_file):
    out = cai("lint", clash_file, "--format", "github").stdout
    assert f"::error file={clash_file},line=3" in out


def test_select_ignore_strict(clash_file):
    assert cai("lint", clash_file, "--ignore", "CAI201").returncode == 0
    assert cai("lint", clash_file, "--ignore", "CAI201", "--strict").returncode == 1  # warnings remain
    proc = cai("lint", clash_file, "--select", "CAI3", "--format", "json")
    assert all(d["code"].startswith("CAI3") for d in json.loads(proc.stdout)["diagnostics"])


def test_pyproject_config(tmp_path, clash_file):
    (tmp_path / "pyproject.toml").write_text('[tool.cai]\nignore = ["CAI201"]\n')
    proc = cai("lint", clash_file, "--format", "json", cwd=tmp_path)
    assert "CAI201" not in {d["code"] for d in json.loads(proc.stdout)["diagnostics"]}


def test_lint_unknown_deployment(clash_file):
    proc = cai("lint", clash_file, "-d", "nope")
    assert proc.returncode == 2 and "no deployment `nope`" in proc.stderr


def test_test_command_pass_and_fail(tmp_path):
    assert cai("test", EXAMPLE).returncode == 0
    path = tmp_path / "t.const"
    path.write_text(CLASH.replace("when risk == high forbid caveat", "when risk == high forbid caveat")
                    + "priority a > b\n"
                    + 'test "caveats always" in base { expect require caveat }\n')
    proc = cai("test", str(path), "--format", "json")
    assert proc.returncode == 1
    case = json.loads(proc.stdout)["files"][0]["cases"][0]
    assert case["passed"] is False
    assert case["expectations"][0]["counterexample"] == {"risk": "high"}


def test_explain_complete_partial_and_bad_given():
    proc = cai("explain", EXAMPLE, "-d", "base", "--given", "topic=medical, risk=high, intent=benign, audience=general", "--json")
    data = json.loads(proc.stdout)
    assert data["behaviors"]["detailed_instructions"]["status"] == "forbidden"
    assert data["behaviors"]["caveat"]["decided_by"] == ["medical.caveats"]
    assert data["wins"][0]["winner"] == "harm.less_harmful"
    data = json.loads(cai("explain", EXAMPLE, "-d", "base", "--given", "topic=medical", "--json").stdout)
    assert data["behaviors"]["caveat"]["holds_in_every_completion"] is True
    assert data["behaviors"]["detailed_instructions"]["holds_in_every_completion"] is False
    proc = cai("explain", EXAMPLE, "-d", "base", "--given", "topic=astrology")
    assert proc.returncode == 2 and "not a value of `topic`" in proc.stderr
