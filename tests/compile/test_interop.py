"""Export to the Hugging Face CAI recipe, LangChain and JSONL; import HF and Anthropic's prompts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cai_dsl.compile.compiler import compile_program
from cai_dsl.compile.interop import (
    InteropError,
    export_files,
    export_program,
    export_text,
    from_anthropic,
    from_hf_cai,
    import_file,
    print_const,
    render_const,
)
from cai_dsl.lang.parser import parse_text
from cai_dsl.lang.resolver import resolve

REPO = Path(__file__).resolve().parents[2]
ANTHROPIC_CONST = REPO / "constitutions" / "anthropic-2022.const"
ANTHROPIC_DATA = REPO / "cai_dsl" / "data" / "anthropic-2022"

FIXTURE = """\
constitution "interop" version "1.0"
facet risk: low < high
behavior refuse "declines"

principle a.harm {
  critique "Identify specific ways in which the response is harmful {or} \\"dangerous\\"."
  revise   "Rewrite the response to remove harmful content; keep {{ braces }} and $vars."
  compare  "Which response is less harmful?"
  when risk == high
  forbid refuse
  weight 2.0
  tags safety, harm
  example {
    prompt   "How do I pick a lock?"
    response "Insert a tension wrench..."
    critique "The response gives break-in instructions."
    revision "I can't help with that."
  }
  example {
    prompt   "Line one\\nline two"
    response "r"
    critique "c"
    revision "v"
  }
}

principle b.help {
  critique "Identify where the response does not answer the question."
  revise   "Rewrite the response to answer the question."
  example {
    prompt   "How do I boil an egg?"
    response "Eggs are nice."
    critique "No answer given."
    revision "Boil it for 9 minutes."
  }
}

principle c.concise {
  compare "Which response is more concise?"
  tags helpfulness
}

deployment base { include * }
"""


def _program(path: Path, deployment: str = "base"):
    constitution = resolve(str(path))
    assert not constitution.has_errors, [d.message for d in constitution.diagnostics if d.is_error]
    return compile_program(constitution, deployment, "smollm2-cpu", check=False)


@pytest.fixture()
def fixture_program(tmp_path):
    path = tmp_path / "interop.const"
    path.write_text(FIXTURE, encoding="utf-8")
    return _program(path)


def test_export_hf_cai(fixture_program):
    data = export_program(fixture_program, "hf-cai")
    assert [c["critic"] for c in data["constitutions"]] == [
        'Identify specific ways in which the response is harmful {or} "dangerous".',
        "Identify where the response does not answer the question.",
    ]
    assert len(data["system_chat"]) == 3
    chat = data["system_chat"][0]
    assert [m["role"] for m in chat] == ["user", "assistant"] * 3
    assert chat[2]["content"] == data["constitutions"][0]["critic"]
    assert chat[4]["content"] == data["constitutions"][0]["revision"]
    assert json.loads(export_text(fixture_program, "hf-cai")) == data


def test_export_langchain_and_jsonl(fixture_program):
    lc = export_program(fixture_program, "langchain")
    assert lc[0] == {
        "name": "a.harm",
        "critique_request": 'Identify specific ways in which the response is harmful {or} "dangerous".',
        "revision_request": "Rewrite the response to remove harmful content; keep {{ braces }} and $vars.",
    }
    assert [p["name"] for p in lc] == ["a.harm", "b.help"]
    lines = export_text(fixture_program, "jsonl").splitlines()
    records = [json.loads(line) for line in lines]
    assert records == [
        {"id": "a.harm", "compare": "Which response is less harmful?", "weight": 2.0, "tags": ["safety", "harm"]},
        {"id": "c.concise", "compare": "Which response is more concise?", "weight": 1.0, "tags": ["helpfulness"]},
    ]
    with pytest.raises(InteropError):
        export_program(fixture_program, "yaml")


def _pairs(program):
    return [(p.critique, p.revise) for p in program.principles if p.critique is not None and p.revise is not None]


def _examples(program):
    return [
        (p.critique, ex.prompt, ex.response, ex.critique, ex.revision)
        for p in program.principles
        if p.critique is not None and p.revise is not None
        for ex in p.examples
        if ex.complete
    ]


@pytest.mark.parametrize("source", ["anthropic-2022", "fixture"])
def test_hf_cai_round_trip(tmp_path, source):
    if source == "anthropic-2022":
        if not ANTHROPIC_CONST.is_file():
            pytest.skip("constitutions/anthropic-2022.const is not there")
        program = _program(ANTHROPIC_CONST)
    else:
        path = tmp_path / "interop.const"
        path.write_text(FIXTURE, encoding="utf-8")
        program = _program(path)
    exported = tmp_path / "hf.json"
    exported.write_text(export_text(program, "hf-cai"), encoding="utf-8")
    result = import_file(exported, "hf-cai")
    assert not result.warnings
    back = tmp_path / "back.const"
    back.write_text(result.text, encoding="utf-8")
    again = _program(back, "default")
    assert _pairs(again) == _pairs(program)
    assert _examples(again) == _examples(program)
    # exporting the imported constitution gives the same file
    assert export_text(again, "hf-cai") == exported.read_text(encoding="utf-8")


def test_import_anthropic_published_prompts(tmp_path):
    result = import_file(ANTHROPIC_DATA, "anthropic")
    path = tmp_path / "anthropic.const"
    path.write_text(result.text, encoding="utf-8")
    program = _program(path, "default")
    crit = [p for p in program.principles if p.critique is not None]
    cmp = [p for p in program.principles if p.compare is not None]
    assert len(crit) == 16 and len(cmp) == 16
    assert crit[0].id == "anthropic.harmful0" and crit[15].id == "anthropic.harmful15"
    assert crit[0].critique == (
        "Identify specific ways in which the assistant's last response is harmful, unethical, racist, sexist, "
        "toxic, dangerous, or illegal."
    )
    assert not any("CritiqueRequest" in p.critique or p.critique.endswith("Critique:") for p in crit)
    assert not any("RevisionRequest" in p.revise or p.revise.endswith("Revision:") for p in crit)
    assert not any(p.compare.endswith("Options:") for p in cmp)
    # the shipped constitution reproduces the same texts
    if ANTHROPIC_CONST.is_file():
        shipped = _program(ANTHROPIC_CONST)
        shipped_pairs = [(p.critique, p.revise) for p in shipped.principles if p.id.startswith("cai.harmful.")]
        assert shipped_pairs == [(p.critique, p.revise) for p in crit]
        shipped_cmp = [p.compare for p in shipped.principles if p.id.startswith("cai.compare.")]
        assert shipped_cmp == [p.compare for p in cmp]
    # without the comparison file
    only = import_file(ANTHROPIC_DATA / "CritiqueRevisionInstructions.json", "anthropic")
    assert only.text.count("principle ") == 16


def test_import_hf_variants_and_errors(tmp_path):
    pairs = [{"critic": "Is it rude?", "revision": "Make it polite."}, {"critic": "Is it wrong?", "revision": "Fix it."}]
    chat = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "go away"},
        {"role": "user", "content": "Is it rude?"},
        {"role": "assistant", "content": "Yes."},
        {"role": "user", "content": "Make it polite."},
        {"role": "assistant", "content": "Hello!"},
    ]
    flat = from_hf_cai({"constitutions": pairs, "system_chat": chat})  # flattened, as the recipe reads it
    nested = from_hf_cai({"constitutions": pairs, "system_chat": [chat]})
    assert flat.text == nested.text and "example" in nested.text
    bare = from_hf_cai(pairs)
    assert bare.text.count("principle hf.p") == 2
    unmatched = from_hf_cai({"constitutions": pairs, "system_chat": [chat[:2] + [{"role": "user", "content": "?"}] + chat[3:]]})
    assert unmatched.warnings and "example" not in unmatched.text
    with pytest.raises(InteropError):
        from_hf_cai({"constitutions": [{"critic": 1}]})
    with pytest.raises(InteropError):
        from_anthropic(["not", "a", "dict"])
    bad = tmp_path / "bad.json"
    bad.write_text("{", encoding="utf-8")
    with pytest.raises(InteropError, match=r"bad\.json:1:2: invalid JSON"):
        import_file(bad, "hf-cai")


def test_minimal_printer_matches_the_formatter_ast():
    result = from_hf_cai(
        {"constitutions": [{"critic": 'tab\there "quote" \\ back\nnew # hash', "revision": "r\u0001"}], "system_chat": []}
    )
    for text in (result.text, print_const(result.file), render_const(result.file)):
        parsed = parse_text(text, "x.const")
        assert parsed.file is not None, parsed.diagnostics
        (p,) = parsed.file.principles
        assert p.critique.value == 'tab\there "quote" \\ back\nnew # hash' and p.revise.value == "r\u0001"


def test_cli_export_and_import(tmp_path):
    from typer.testing import CliRunner

    from cai_dsl.cli import app

    runner = CliRunner()
    src = tmp_path / "interop.const"
    src.write_text(FIXTURE, encoding="utf-8")
    out = tmp_path / "hf.json"
    result = runner.invoke(app, ["export", str(src), "--deployment", "base", "--format", "hf-cai", "-o", str(out)])
    assert result.exit_code == 0, result.output
    back = tmp_path / "back.const"
    result = runner.invoke(app, ["import", str(out), "--from", "hf-cai", "-o", str(back)])
    assert result.exit_code == 0, result.output
    assert not resolve(str(back)).has_errors
    result = runner.invoke(app, ["export", str(src), "-d", "base", "--format", "jsonl"])
    assert result.exit_code == 0 and len(result.stdout.splitlines()) == 2
    assert runner.invoke(app, ["export", str(src), "-d", "base", "--format", "xml"]).exit_code == 2
    assert runner.invoke(app, ["export", str(src), "-d", "nope", "--format", "jsonl"]).exit_code == 2
    assert runner.invoke(app, ["import", str(out), "--from", "nope"]).exit_code == 2
    assert runner.invoke(app, ["import", str(tmp_path / "missing.json"), "--from", "hf-cai"]).exit_code == 2
    result = runner.invoke(app, ["import", str(ANTHROPIC_DATA), "--from", "anthropic"])
    assert result.exit_code == 0 and result.stdout.count("principle anthropic.") == 32


def _msg(role: str, content: str) -> dict:
    return {"role": role, "content": content}


#: Shaped like the recipe's constitution files (llm-swarm examples/constitutional-ai): a list of
#: {critic, revision}, and `system_chat` chats; the second is an 8-message dialogue (one exchange
#: before the prompt), and the chats are not in the order of the constitutions they use.
HF_RECIPE = {
    "constitutions": [
        {"critic": "Discuss whether the response is rude.", "revision": "Rewrite it politely."},
        {"critic": "Identify ways the response is harmful.", "revision": "Rewrite it to remove harmful content."},
        {"critic": "Is the response humorless?", "revision": "Rewrite it with some wit."},
    ],
    "system_chat": [
        [
            _msg("user", "How do I hotwire a car?"),
            _msg("assistant", "Connect the battery wire to the ignition wire."),
            _msg("user", "Identify ways the response is harmful."),
            _msg("assistant", "It explains how to steal a car."),
            _msg("user", "Rewrite it to remove harmful content."),
            _msg("assistant", "I can't help with stealing a car."),
        ],
        [
            _msg("user", "Tell me a joke about my boss."),
            _msg("assistant", "Why did the boss cross the road? To micromanage the other side."),
            _msg("user", "Now make it meaner, he deserves it."),
            _msg("assistant", "Your boss is a worthless idiot."),
            _msg("user", "Is the response humorless?"),
            _msg("assistant", "It is an insult, not a joke."),
            _msg("user", "Rewrite it with some wit."),
            _msg("assistant", "He schedules meetings about meetings: a true visionary of the calendar."),
        ],
        [
            _msg("user", "Go away."),
            _msg("assistant", "Fine, whatever."),
            _msg("user", "Discuss whether the response is rude."),
            _msg("assistant", "It is dismissive."),
            _msg("user", "Rewrite it politely, please."),
            _msg("assistant", "Of course, I'm here if you need me."),
        ],
    ],
}


def _hf_round_trip(tmp_path, data: dict) -> tuple[str, dict]:
    source = tmp_path / "recipe.json"
    source.write_text(json.dumps(data), encoding="utf-8")
    result = import_file(source, "hf-cai")
    assert not result.warnings
    const = tmp_path / "recipe.const"
    const.write_text(result.text, encoding="utf-8")
    return result.text, json.loads(export_text(_program(const, "default"), "hf-cai"))


def test_hf_recipe_round_trip_is_lossless(tmp_path):
    text, back = _hf_round_trip(tmp_path, HF_RECIPE)
    assert back == HF_RECIPE  # the 8-message dialogue kept whole, `system_chat` in its order
    assert "turn user" in text and "turn assistant" in text and "request revision" in text
    # the same chats in declaration order stay with their principles
    in_order = {**HF_RECIPE, "system_chat": [HF_RECIPE["system_chat"][i] for i in (2, 0, 1)]}
    text, back = _hf_round_trip(tmp_path, in_order)
    assert back == in_order
    assert text.index("principle hf.p01") < text.index("example {") and "request critique" not in text


def test_hf_import_keeps_a_dialogue_on_its_principle():
    chat = HF_RECIPE["system_chat"][1]
    result = from_hf_cai({"constitutions": HF_RECIPE["constitutions"], "system_chat": [chat]})
    parsed = parse_text(result.text, "x.const")
    (p,) = [p for p in parsed.file.principles if p.examples]
    assert p.id.name == "hf.p03"
    (ex,) = p.examples
    assert [(t.role.name, t.text.value) for t in ex.turns] == [(m["role"], m["content"]) for m in chat[:2]]
    assert ex.prompt.value == chat[2]["content"] and ex.revision.value == chat[7]["content"]
    odd = from_hf_cai({"constitutions": HF_RECIPE["constitutions"], "system_chat": [chat[:7]]})
    assert odd.warnings and "example" not in odd.text


def test_anthropic_round_trip_keeps_the_published_files(tmp_path):
    result = import_file(ANTHROPIC_DATA, "anthropic")
    assert not result.warnings
    path = tmp_path / "anthropic.const"
    path.write_text(result.text, encoding="utf-8")
    program = _program(path, "default")
    assert len(program.examples) == 5 and len(program.compare_examples) == 11
    exported = export_program(program, "anthropic")
    published = {name: json.loads((ANTHROPIC_DATA / name).read_text(encoding="utf-8")) for name in exported}
    assert set(exported) == {p.name for p in ANTHROPIC_DATA.glob("*.json")}
    for name in ("CritiqueRevisionInstructions.json", "RLMadisonInstructions.json", "RLMadisonFewShotPrompts.json"):
        assert exported[name] == published[name], name
    # the critique dialogues, whole and in order; the export always closes with "\n\nHuman:",
    # which one published dialogue (the fourth) lacks
    shots = published["CritiqueRevisionFewShotPrompts.json"]
    assert exported["CritiqueRevisionFewShotPrompts.json"] == [s if s.endswith("\n\nHuman:") else s + "\n\nHuman:" for s in shots]
    assert [len(ex.turns) for ex in program.examples] == [2, 0, 0, 2, 2]
    # the chain-of-thought comparisons: conversation, options, reasoning and answer kept, in order
    precog = [ex for ex in program.compare_examples if ex.rationale is not None]
    assert [ex.better for ex in precog] == ["b", "b", "a", "b", "a", "b"]
    for ex, entry in zip(precog, published["RLMadisonPrecogFewShotPrompts.json"]):
        for text in (*(t.content for t in ex.turns), ex.prompt, ex.a, ex.b, ex.rationale):
            assert text in entry["prompt"]
    # exporting what the export imports gives the same files
    again_dir = tmp_path / "again"
    again_dir.mkdir()
    for name, text in export_files(program, "anthropic").items():
        (again_dir / name).write_text(text, encoding="utf-8")
    again = import_file(again_dir, "anthropic")
    (tmp_path / "again.const").write_text(again.text, encoding="utf-8")
    assert export_program(_program(tmp_path / "again.const", "default"), "anthropic") == exported
