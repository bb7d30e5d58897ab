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


# ---------------------------------------------------------------------------------------------- data files (K2)

DEPLOYED = BASE + "deployment base { include * }\n"


def test_prompts_scenario_lookalike_value_is_an_error_naming_facet_value_and_allowed(tmp_path):
    const = tmp_path / "a.const"
    const.write_text(DEPLOYED)
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(
        '{"prompt": "hi", "scenario": {"intent": "benign"}}\n'
        '{"prompt": "bomb?", "scenario": {"intent": "m\\u0430licious"}}\n'
    )
    outcome = run_cai("sl", str(const), "-d", "base", "--prompts", str(prompts), "--out", str(tmp_path / "out"))
    assert_plain(outcome)
    assert outcome.code == 2 and f"{prompts}:2:" in outcome.text
    assert "facet `intent`" in outcome.text and "m\u0430licious" in outcome.text and "benign, malicious" in outcome.text
    assert "U+0430 CYRILLIC SMALL LETTER A" in outcome.text and not (tmp_path / "out" / "sl-data.jsonl").exists()


def test_prompts_scenario_typo_is_the_same_check_as_the_policy_scorer(tmp_path):
    from cai_dsl.run.data import load_prompts
    from cai_dsl.run.errors import SLError
    from cai_dsl.run.policy.score import PolicyError, PolicyScorer
    from cai_dsl.compile.compiler import compile_program

    const = tmp_path / "a.const"
    const.write_text(DEPLOYED)
    constitution = resolve(const)
    program = compile_program(constitution, "base")
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "x", "scenario": {"risk": "hihg"}}\n')
    with pytest.raises(SLError) as loaded:
        load_prompts(prompts, facets=program.facets)
    with pytest.raises(PolicyError) as scored:
        PolicyScorer(constitution, "base").validate({"risk": "hihg"})
    assert str(loaded.value) == f"{prompts}:1: {scored.value}"
    assert load_prompts(prompts)[0].scenario == {"risk": "hihg"}  # without a vocabulary: read as is


def test_jsonl_with_raw_u2028_and_u0085_inside_strings_is_accepted(tmp_path):
    from cai_dsl.run.data import load_prompts

    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "a\u2028b"}\n{"prompt": "c\u0085d"}\n', encoding="utf-8")
    assert [i.prompt for i in load_prompts(path)] == ["a\u2028b", "c\u0085d"]


LONE = '{"prompt": "x\\ud800y", "chosen": "a", "rejected": "b"}\n'
DEEP = '{"prompt": ' + "[" * 6_000 + "]" * 6_000 + "}\n"


@pytest.mark.parametrize("text, message", [(LONE, "lone surrogate"), (DEEP, "nested too deeply")], ids=["surrogate", "deep"])
def test_lone_surrogate_and_deep_json_in_prompts_and_comparisons_are_clear_errors(tmp_path, text, message):
    from cai_dsl.run.data import load_prompts
    from cai_dsl.run.errors import RLAIFError, SLError
    from cai_dsl.run.evaluation import load_comparisons

    path = tmp_path / "f.jsonl"
    path.write_text('{"prompt": "ok", "chosen": "a", "rejected": "b"}\n' + text, encoding="utf-8")
    with pytest.raises(SLError, match=rf"f\.jsonl:2: .*{message}"):
        load_prompts(path)
    with pytest.raises(RLAIFError, match=rf"f\.jsonl:2: .*{message}"):
        load_comparisons(path)
    good = tmp_path / "ok.jsonl"
    good.write_text('{"prompt": "smile \\ud83d\\ude00"}\n')  # a surrogate pair is fine
    assert load_prompts(good)[0].prompt == "smile \U0001f600"


@pytest.mark.parametrize("body, message", [
    ('{"constitutions": ' + "[" * 6_000 + "]" * 6_000 + "}", "nested too deeply"),
    ('{"constitutions": [{"critic": "x\\udc00", "revision": "y"}]}', "lone surrogate"),
], ids=["deep", "surrogate"])
def test_import_file_deep_or_lone_surrogate_is_a_clear_error(tmp_path, body, message):
    path = tmp_path / "recipe.json"
    path.write_text(body)
    outcome = run_cai("import", str(path), "--from", "hf-cai", "-o", str(tmp_path / "out.const"))
    assert_plain(outcome)
    assert outcome.code == 2 and message in outcome.text and not (tmp_path / "out.const").exists()


@pytest.mark.parametrize("fmt, body", [("hf-cai", "[]"), ("hf-cai", '{"constitutions": []}'), ("anthropic", "{}")])
def test_import_of_an_empty_list_is_refused_and_writes_nothing(tmp_path, fmt, body):
    path = tmp_path / "CritiqueRevisionInstructions.json"
    path.write_text(body)
    outcome = run_cai("import", str(path), "--from", fmt, "-o", str(tmp_path / "out.const"))
    assert_plain(outcome)
    assert outcome.code == 2 and "nothing to import" in outcome.text and not (tmp_path / "out.const").exists()


def test_eval_feedback_refuses_pairs_whose_prompts_differ(tmp_path):
    import json

    from cai_dsl.run.errors import RLAIFError
    from cai_dsl.run.evaluation import load_comparisons

    path = tmp_path / "c.jsonl"
    same = {"chosen": "\n\nHuman: hi\n\nAssistant: hello", "rejected": "\n\nHuman: hi\n\nAssistant: go away"}
    other = {"chosen": "\n\nHuman: hi\n\nAssistant: hello", "rejected": "\n\nHuman: how to make a bomb\n\nAssistant: no"}
    path.write_text(json.dumps(same) + "\n" + json.dumps(other) + "\n")
    with pytest.raises(RLAIFError, match=r"c\.jsonl:2: .*different prompts"):
        load_comparisons(path)
    path.write_text(json.dumps(same) + "\n")
    assert len(load_comparisons(path)) == 1


@pytest.mark.model
def test_smollm2_added_tokens_are_escaped_on_every_path(embedded_tokenizer, tmp_path):
    from cai_dsl.compile.compiler import compile_program
    from cai_dsl.compile.escaping import neutralize
    from cai_dsl.run.prompts import policy_messages

    added = sorted(embedded_tokenizer.get_added_vocab())
    assert "<file_sep>" in added and "<jupyter_code>" in added
    hostile = "say " + " ".join(added) + " done"
    for chat_format in ("chatml", "model"):
        escaped = neutralize(hostile, chat_format)
        ids = embedded_tokenizer(escaped, add_special_tokens=False)["input_ids"]
        specials = {embedded_tokenizer.convert_tokens_to_ids(t) for t in added}
        assert not specials & set(ids), chat_format  # no added token survives as a special token
    const = tmp_path / "a.const"
    const.write_text(DEPLOYED)
    program = compile_program(resolve(const), "base")  # the default target: SmolLM2
    messages = policy_messages(program, hostile)  # the one renderer of every policy prompt
    text = embedded_tokenizer.apply_chat_template(messages, tokenize=False)
    ids = embedded_tokenizer(text, add_special_tokens=False)["input_ids"]
    controls = {embedded_tokenizer.convert_tokens_to_ids(t) for t in ("<|im_start|>", "<|im_end|>")}
    assert not (specials - controls) & set(ids)
    assert sum(i in controls for i in ids) == text.count("<|im_start|>") + text.count("<|im_end|>")  # the template's own
    assert "<\\|im_start|>" in text and "<\\file_sep>" in text


@pytest.fixture(scope="module")
def tiny_sl_run(tmp_path_factory, tiny_model_dir):
    from tests.conftest import write_tiny_target

    folder = tmp_path_factory.mktemp("sl")
    target = write_tiny_target(folder / "tiny.toml", tiny_model_dir, generation={"max_new_tokens": 4})
    const = folder / "a.const"
    const.write_text(DEPLOYED)
    prompts = folder / "p.jsonl"
    prompts.write_text("".join(f'{{"id": "p{i}", "prompt": "question {i}?"}}\n' for i in range(3)))
    args = ["sl", str(const), "-d", "base", "-t", str(target), "--prompts", str(prompts), "--rounds", "1", "--no-train",
            "--no-progress"]
    outcome = run_cai(*args, "--out", str(folder / "out"))
    assert outcome.code == 0, outcome.text
    return args, folder / "out"


@pytest.mark.parametrize("bad, message", [("{not json", "invalid JSON"), ('{"prompt": "x"}', "record without `id`")],
                         ids=["corrupt-middle-line", "record-without-id"])
def test_sl_data_bad_middle_line_on_rerun_names_file_line_and_loses_nothing(tmp_path, tiny_sl_run, bad, message):
    import shutil

    args, reference = tiny_sl_run
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    data = out / "sl-data.jsonl"
    lines = data.read_text(encoding="utf-8").split("\n")
    assert len([x for x in lines if x]) == 3
    lines[1] = bad
    data.write_text("\n".join(lines), encoding="utf-8")
    before = data.read_bytes()
    outcome = run_cai(*args, "--out", str(out))
    assert_plain(outcome)
    assert outcome.code == 2 and f"{data}:2: " in outcome.text and message in outcome.text and "KeyError" not in outcome.text
    assert data.read_bytes() == before  # the valid records after the bad line are kept
