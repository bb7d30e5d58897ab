"""One regression test per case of issue #13 handled here, named after it."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cai_dsl.check.checker import check
from cai_dsl.core.errors import EXIT_INTERRUPTED, exit_code_for, interrupted
from cai_dsl.lang.resolver import resolve
from cai_dsl.semantics.budget import Budget
from tests.hostile.cases import HEADER, PRINCIPLE
from tests.hostile.cli import assert_plain, run_cai

BASE = HEADER + PRINCIPLE.format(x="")


def _codes(constitution_or_diags):
    diags = getattr(constitution_or_diags, "diagnostics", constitution_or_diags)
    return {d.code for d in diags}


def _chain(n: int, cycle: bool) -> str:
    def parent(i: int) -> str:
        if cycle:
            return f"extends d{(i + 1) % n} "
        return f"extends d{i + 1} " if i + 1 < n else ""

    return BASE + "".join(f"deployment d{i} {parent(i)}{{ include * }}\n" for i in range(n))


@pytest.mark.parametrize("cycle", [False, True], ids=["chain", "cycle"])
@settings(max_examples=1, deadline=None, suppress_health_check=list(HealthCheck))
@given(depth=st.integers(min_value=9_500, max_value=10_000))
def test_extends_chain_of_depth_10k_no_recursion_error(tmp_path_factory, cycle, depth):
    path = tmp_path_factory.mktemp("extends") / "chain.const"
    path.write_text(_chain(depth, cycle))
    constitution = resolve(path)  # used to raise RecursionError
    assert "CAI131" in _codes(constitution)


def test_extends_chain_in_reverse_order_1200_lints(tmp_path):
    path = tmp_path / "reverse.const"
    path.write_text(_chain(1_200, cycle=False))
    outcome = run_cai("lint", "--smt-budget", "2", str(path))
    assert_plain(outcome)
    assert outcome.code == 1 and "CAI131" in outcome.text and "RecursionError" not in outcome.text


def test_extends_cycle_short_still_named(tmp_path):
    path = tmp_path / "cycle.const"
    path.write_text(_chain(3, cycle=True))
    constitution = resolve(path)
    assert any(d.code == "CAI115" and "d0 -> d1 -> d2 -> d0" in d.message for d in constitution.diagnostics)


def test_import_chain_of_depth_10k_no_recursion(tmp_path):
    n = 10_000
    for i in range(1, n):
        (tmp_path / f"f{i}.const").write_text(f'import "f{i + 1}.const"\n' if i + 1 < n else HEADER)
    root = tmp_path / "root.const"
    root.write_text('import "f1.const"\n' + PRINCIPLE.format(x="") + "deployment base { include * }\n")
    constitution = resolve(root)
    assert len(constitution.files) == n and not [d for d in constitution.diagnostics if d.is_error]


def test_import_etc_passwd_is_refused_without_printing_it(tmp_path):
    path = tmp_path / "a.const"
    path.write_text('import "/etc/passwd"\n' + BASE)
    outcome = run_cai("lint", str(path))
    assert outcome.code == 1 and "CAI130" in outcome.text and "root:" not in outcome.text


def test_import_proc_self_environ_does_not_print_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CAI_REGRESSION_SECRET", "s3cr3t-value-93")
    path = tmp_path / "a.const"
    path.write_text('import "/proc/self/environ"\n' + BASE)
    outcome = run_cai("lint", str(path))
    assert outcome.code == 1 and "s3cr3t-value-93" not in outcome.text


def test_import_dotdot_outside_the_project_is_refused(tmp_path):
    (tmp_path / "outside.const").write_text(HEADER)
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (project / "sub").mkdir()
    (project / "shared.const").write_text(HEADER)
    inside = project / "sub" / "ok.const"
    inside.write_text('import "../shared.const"\n' + PRINCIPLE.format(x="") + "deployment base { include * }\n")
    assert "CAI130" not in _codes(resolve(inside))  # `../` inside the root stays allowed
    outside = project / "sub" / "bad.const"
    outside.write_text('import "../../outside.const"\n' + PRINCIPLE.format(x=""))
    assert "CAI130" in _codes(resolve(outside))


def test_import_symlinked_const_pointing_outside_is_refused(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET line that is not const\n")
    project = tmp_path / "p"
    project.mkdir()
    (project / ".git").mkdir()
    os.symlink(secret, project / "link.const")
    root = project / "root.const"
    root.write_text('import "link.const"\n' + BASE)
    outcome = run_cai("lint", str(root))
    assert outcome.code == 1 and "CAI130" in outcome.text and "TOP-SECRET" not in outcome.text


def test_import_paths_configured_in_tool_cai_are_allowed(tmp_path):
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "vocab.const").write_text(HEADER)
    project = tmp_path / "p"
    project.mkdir()
    (project / "pyproject.toml").write_text('[tool.cai]\nimport-paths = ["../shared"]\n')
    root = project / "root.const"
    root.write_text('import "../shared/vocab.const"\n' + PRINCIPLE.format(x="") + "deployment base { include * }\n")
    assert "CAI130" not in _codes(resolve(root))


def test_lint_dev_zero_is_refused(tmp_path):
    outcome = run_cai("lint", "/dev/zero")
    assert outcome.code == 1 and "not a regular file" in outcome.text


def test_lint_directory_holding_symlink_to_dev_zero(tmp_path):
    os.symlink("/dev/zero", tmp_path / "zero.const")
    outcome = run_cai("lint", str(tmp_path))
    assert outcome.code == 1 and "not a regular file" in outcome.text


def test_sparse_file_over_the_limit_is_not_read(tmp_path):
    path = tmp_path / "huge.const"
    with open(path, "wb") as handle:
        handle.truncate(1536 * 2**20)  # 1.5 GB, no blocks on disk
    outcome = run_cai("parse", str(path))
    assert outcome.code == 1 and "CAI009" in outcome.text and "1536.0 MiB" in outcome.text


def test_size_limit_is_configurable(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.cai]\nmax-file-mib = 0.001\n")
    path = tmp_path / "a.const"
    path.write_text(BASE + "deployment base { include * }\n" + "# padding\n" * 200)
    assert "CAI009" in _codes(resolve(path))


def test_facet_and_value_limits(tmp_path):
    path = tmp_path / "wide.const"
    path.write_text("".join(f"facet f{i}: a | b\n" for i in range(300)) + BASE)
    assert any(d.code == "CAI131" and "302 facets; the limit is 256" in d.message for d in resolve(path).diagnostics)
    values = tmp_path / "values.const"
    values.write_text("facet topic: " + " | ".join(f"v{i}" for i in range(100)) + "\n" + BASE)
    assert any(d.code == "CAI131" and "`topic` has 100 values" in d.message for d in resolve(values).diagnostics)


def test_ignore_comment_cannot_hide_undefined_names(tmp_path):
    path = tmp_path / "a.const"
    path.write_text(
        HEADER + "# cai: ignore[CAI104,CAI106,CAI107]\n"
        'principle p { critique "Does it avoid harm?" revise "Fix it." when nosuch == x forbid nothing }\n'
        "deployment base { include p, missing }\n"
    )
    outcome = run_cai("lint", "--ignore", "CAI104,CAI106,CAI107", str(path))
    assert outcome.code == 1 and "CAI104" in outcome.text and "CAI106" in outcome.text


@pytest.mark.parametrize("weight", ["1e309", "-1", "1e308"])
def test_weight_out_of_range_is_a_lint_error(tmp_path, weight):
    path = tmp_path / "w.const"
    path.write_text(BASE.replace("forbid detailed_instructions", f"forbid detailed_instructions weight {weight}"))
    assert "CAI005" in _codes(resolve(path)) or "CAI001" in _codes(resolve(path))


def test_smt_budget_spent_gives_could_not_decide_naming_principles_and_deployment(tmp_path):
    body = "".join(
        f'principle p{i} {{ critique "Does it avoid harm?" revise "Fix it." when risk == high '
        f"{'require' if i % 2 else 'forbid'} caveat }}\n"
        for i in range(12)
    )
    path = tmp_path / "slow.const"
    path.write_text(HEADER + body + "deployment base { include * }\n")
    diags = check(resolve(path), budget=Budget(query_seconds=1e-6, run_seconds=1e-6))
    undecided = [d for d in diags if d.code == "CAI220"]
    assert undecided and all("could not decide within" in d.message and "`base`" in d.message for d in undecided)
    assert all(d.code != "CAI201" for d in diags)  # undecided is never reported as a finding


def test_smt_budget_options_on_the_command_line(tmp_path):
    path = tmp_path / "a.const"
    path.write_text(BASE + "deployment base { include * }\n")
    outcome = run_cai("lint", "--smt-timeout", "5", "--smt-budget", "30", str(path))
    assert_plain(outcome)


def test_ctrl_c_wrapped_in_pydantic_serialization_error_exits_130():
    from pydantic_core import PydanticSerializationError

    wrapped = PydanticSerializationError("Error calling function `x`: KeyboardInterrupt: ")
    assert interrupted(wrapped) and exit_code_for(wrapped) == EXIT_INTERRUPTED
    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as exc:
            raise ValueError("wrapped") from exc
    except ValueError as exc:
        assert exit_code_for(exc) == EXIT_INTERRUPTED
    assert exit_code_for(ValueError("plain")) == 2


def test_fmt_does_not_write_through_symlink_outside_the_directory(tmp_path):
    outside = tmp_path / "outside.const"
    ugly = "facet   risk:low<high\n"
    outside.write_text(ugly)
    folder = tmp_path / "proj"
    folder.mkdir()
    os.symlink(outside, folder / "link.const")
    outcome = run_cai("fmt", str(folder))
    assert_plain(outcome)
    assert outside.read_text() == ugly


def test_bidi_control_in_string_and_comment_is_an_error(tmp_path):
    path = tmp_path / "trojan.const"
    path.write_text(HEADER + "# \u202eevil\n" + PRINCIPLE.format(x="\u2067hidden\u2069"))
    diags = [d for d in resolve(path).diagnostics if d.code == "CAI010"]
    assert [d.span.line for d in diags] == [5, 6] and "U+202E" in diags[0].message


def test_homoglyph_message_names_the_character(tmp_path):
    path = tmp_path / "lookalike.const"
    path.write_text(BASE.replace("intent == malicious", "intent == m\u0430licious"))
    outcome = run_cai("lint", str(path))
    assert outcome.code == 1 and "U+0430 CYRILLIC SMALL LETTER A" in outcome.text


def test_form_feed_does_not_shift_the_source_line_shown():
    from cai_dsl.diagnostics import rules
    from cai_dsl.diagnostics.render import render_text
    from cai_dsl.lang.grammar import point

    text = "line one\fstill one\nline two\u2028same\nline three\n"
    rendered = render_text([rules.SYNTAX_ERROR("x", point("f.const", 3, 1))], {"f.const": text})
    assert "3 | line three" in rendered


def test_text_output_caps_the_number_of_diagnostics():
    from cai_dsl.diagnostics import rules
    from cai_dsl.diagnostics.render import render_text
    from cai_dsl.diagnostics.render.text import MAX_SHOWN
    from cai_dsl.lang.grammar import point

    text = "x\n" * 2000
    diags = [rules.SYNTAX_ERROR("x", point("f.const", i + 1, 1)) for i in range(2000)]
    rendered = render_text(diags, {"f.const": text})
    assert rendered.count("error[CAI001]") == MAX_SHOWN and f"and {2000 - MAX_SHOWN} more" in rendered
