"""Number facets in the language: parsing, printing, and the resolver's checks (CAI005, CAI125, CAI126)."""

from hypothesis import given, strategies as st

from cai_dsl.lang import ast
from cai_dsl.lang.formatter import format_text
from cai_dsl.lang.parser import parse_text
from cai_dsl.lang.resolver import resolve

HEAD = "facet dose_mg: number [0 .. 10000]\nfacet risk: low < high\nfacet topic: a | b\nbehavior refuse\n"


def parse_ok(text: str) -> ast.ConstitutionFile:
    result = parse_text(text, "t.const")
    assert result.diagnostics == [], [d.message for d in result.diagnostics]
    return result.file


def resolve_text(tmp_path, body: str):
    path = tmp_path / "n.const"
    path.write_text(HEAD + body)
    return resolve(str(path))


def test_number_facet_and_comparisons_parse():
    f = parse_ok("facet d: number [0..10]\nfacet e: number [-5 .. +5]\nprinciple p { when d > 5 and e <= -1 or d != 0 }\n")
    d, e = f.of_kind(ast.Facet)
    assert d.is_number and (d.bounds.low.value, d.bounds.high.value) == (0, 10) and d.values == ()
    assert (e.bounds.low.value, e.bounds.high.value) == (-5, 5)
    when = f.principles[0].when
    first = when.operands[0].operands[0]
    assert first.op == ">" and first.number == 5 and first.value.span.column == 24
    assert when.operands[0].operands[1].number == -1


def test_number_is_still_a_name_elsewhere():
    f = parse_ok("facet kind: number | text\nprinciple p { when kind == number }\n")
    assert [v.name for v in f.of_kind(ast.Facet)[0].values] == ["number", "text"]
    assert f.principles[0].when.value.name == "number"


def test_malformed_ranges_and_numbers_are_reported():
    for text, words in (
        ("facet d: number [0 .. 1.5]", "whole numbers"),
        ("facet d: number [10 .. 0]", "empty range"),
        ("facet d: numbers [0 .. 5]", "expected `number [LOW .. HIGH]`"),
        ("facet d: number [0 .. 5]\nprinciple p { when d > 2.5 }", "whole numbers"),
        ("facet d: number [0 .. 99999999999999999999]", "whole numbers"),
    ):
        diagnostics = parse_text(text + "\n", "t.const").diagnostics
        assert [d.code for d in diagnostics] == ["CAI005"], text
        assert words in diagnostics[0].message


def test_format_prints_number_facets_canonically():
    text = "facet d: number [ 0..10 ]\nprinciple p { when d>=+3 }\n"
    out = format_text(text, "t.const").output
    assert "facet d: number [0 .. 10]" in out and "when d >= 3" in out
    assert format_text(out, "t.const").output == out


@given(st.integers(-(10**9), 10**9), st.integers(0, 10**9), st.integers(-(10**9), 10**9))
def test_printed_numbers_parse_back(low, width, c):
    text = f"facet d: number [{low} .. {low + width}]\nprinciple p {{ when d < {c} }}\n"
    f = parse_ok(format_text(text, "t.const").output)
    assert f.of_kind(ast.Facet)[0].bounds.high.value == low + width
    assert f.principles[0].when.number == c


def codes(constitution):
    return [d.code for d in constitution.diagnostics if d.is_error]


def test_a_clean_number_facet_resolves(tmp_path):
    c = resolve_text(tmp_path, "principle p { when dose_mg > 500 and dose_mg <= 10000  require refuse }\ndeployment base { include * }\n")
    assert codes(c) == []


def test_number_outside_the_range_is_an_error_with_both_spans(tmp_path):
    c = resolve_text(tmp_path, "principle p { when dose_mg > 20000  require refuse }\n")
    (d,) = [d for d in c.diagnostics if d.is_error]
    assert d.code == "CAI125" and "20000 is outside the range of facet `dose_mg` (0 .. 10000)" in d.message
    assert (d.span.line, d.span.column) == (5, 30) and d.related[0].span.line == 1


def test_kind_mismatches_are_errors(tmp_path):
    for cond, words in (
        ("dose_mg == high", "`dose_mg` is a number facet: compare it with a number, not `high`"),
        ("risk > 3", "`risk` is not a number facet"),
        ("dose_mg in {low, high}", "`in {...}` needs a symbolic facet"),
        ("dose_mg not in {low}", "`in {...}` needs a symbolic facet"),
    ):
        c = resolve_text(tmp_path, f"principle p {{ when {cond}  require refuse }}\n")
        errors = [d for d in c.diagnostics if d.is_error]
        assert [d.code for d in errors] == ["CAI126"], cond
        assert words in errors[0].message and errors[0].span.line == 5 and errors[0].related


def test_ordered_operators_need_no_ordered_declaration_on_number_facets(tmp_path):
    c = resolve_text(tmp_path, "principle p { when dose_mg < 5  require refuse }\ndeployment base { include *  assume dose_mg >= 1 }\n")
    assert "CAI110" not in [d.code for d in c.diagnostics]
