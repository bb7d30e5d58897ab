"""The LALR driver against Lark itself: the same trees (shape, tokens, positions), the same
rejections; trusted AST nodes are the validated ones; the parser's table cache."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lark import Token, Tree
from lark.exceptions import UnexpectedInput

from cai_dsl.lang import ast, grammar, lalr
from cai_dsl.lang.parser import parse_text
from cai_dsl.testing import strategies as S

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted(p for p in ROOT.glob("**/*.const") if ".git" not in p.parts)


class _TreeBuilder:
    """Builds Lark-like trees: (rule, start, end, children)."""

    diagnostics: list = []

    def __getattr__(self, name):
        return lambda start, end, children: (name, start, end, children)


def _lark_tree(node):
    if isinstance(node, Tree):
        meta = node.meta
        where = (None, None) if meta.empty else (meta.start_pos, meta.end_pos)
        return (str(node.data), *where, [_lark_tree(c) for c in node.children])
    if isinstance(node, Token):
        return (node.type, str(node), node.start_pos, node.end_pos)
    return node


def _our_tree(node):
    if isinstance(node, tuple):
        name, start, end, children = node
        return (name, start, end, [_our_tree(c) for c in children])
    if isinstance(node, lalr.Tok):
        return (node.type, node.value, node.start, node.end)
    return node


def _same_as_lark(text: str) -> None:
    try:
        expected = _lark_tree(grammar.lark_parser().parse(text))
    except UnexpectedInput:
        expected = "rejected"
    try:
        got = _our_tree(lalr.parse(text, _TreeBuilder())[0])
    except lalr.Rejected:
        got = "rejected"
    assert got == expected, text


def _mutations(text: str, n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    pieces = ['"', "#", "not ", "(", ")", "{", "}", " a ", "1.5", ".", "*", "number", " principle ", "x.y", "\n", "==", "<"]
    out = []
    for _ in range(n):
        i = rng.randrange(len(text) + 1)
        j = min(len(text), i + rng.randrange(1, 30))
        op = rng.randrange(3)
        if op == 0:
            out.append(text[:i] + text[j:])
        elif op == 1:
            out.append(text[:i] + rng.choice(pieces) + text[i:])
        else:
            out.append(text[:i] + text[i:j] + text[i:])
    return out


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_same_trees_as_lark_on_the_shipped_files(path):
    text = path.read_text(encoding="utf-8")
    _same_as_lark(text)
    for mutated in _mutations(text, 25, seed=len(text)):
        _same_as_lark(mutated)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "# only a comment",
        "principle p { when ((a == b)) and not (c in {x, y}) or true }",
        "principle principle { critique \"x\" }",  # a keyword where a name is expected
        "behavior better \"b\"\nexample compare { better a }",
        'principle p { critique """\n  long\n  """ }',
        "facet n: number [0 .. 10]",
        "principle p { when " + "(" * 130 + "a == b" + ")" * 130 + " }",
        "principle p {",
        "principle p { when a == }",
    ],
)
def test_same_trees_as_lark(text):
    _same_as_lark(text)


@given(st.one_of(S.constitution_sources(), S.constitution_sources().flatmap(S.mutations)))
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_same_trees_as_lark_on_generated_files(text):
    _same_as_lark(text)


@given(st.one_of(S.token_soup, st.text(alphabet='principle{}()"#=<> \n.*abwhen', max_size=60)))
@settings(max_examples=150, deadline=None)
def test_same_rejections_as_lark_on_noise(text):
    _same_as_lark(text)


def test_trusted_nodes_equal_validated_ones():
    path = ROOT / "examples" / "language-example.const"
    parsed = parse_text(path.read_text(encoding="utf-8"), str(path)).file
    assert parsed is not None
    again = ast.ConstitutionFile.model_validate(parsed.model_dump())
    assert again == parsed and hash(again) == hash(parsed)
    assert ast.ConstitutionFile.model_validate_json(parsed.model_dump_json()) == parsed


def test_trusted_nodes_share_no_state_through_model_copy():
    span = ast.Span.trusted("f", 1, 1, 1, 2)
    a = ast.Ident.trusted(name="a", span=span)
    b = ast.Ident.trusted(name="b", span=span)
    changed = a.model_copy(update={"kind": "ident"})
    moved = span.model_copy(update={"end_column": 5})
    assert changed.model_fields_set == {"name", "span", "kind"}
    assert a.model_fields_set == b.model_fields_set == {"name", "span"}
    assert span.model_fields_set == moved.model_fields_set and span.end_column == 2
    assert a == ast.Ident(name="a", span=ast.Span(file="f", line=1, column=1, end_line=1, end_column=2))


@pytest.fixture
def fresh_parser(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    grammar.lark_parser.cache_clear()
    yield tmp_path
    grammar.lark_parser.cache_clear()


def _works(parser) -> bool:
    return parser.parse("principle p { weight 1 }") is not None


def test_parser_tables_are_cached_atomically(fresh_parser):
    path = grammar.parser_cache_file()
    assert path is not None and path.is_relative_to(fresh_parser)
    assert _works(grammar.lark_parser()) and path.is_file()
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind
    grammar.lark_parser.cache_clear()
    assert _works(grammar.lark_parser())


def test_the_cache_is_json_and_gives_back_the_same_tables(fresh_parser):
    import json

    built = grammar.lark_parser()
    path = grammar.parser_cache_file()
    header, body = path.read_bytes().split(b"\n", 1)
    assert header == path.name.encode() and isinstance(json.loads(body), dict)  # data, never a pickle
    loaded = grammar._load_parser(path)
    a, b = (x.parser.parser.parser.parse_table for x in (built, loaded))
    assert (a.start_states, a.end_states) == (b.start_states, b.end_states) and a.states.keys() == b.states.keys()
    for state, actions in a.states.items():
        assert {t: (act, str(arg)) for t, (act, arg) in actions.items()} == {
            t: (act, str(arg)) for t, (act, arg) in b.states[state].items()}


@pytest.mark.parametrize("damage", ["garbage", "truncated", "other header", "empty"])
def test_a_damaged_cache_is_rebuilt(fresh_parser, damage):
    path = grammar.parser_cache_file()
    grammar.lark_parser()
    data = path.read_bytes()
    damaged = {
        "garbage": b"\x00not JSON",
        "truncated": data[: len(data) // 2],
        "other header": b"lalr-0.lark\n" + data.split(b"\n", 1)[1],
        "empty": b"",
    }[damage]
    path.write_bytes(damaged)
    grammar.lark_parser.cache_clear()
    assert _works(grammar.lark_parser())
    rewritten = path.read_bytes()
    assert rewritten != damaged and grammar._load_parser(path) is not None  # rewritten, loadable


def test_an_unwritable_cache_is_skipped(fresh_parser):
    (fresh_parser / "cai-dsl").write_text("a file where the folder should be")
    assert _works(grammar.lark_parser())
