"""Parser: every construct, spans, and every syntax error path."""

from pathlib import Path

import pytest

from cai_dsl.lang import ast
from cai_dsl.lang.parser import lark_parser, long_string_value, parse_file, parse_text

ROOT = Path(__file__).resolve().parents[2]


def parse_ok(text: str) -> ast.ConstitutionFile:
    result = parse_text(text, "t.const")
    assert result.diagnostics == [], result.diagnostics
    assert result.file is not None
    return result.file


def only_error(text: str):
    result = parse_text(text, "t.const")
    assert result.diagnostics, "expected a diagnostic"
    return result.diagnostics[0]


def test_parser_is_cached():
    assert lark_parser() is lark_parser()


def test_language_example_parses_unchanged():
    result = parse_file(ROOT / "examples" / "language-example.const")
    assert result.ok
    kinds = [item.kind for item in result.file.items]
    assert kinds.count("principle") == 3 and kinds.count("deployment") == 2
    medical = result.file.deployments[1]
    assert medical.extends.name == "base"
    assert [i.kind for i in medical.items] == ["exclude", "assume", "assume", "override", "setting", "setting"]


def test_header_source_import():
    f = parse_ok('constitution "c" version "2"\nsource "paper"\nimport "other.const"\n')
    assert f.header.name.value == "c" and f.header.version.value == "2"
    assert f.imports[0].path.value == "other.const"
    assert f.items[1].text.value == "paper"


def test_facets_unordered_and_ordered():
    f = parse_ok("facet topic: a | b | c\nfacet risk: low < high\nfacet single: only\n")
    topic, risk, single = f.items
    assert not topic.ordered and [v.name for v in topic.values] == ["a", "b", "c"]
    assert risk.ordered and [v.name for v in risk.values] == ["low", "high"]
    assert [v.name for v in single.values] == ["only"]


def test_behaviors_and_exclusive():
    f = parse_ok('behavior refuse "declines"\nbehavior plain\nexclusive refuse, plain\n')
    assert f.items[0].description.value == "declines" and f.items[1].description is None
    assert [m.name for m in f.items[2].members] == ["refuse", "plain"]


def test_principle_all_fields_and_spans():
    f = parse_ok(
        """principle harm.x {
  critique "c"
  revise "r"
  compare "Which?"
  when risk >= high or not (intent in {a, b}) and topic not in {c}
  require a, b
  forbid c
  prefer d
  weight 2.5
  tags safety, harm
  example { prompt "p" response "r" critique "c" revision "v" }
  example compare { prompt "p" a "x" b "y" better b }
}
"""
    )
    p = f.principles[0]
    assert p.id.name == "harm.x"
    assert (p.critique.value, p.revise.value, p.compare.value) == ("c", "r", "Which?")
    assert isinstance(p.when, ast.Or)
    assert p.effect_behaviors("require") == ("a", "b")
    assert p.effect_behaviors("forbid") == ("c",) and p.effect_behaviors("prefer") == ("d",)
    assert p.weight.value == 2.5 and p.tag_names == ("safety", "harm")
    assert isinstance(p.examples[0], ast.Example) and p.examples[0].revision.value == "v"
    assert isinstance(p.examples[1], ast.CompareExample) and p.examples[1].better.name == "b"
    assert (p.span.line, p.span.column, p.span.end_line) == (1, 1, 13)
    assert (p.id.span.line, p.id.span.column, p.id.span.end_column) == (1, 11, 17)
    assert p.critique.span.line == 2


def test_expression_precedence():
    p = parse_ok("principle p { when a == x or b == y and not c == z }").principles[0]
    assert isinstance(p.when, ast.Or)
    assert isinstance(p.when.operands[1], ast.And)
    assert isinstance(p.when.operands[1].operands[1], ast.Not)
    p = parse_ok("principle p { when true }").principles[0]
    assert p.when == ast.BoolLiteral(value=True, span=p.when.span)


def test_groups_priorities_conflicts():
    f = parse_ok(
        """group safety = #safety, harm.*, core
priority safety > #helpfulness, x > *
conflict a vs b {
  when risk >= high: a
  when risk == low: b
  otherwise: a
}
conflict c vs d { }
"""
    )
    group, priority, conflict, empty = f.items
    assert [(s.form, s.text) for s in group.members] == [("tag", "safety"), ("glob", "harm.*"), ("name", "core")]
    assert len(priority.levels) == 3 and len(priority.levels[1]) == 2
    assert [b.winner.name for b in conflict.branches] == ["a", "b"] and conflict.otherwise.name == "a"
    assert empty.branches == () and empty.otherwise is None


def test_deployment_items():
    f = parse_ok(
        """deployment medical extends base {
  include *, harm.*
  exclude help.*
  assume audience in {general, professional}
  priority a > b
  override harm.x { weight 3.0 require caveat }
  set revisions = 2
  set selection = applicable
  set chain_of_thought = true
  set cot_clamp_min = 0.35
  set label = "x"
}
"""
    )
    d = f.deployments[0]
    assert d.name.name == "medical" and d.extends.name == "base"
    settings = [i for i in d.items if isinstance(i, ast.Setting)]
    assert [(s.key.name, s.value, s.value_form) for s in settings] == [
        ("revisions", 2, "number"),
        ("selection", "applicable", "name"),
        ("chain_of_thought", True, "bool"),
        ("cot_clamp_min", 0.35, "number"),
        ("label", "x", "string"),
    ]
    override = d.items[4]
    assert override.target.name == "harm.x" and override.weight.value == 3.0


def test_tests_and_properties():
    f = parse_ok(
        """test "t" in base {
  given topic == medical
  expect require caveat
  expect forbid x
  expect not require y
  expect not forbid z
  expect prefer w
  expect winner a over b
  expect active a
  expect not active b
}
test "no given" in base { expect require caveat }
property "p" in base {
  forall intent == benign
  expect not require refuse
}
"""
    )
    test, bare, prop = f.items
    assert [e.expect for e in test.expectations] == [
        "require", "forbid", "not_require", "not_forbid", "prefer", "winner", "active", "not_active"
    ]
    assert test.expectations[5].other.name == "b"
    assert bare.given is None
    assert prop.forall.facet.name == "intent"


def test_comments_and_tags_are_distinguished():
    f = parse_ok("# a comment\n#\nfacet t: a # trailing\ngroup g = #tag\n")
    assert [c.text for c in f.comments] == ["# a comment", "#", "# trailing"]
    assert [c.trailing for c in f.comments] == [False, False, True]
    assert f.items[1].members[0].form == "tag"


def test_comment_markers_inside_strings_are_not_comments():
    f = parse_ok('behavior b "has # inside"\nbehavior c """multi\n# not a comment\n"""\n')
    assert f.comments == ()


def test_strings_escapes_and_triple_quoted_dedent():
    f = parse_ok('behavior b "say \\"hi\\"\\n\\u00e9"\nbehavior c """\n    line one\n      line two\n    """\n')
    assert f.items[0].description.value == 'say "hi"\né'
    assert f.items[1].description.value == "line one\n  line two"
    assert f.items[1].description.triple
    assert long_string_value("x") == "x"


def test_keywords_are_contextual():
    # `a`/`b` are keywords only inside `example compare`; elsewhere they are names
    f = parse_ok("facet a: in | b\nbehavior b\nprinciple p { when a == b require b }")
    assert f.principles[0].when.value.name == "b"


@pytest.mark.parametrize(
    "text, code, line, column, fragment",
    [
        ('principle a {\n  critique "x"\n', "CAI001", 2, 15, "end of file"),
        ('principle a {\n  critque "x"\n}', "CAI001", 2, 3, "name `critque`"),
        ("facet t: a\nprinciple b { when t = a }", "CAI001", 2, 22, "`=`"),
        ('behavior y "open\n', "CAI002", 1, 12, "unterminated string"),
        ('behavior y """open\n', "CAI002", 1, 12, "unterminated triple-quoted"),
        ("\x00\x01", "CAI001", 1, 1, "U+0000"),
        ("hello", "CAI001", 1, 1, "expected"),
        ("#bad\n", "CAI001", 1, 1, "tag `#bad`"),
        ("facet a.b: x", "CAI008", 1, 7, "cannot contain a dot"),
        ('principle p { critique "a\\qb" }', "CAI005", 1, 24, "unknown escape"),
        ('principle p { critique "x" critique "y" }', "CAI006", 1, 37, "given twice"),
        ("principle p { example compare { better c } }", "CAI005", 1, 40, "`a` or `b`"),
        ("principle p { when " + "not " * 300 + "x == y }", "CAI004", 1, None, "nesting"),
    ],
)
def test_syntax_errors_have_positions(text, code, line, column, fragment):
    d = only_error(text)
    assert d.code == code
    assert d.span.line == line
    if column is not None:
        assert d.span.column == column
    assert fragment in d.message


def test_several_errors_reported_per_file():
    text = 'principle a {\n  critque "x"\n}\n\nprinciple b {\n  revise 3\n}\n\nfacet ok: x\n'
    result = parse_text(text, "t.const")
    assert [d.span.line for d in result.diagnostics] == [2, 6]
    assert result.file is None


def test_invalid_utf8_reports_position(tmp_path):
    path = tmp_path / "bad.const"
    path.write_bytes(b'facet t: a\nbehavior b "\xff"\n')
    result = parse_file(path)
    d = result.diagnostics[0]
    assert (d.code, d.span.line, d.span.column) == ("CAI003", 2, 13)


def test_missing_file_is_a_diagnostic(tmp_path):
    result = parse_file(tmp_path / "nope.const")
    assert result.diagnostics[0].code == "CAI007"


def test_huge_generated_file_parses():
    text = "\n".join(f'principle p{i} {{ compare "Which {i}?" }}' for i in range(3000))
    assert len(parse_ok(text).principles) == 3000
