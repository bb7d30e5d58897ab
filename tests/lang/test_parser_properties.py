"""Property tests: printed ASTs parse back equal; no input makes the parser raise;
formatting is idempotent and keeps every comment."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cai_dsl.lang import ast
from cai_dsl.lang.formatter import format_text
from cai_dsl.lang.printer import format_ast
from cai_dsl.lang.parser import parse_text

from cai_dsl.testing import strategies as S

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = (ROOT / "examples" / "language-example.const").read_text(encoding="utf-8")

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _parse_ok(text: str) -> ast.ConstitutionFile:
    result = parse_text(text, "<generated>")
    assert result.ok, (text, [d.message for d in result.diagnostics])
    return result.file


def _check_never_raises(text: str) -> None:
    result = parse_text(text, "<fuzz>")
    for d in result.diagnostics:
        if d.span is not None:
            assert d.span.line >= 1 and d.span.column >= 1, d
    if result.file is None:
        assert any(d.is_error for d in result.diagnostics)
    elif result.ok:
        # whatever parses must also format, faithfully (no formatter bug)
        formatted = format_text(text, "<fuzz>")
        assert formatted.bug is None, formatted.bug.render()
        assert formatted.output is not None


# ---------------------------------------------------------------- (a) print -> parse round trip


@PROPERTY
@given(S.files)
def test_printed_ast_parses_back_equal(file):
    text = format_ast(file)
    assert ast.strip_spans(_parse_ok(text)) == ast.strip_spans(file)


@PROPERTY
@given(S.expressions)
def test_expressions_round_trip(expr):
    file = ast.ConstitutionFile(path="<generated>", items=(ast.Principle(id=ast.Ident(name="p"), when=expr),))
    parsed = _parse_ok(format_ast(file))
    assert ast.strip_spans(parsed.items[0].when) == ast.strip_spans(expr)


@PROPERTY
@given(S.text_values)
def test_string_values_round_trip(value):
    file = ast.ConstitutionFile(
        path="<generated>", items=(ast.Behavior(name=ast.Ident(name="x"), description=ast.Text(value=value)),)
    )
    parsed = _parse_ok(format_ast(file))
    assert parsed.items[0].description.value == value


# ---------------------------------------------------------------- (b) the parser never raises


@PROPERTY
@given(st.text(max_size=300))
def test_arbitrary_text_never_raises(text):
    _check_never_raises(text)


@PROPERTY
@given(S.token_soup)
def test_token_soup_never_raises(text):
    _check_never_raises(text)


@PROPERTY
@given(st.data())
def test_mutated_example_never_raises(data):
    _check_never_raises(data.draw(S.mutations(EXAMPLE)))


@PROPERTY
@given(st.data())
def test_mutated_generated_file_never_raises(data):
    source = format_ast(data.draw(S.files))
    _check_never_raises(data.draw(S.mutations(source)))


# ---------------------------------------------------------------- (c) idempotence


@PROPERTY
@given(S.files)
def test_format_text_is_idempotent(file):
    text = format_ast(file)
    first = format_text(text, "<generated>")
    assert first.bug is None, first.bug.render()
    assert first.output == text  # printed text is already canonical
    second = format_text(first.output, "<generated>")
    assert second.output == first.output


def _string_lines(text: str) -> set[int]:
    """Lines (1-based) that continue inside a triple-quoted string: no comment may go there."""
    file = _parse_ok(text)
    inside: set[int] = set()
    stack: list[object] = [file]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Text, ast.Setting)) and node.span.end_line > node.span.line:
            # a Text spans just its literal; a setting's string value has no Text node
            inside.update(range(node.span.line + 1, node.span.end_line + 1))
        if isinstance(node, ast.Node):
            stack.extend(getattr(node, name) for name in type(node).model_fields)
        elif isinstance(node, tuple):
            stack.extend(node)
    return inside


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(S.files, st.data())
def test_comments_anywhere_are_kept_and_idempotent(file, data):
    text = format_ast(file)
    lines = text.split("\n")
    inside = _string_lines(text)
    out: list[str] = []
    for number, line in enumerate(lines, start=1):
        if number not in inside and data.draw(st.booleans()):
            out.append(" " * data.draw(st.integers(0, 6)) + f"# own {number}")
        if line and number + 1 not in inside and data.draw(st.booleans()):
            line += f" # tail {number}"
        out.append(line)
    commented = "\n".join(out)
    before = _parse_ok(commented)
    first = format_text(commented, "<generated>")
    assert first.bug is None, first.bug.render()
    after = _parse_ok(first.output)
    assert Counter(c.text for c in after.comments) == Counter(c.text for c in before.comments)
    assert ast.strip_spans(after) == ast.strip_spans(file)
    assert format_text(first.output, "<generated>").output == first.output
