"""Multi-turn, shared and explained examples (docs/language.md, "Examples"): syntax, AST,
formatting and resolution."""

from cai_dsl.lang import ast
from cai_dsl.lang.formatter import format_text
from cai_dsl.lang.parser import parse_text
from cai_dsl.lang.printer import format_ast
from cai_dsl.lang.resolver import resolve

SOURCE = """\
constitution "ex"
example { turn user "hi"  turn assistant "hello"  prompt "p"  response "r"
  request revision "rev"  critique "c"  request critique "crit"  revision "v" }
principle a.b {
  compare "Which is better?"
  example compare { prompt "p" turn user "u1" turn assistant "a1" a "A" b "B" better b rationale "why" }
}
example compare { prompt "q" a "x" b "y" better a request compare "Which is kinder?" }
deployment d { include * }
"""


def test_turns_requests_rationale_and_top_level_examples_parse():
    parsed = parse_text(SOURCE, "ex.const")
    assert parsed.diagnostics == []
    shared, principle, shared_cmp = [i for i in parsed.file.items if not isinstance(i, (ast.Header, ast.Deployment))]
    assert isinstance(shared, ast.Example) and isinstance(shared_cmp, ast.CompareExample)
    assert [(t.role.name, t.text.value) for t in shared.turns] == [("user", "hi"), ("assistant", "hello")]
    assert shared.request("critique").value == "crit" and shared.request("revision").value == "rev"
    (ex,) = principle.examples
    assert [t.text.value for t in ex.turns] == ["u1", "a1"] and ex.rationale.value == "why" and ex.better.name == "b"
    assert shared_cmp.request("compare").value == "Which is kinder?" and shared_cmp.request("critique") is None


def test_formatting_is_canonical_and_keeps_the_meaning():
    text = format_text(SOURCE, "ex.const").output
    assert text is not None and format_text(text, "ex.const").output == text
    assert ast.strip_spans(parse_text(text, "x.const").file) == ast.strip_spans(parse_text(SOURCE, "x.const").file)
    assert "\nexample {\n  turn user        \"hi\"\n  turn assistant   \"hello\"\n  prompt " in text
    assert text.index("request critique") < text.index('critique         "c"') < text.index("request revision")
    assert '    better b\n    rationale "why"\n' in text


def test_roles_and_request_kinds_are_checked():
    bad = parse_text('example { turn system "x" request praise "y" }\n', "x.const")
    assert [d.code for d in bad.diagnostics] == ["CAI005", "CAI005"]
    twice = parse_text('example { request critique "x" request critique "y" }\n', "x.const")
    assert [d.code for d in twice.diagnostics] == ["CAI006"]


def test_the_new_words_stay_usable_as_names():
    parsed = parse_text("facet turn: request | rationale\nprinciple turn.request { when turn == rationale }\n", "x.const")
    assert parsed.diagnostics == [] and parsed.file.principles[0].id.name == "turn.request"


def test_shared_examples_are_resolved_from_every_file_in_order(tmp_path):
    (tmp_path / "lib.const").write_text('example { prompt "from lib" }\n', encoding="utf-8")
    (tmp_path / "main.const").write_text('import "lib.const"\n' + SOURCE, encoding="utf-8")
    constitution = resolve(str(tmp_path / "main.const"))
    assert not constitution.has_errors
    assert [ex.prompt.value for ex in constitution.examples] == ["from lib", "p", "q"]
    printed = format_ast(constitution.root_file)
    assert printed.count("\nexample") == 2


def test_a_request_of_the_other_kind_of_example_is_an_error():
    wrong = parse_text('example { request compare "x" }\nexample compare { request critique "y" }\n', "x.const")
    assert [d.code for d in wrong.diagnostics] == ["CAI005", "CAI005"]
    assert all(ex.requests == () for ex in wrong.file.items)
