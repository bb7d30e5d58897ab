"""The canonical formatter: layout per construct, comments, strings, idempotence,
``cai fmt`` exit codes and writes, and the refusal to print a changed AST."""

from __future__ import annotations

import io
import os
import stat
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from cai_dsl.lang import ast

from cai_dsl.lang import formatter, printer
from cai_dsl.lang.formatter import FormatterBug, fmt_paths, format_text
from cai_dsl.lang.printer import format_ast, format_string
from cai_dsl.lang.parser import long_string_value, parse_text

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "language-example.const"


def fmt(source: str) -> str:
    result = format_text(textwrap.dedent(source), "t.const")
    assert result.bug is None, result.bug.render()
    assert result.output is not None, [d.message for d in result.diagnostics]
    return result.output


def canon(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def comment_texts(text: str) -> Counter:
    parsed = parse_text(text, "t.const")
    assert parsed.ok
    return Counter(c.text for c in parsed.file.comments)


# ---------------------------------------------------------------- constructs

CONSTRUCTS = {
    "header": (
        'constitution   "c"\n   version "1.0"\nsource "s"',
        'constitution "c" version "1.0"\nsource "s"\n',
    ),
    "header-no-version": ('constitution "c"', 'constitution "c"\n'),
    "imports": ('import "a.const" import "b.const"', 'import "a.const"\nimport "b.const"\n'),
    "facets": (
        "facet topic:general|medical\nfacet risk : low<medium <high",
        "facet topic: general | medical\nfacet risk: low < medium < high\n",
    ),
    "facet-single-value": ("facet f: only", "facet f: only\n"),
    "behaviors-and-exclusive": (
        'behavior refuse   "declines"\nbehavior caveat\nexclusive refuse,caveat',
        'behavior refuse "declines"\nbehavior caveat\nexclusive refuse, caveat\n',
    ),
    "groups-and-priorities": (
        "group safety=#safety,harm.*\npriority safety>#helpfulness , help.x>*",
        "group safety = #safety, harm.*\npriority safety > #helpfulness, help.x > *\n",
    ),
    "blank-lines-between-kinds": (
        'constitution "c"\nfacet f: a1\nbehavior b\nimport "x.const"\nfacet g: a1',
        'constitution "c"\n\nfacet f: a1\n\nbehavior b\n\nimport "x.const"\n\nfacet g: a1\n',
    ),
    "principle-canonical-order": (
        """
        principle harm.x { tags safety , harm
          example { revision "r" prompt "p" }
          weight 2.0 forbid detailed
          when risk>=high
          compare "Which is better?" require caveat, refuse
          revise "Rewrite." critique "Critique."
          prefer partial
        }
        """,
        """
        principle harm.x {
          critique "Critique."
          revise   "Rewrite."
          compare  "Which is better?"
          when risk >= high
          forbid detailed
          require caveat, refuse
          prefer partial
          weight 2.0
          tags safety, harm
          example {
            prompt   "p"
            revision "r"
          }
        }
        """,
    ),
    "principle-empty": ("principle p { }", "principle p {}\n"),
    "compare-example": (
        'principle p { example compare { better b a "A" prompt "P" b "B" } }',
        """
        principle p {
          example compare {
            prompt "P"
            a      "A"
            b      "B"
            better b
          }
        }
        """,
    ),
    "weight-spelling-kept": ("principle p { weight 1e3 }", "principle p {\n  weight 1e3\n}\n"),
    "conflict": (
        "conflict a.x vs b.y { when risk >= high : a.x when (true) : b.y otherwise : b.y }",
        """
        conflict a.x vs b.y {
          when risk >= high: a.x
          when true: b.y
          otherwise: b.y
        }
        """,
    ),
    "conflict-empty": ("conflict p vs q {}", "conflict p vs q {}\n"),
    "deployment": (
        """
        deployment medical extends base { exclude help.* , x include #safety
          assume audience in {general,professional} assume topic not in {legal}
          priority a > b
          override harm.x { weight 3.0 tags t }
          set revisions = 2 set temperature = 0.70 set mode = "fast" set cot = true set style = terse set off = false
        }
        """,
        """
        deployment medical extends base {
          exclude help.*, x
          include #safety
          assume audience in {general, professional}
          assume topic not in {legal}
          priority a > b
          override harm.x {
            weight 3.0
            tags t
          }
          set revisions = 2
          set temperature = 0.70
          set mode = "fast"
          set cot = true
          set style = terse
          set off = false
        }
        """,
    ),
    "deployment-one-item-is-multiline": ("deployment base { include * }", "deployment base {\n  include *\n}\n"),
    "deployment-empty": ("deployment base {}", "deployment base {}\n"),
    "test": (
        """
        test "t" in base { given topic == medical and risk >= high
          expect require caveat expect not forbid x expect not prefer y
          expect winner harm.x over help.y expect active p expect not active q }
        """,
        """
        test "t" in base {
          given topic == medical and risk >= high
          expect require caveat
          expect not forbid x
          expect not prefer y
          expect winner harm.x over help.y
          expect active p
          expect not active q
        }
        """,
    ),
    "test-without-given": ('test "t" in base { expect prefer x }', 'test "t" in base {\n  expect prefer x\n}\n'),
    "property": (
        'property "p" in base { forall intent == benign expect not require refuse }',
        'property "p" in base {\n  forall intent == benign\n  expect not require refuse\n}\n',
    ),
}


@pytest.mark.parametrize("name", sorted(CONSTRUCTS))
def test_construct_formats_canonically(name):
    source, expected = CONSTRUCTS[name]
    expected = canon(expected)
    assert fmt(source) == expected
    assert fmt(expected) == expected  # the canonical form is a fixed point


EXPRESSIONS = {
    "a == b": "a == b",
    "((a == b))": "a == b",
    "a==b or c!=d and e<f": "a == b or c != d and e < f",
    "(a == b or c == d) and e <= f": "(a == b or c == d) and e <= f",
    "a == b or (c == d or e == f)": "a == b or (c == d or e == f)",
    "(a == b or c == d) or e == f": "(a == b or c == d) or e == f",
    "a == b and (c == d and e == f)": "a == b and (c == d and e == f)",
    "(a == b) and (c > d)": "a == b and c > d",
    "not (a == b)": "not a == b",
    "not (a == b and c == d)": "not (a == b and c == d)",
    "not not a >= b": "not not a >= b",
    "(not a == b) or c == d": "not a == b or c == d",
    "a in {x,y}": "a in {x, y}",
    "a not in { x }": "a not in {x}",
    "not a in {x}": "not a in {x}",
    "true or (false)": "true or false",
}


@pytest.mark.parametrize("source", sorted(EXPRESSIONS))
def test_expression_parentheses_are_minimal(source):
    # the facet and value names come from the template; `a`/`b` are fine in expressions
    text = f"principle p {{ when {source} }}"
    assert fmt(text) == f"principle p {{\n  when {EXPRESSIONS[source]}\n}}\n"


# ---------------------------------------------------------------- strings


def test_single_line_strings_are_escaped():
    out = fmt('behavior b "say \\"hi\\" \\\\ \\t \\u0001 \\u2028 \\ud800 é"')
    assert out == 'behavior b "say \\"hi\\" \\\\ \\t \\u0001 \\u2028 \\ud800 é"\n'


def test_multiline_string_becomes_triple_quoted_and_indented():
    out = fmt('principle p { critique "First line.\\nSecond line." revise "x" }')
    assert out == canon(
        '''
        principle p {
          critique """
            First line.
            Second line.
          """
          revise   "x"
        }
        '''
    )


def test_triple_quoted_input_is_reindented():
    source = 'principle p {\ncritique """\n        one\n          two\n\n        three\n"""\n}\n'
    out = fmt(source)
    assert out == 'principle p {\n  critique """\n    one\n      two\n\n    three\n  """\n}\n'
    assert parse_text(out).file.items[0].critique.value == "one\n  two\n\nthree"


def test_short_triple_quoted_string_becomes_single_quoted():
    assert fmt('behavior b """\n  just one line\n  """') == 'behavior b "just one line"\n'


@pytest.mark.parametrize(
    "value",
    [
        "  indented\n  both lines",  # common indentation would be dedented away
        "line\n   \nafter a whitespace-only line",  # dedent blanks whitespace-only lines
        "trailing space \nnext",
        "ends with spaces\n  ",
    ],
)
def test_triple_quoting_falls_back_when_it_would_change_the_value(value):
    literal = format_string(value, "  ")
    assert not literal.startswith('"""')
    out = fmt(f"behavior b {literal}")
    assert parse_text(out).file.items[0].description.value == value


@pytest.mark.parametrize(
    "value",
    ['a\n"""quoted"""\nb', "back\\slash\nand \\n not a newline", "tab\there\nx", "a\n\n\nb\n", "\nleading newline"],
)
def test_triple_quoted_values_round_trip(value):
    literal = format_string(value, "    ")
    assert literal.startswith('"""')
    assert long_string_value(literal[3:-3]) == value
    out = fmt(f"principle p {{ critique {literal} }}")
    assert parse_text(out).file.items[0].critique.value == value


def test_setting_strings_and_numbers_keep_their_meaning():
    out = fmt('deployment d { set s = "two\\nlines" set n = +1.50e2 }')
    assert out == canon(
        '''
        deployment d {
          set s = """
            two
            lines
          """
          set n = +1.50e2
        }
        '''
    )


# ---------------------------------------------------------------- comments

COMMENTED = """\
# leading file comment
constitution "c" version "1"  # trailing header
# before facets
facet risk: low < high   # risk tail
facet topic: a1 | a2
principle p { # opener
  # before tags (moves with the field)
  tags t
  critique "c"   # critique tail
  when risk == low
    # inside the when
    or risk == high # when tail
  example { prompt "p" # prompt tail
    # before example close
  } # example close tail
  # before principle close
} # principle close tail
deployment d { include * } # one-liner tail
deployment f {
 # lonely
}
# end 1
#
"""

COMMENTED_EXPECTED = """\
# leading file comment
constitution "c" version "1"  # trailing header

# before facets
facet risk: low < high  # risk tail
facet topic: a1 | a2

principle p {  # opener
  critique "c"  # critique tail
  # inside the when
  when risk == low or risk == high  # when tail
  # before tags (moves with the field)
  tags t
  example {
    prompt "p"  # prompt tail
    # before example close
  }  # example close tail
  # before principle close
}  # principle close tail

deployment d {
  include *
}  # one-liner tail

deployment f {
  # lonely
}

# end 1
#
"""


def test_comments_are_attached_and_kept():
    out = fmt(COMMENTED)
    assert out == COMMENTED_EXPECTED
    assert comment_texts(out) == comment_texts(COMMENTED)
    assert fmt(out) == out


def test_comment_only_file():
    assert fmt("   # just a note\n\n#\n") == "# just a note\n#\n"


def test_several_trailing_comments_on_one_statement():
    source = "principle p {\n  when risk == low # one\n    or risk == high # two\n}\n"
    out = fmt(source)
    assert out == "principle p {\n  # one\n  when risk == low or risk == high  # two\n}\n"
    assert fmt(out) == out


def test_trailing_comment_after_triple_quoted_string():
    source = 'behavior b """\n  x\n  y\n  """ # tail\n'
    out = fmt(source)
    assert out == 'behavior b """\n  x\n  y\n"""  # tail\n'
    assert comment_texts(out) == Counter({"# tail": 1})


def test_comment_between_keyword_and_value_is_kept():
    out = fmt('principle p {\n  critique # odd place\n "c" }')
    assert out == 'principle p {\n  # odd place\n  critique "c"\n}\n'


def test_tag_is_not_a_comment():
    out = fmt("group g = #safety # a real comment")
    assert out == "group g = #safety  # a real comment\n"


# ---------------------------------------------------------------- idempotence on real files


def _const_files() -> list[Path]:
    return sorted(ROOT.glob("constitutions/**/*.const")) + sorted(ROOT.glob("examples/**/*.const"))


def test_language_example_is_stable():
    text = EXAMPLE.read_text(encoding="utf-8")
    once = fmt(text)
    assert fmt(once) == once
    before, after = parse_text(text).file, parse_text(once).file
    assert ast.strip_spans(before) == ast.strip_spans(after)


@pytest.mark.parametrize("path", _const_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_repository_constitutions_format_idempotently(path):
    text = path.read_text(encoding="utf-8")
    parsed = parse_text(text, str(path))
    if not parsed.ok:
        pytest.skip(f"{path} does not parse (yet): {parsed.diagnostics[0].message}")
    once = format_text(text, str(path))
    assert once.bug is None, once.bug.render()
    assert format_text(once.output, str(path)).output == once.output
    assert comment_texts(once.output) == Counter(c.text for c in parsed.file.comments)


def test_format_text_reports_syntax_errors_without_output():
    result = format_text("principle p {", "bad.const")
    assert result.output is None and result.bug is None
    assert result.diagnostics and result.diagnostics[0].code == "CAI001"


def test_format_text_refuses_invalid_literal():
    result = format_text('behavior b "bad \\q escape"', "bad.const")
    assert result.output is None
    assert any(d.is_error for d in result.diagnostics)


# ---------------------------------------------------------------- cai fmt

UGLY = "facet   risk: low<high\nprinciple p { when risk==low }\n"
PRETTY = "facet risk: low < high\n\nprinciple p {\n  when risk == low\n}\n"


def _tree(tmp_path: Path) -> Path:
    (tmp_path / "sub").mkdir()
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "a.const").write_text(PRETTY)
    (tmp_path / "sub" / "b.const").write_text(UGLY)
    (tmp_path / "sub" / "notes.txt").write_text(UGLY)
    (tmp_path / ".hidden" / "c.const").write_text(UGLY)
    return tmp_path


def _run(paths, **flags):
    out, err = io.StringIO(), io.StringIO()
    code = fmt_paths([str(p) for p in paths], stdout=out, stderr=err, **flags)
    return code, out.getvalue(), err.getvalue()


def test_fmt_rewrites_changed_files(tmp_path):
    root = _tree(tmp_path)
    code, out, err = _run([root])
    assert code == 0
    assert (root / "sub" / "b.const").read_text() == PRETTY
    assert (root / "a.const").read_text() == PRETTY
    assert (root / "sub" / "notes.txt").read_text() == UGLY  # not a .const file
    assert (root / ".hidden" / "c.const").read_text() == UGLY  # hidden directories are skipped
    assert "reformatted" in out and "b.const" in out and "a.const" not in out
    assert "1 file reformatted, 1 file already formatted" in err
    assert _run([root])[0] == 0
    assert not [p for p in (root / "sub").iterdir() if p.name.endswith(".tmp")]


def test_fmt_check_lists_files_and_writes_nothing(tmp_path):
    root = _tree(tmp_path)
    code, out, _ = _run([root], check=True)
    assert code == 1
    assert out == f"would reformat {root / 'sub' / 'b.const'}\n"
    assert (root / "sub" / "b.const").read_text() == UGLY
    (root / "sub" / "b.const").write_text(PRETTY)
    assert _run([root], check=True)[0] == 0


def test_fmt_diff_prints_unified_diff_and_writes_nothing(tmp_path):
    root = _tree(tmp_path)
    code, out, _ = _run([root / "sub" / "b.const", root / "a.const"], diff=True)
    assert code == 1
    assert out.startswith(f"--- {root / 'sub' / 'b.const'}\n+++ {root / 'sub' / 'b.const'}\n@@")
    assert "-facet   risk: low<high\n" in out and "+facet risk: low < high\n" in out
    assert (root / "sub" / "b.const").read_text() == UGLY
    assert _run([root / "a.const"], diff=True) == (0, "", "0 files would be reformatted, 1 file already formatted\n")


def test_fmt_explicit_file_of_any_name_and_directories_sorted(tmp_path):
    (tmp_path / "z.const").write_text(UGLY)
    (tmp_path / "m.const").write_text(UGLY)
    other = tmp_path / "policy.txt"
    other.write_text(UGLY)
    code, out, _ = _run([tmp_path, other], check=True)
    assert code == 1
    assert out.splitlines() == [f"would reformat {tmp_path / n}" for n in ("m.const", "z.const", "policy.txt")]


def test_fmt_syntax_error_exit_1(tmp_path):
    bad = tmp_path / "bad.const"
    bad.write_text("principle p {\n  when risk ==\n}\n")
    good = tmp_path / "good.const"
    good.write_text(UGLY)
    code, out, err = _run([bad, good])
    assert code == 1
    assert "error[CAI001]" in err and f"{bad}:3:1" in err
    assert bad.read_text() == "principle p {\n  when risk ==\n}\n"
    assert good.read_text() == PRETTY  # other files are still formatted


def test_fmt_missing_path_exit_1(tmp_path):
    code, _, err = _run([tmp_path / "missing.const"])
    assert code == 1 and "CAI007" in err


def test_fmt_normalizes_crlf_and_missing_newline(tmp_path):
    f = tmp_path / "w.const"
    f.write_bytes(b"facet risk: low < high\r\n")
    assert _run([f], check=True)[0] == 1
    assert _run([f])[0] == 0
    assert f.read_bytes() == b"facet risk: low < high\n"
    f.write_bytes(b"facet risk: low < high")
    code, out, _ = _run([f], diff=True)
    assert code == 1 and "\\ No newline at end of file" in out


def test_atomic_write_keeps_mode_and_uses_same_directory(tmp_path, monkeypatch):
    f = tmp_path / "p.const"
    f.write_text(UGLY)
    os.chmod(f, 0o640)
    calls = []
    real_replace = os.replace

    def spy(src, dst):
        calls.append((Path(src), Path(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(formatter.os, "replace", spy)
    assert _run([f])[0] == 0
    assert len(calls) == 1 and calls[0][0].parent == f.parent and calls[0][1] == f
    assert stat.S_IMODE(f.stat().st_mode) == 0o640
    assert f.read_text() == PRETTY


def test_atomic_write_failure_leaves_original_and_no_temp(tmp_path, monkeypatch):
    f = tmp_path / "p.const"
    f.write_text(UGLY)

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(formatter.os, "replace", boom)
    code, _, err = _run([f])
    assert code == 1 and "cannot write" in err
    assert f.read_text() == UGLY
    assert [p.name for p in tmp_path.iterdir()] == ["p.const"]


# ---------------------------------------------------------------- refusal


def test_refuses_when_printer_drops_an_item(tmp_path, monkeypatch):
    real = formatter.format_ast

    def lossy(file):
        return real(file.model_copy(update={"items": file.items[:-1]}))

    monkeypatch.setattr(formatter, "format_ast", lossy)
    result = format_text(UGLY, "x.const")
    assert result.output is None and isinstance(result.bug, FormatterBug)
    assert "does not mean the same" in result.bug.message
    f = tmp_path / "x.const"
    f.write_text(UGLY)
    code, out, err = _run([f])
    assert code == 2
    assert "internal formatter error" in err and "left unchanged" in err
    assert f.read_text() == UGLY
    assert _run([f], check=True)[0] == 2


def test_refuses_when_printer_drops_a_comment(tmp_path, monkeypatch):
    real = printer.attach_comments

    def forgetful(comments, docs):
        return real(list(comments)[1:], docs)

    monkeypatch.setattr(printer, "attach_comments", forgetful)
    source = "# one\nfacet risk: low < high # two\n"
    result = format_text(source, "x.const")
    assert result.output is None and result.bug is not None
    assert "comments" in result.bug.message and "lost: # one" in result.bug.detail


def test_refuses_when_parentheses_are_lost(monkeypatch):
    monkeypatch.setattr(printer, "format_expr", lambda expr, min_prec=0: "true")
    result = format_text("principle p { when risk == low }", "x.const")
    assert result.bug is not None and result.output is None


def test_printer_crash_is_a_bug_not_an_exception(monkeypatch):
    def crash(file):
        raise RuntimeError("boom")

    monkeypatch.setattr(formatter, "format_ast", crash)
    result = format_text("facet f: x", "x.const")
    assert result.bug is not None and "boom" in result.bug.message


def test_format_ast_of_generated_nodes_without_spans():
    file = ast.ConstitutionFile(
        path="<generated>",
        items=(
            ast.Facet(name=ast.Ident(name="risk"), values=(ast.Ident(name="low"), ast.Ident(name="high")), ordered=True),
            ast.Principle(
                id=ast.Ident(name="p"),
                when=ast.And(
                    operands=(
                        ast.Or(operands=(ast.BoolLiteral(value=True), ast.BoolLiteral(value=False))),
                        ast.Not(operand=ast.Comparison(facet=ast.Ident(name="risk"), op=">", value=ast.Ident(name="low"))),
                    )
                ),
            ),
        ),
    )
    assert format_ast(file) == "facet risk: low < high\n\nprinciple p {\n  when (true or false) and not risk > low\n}\n"
