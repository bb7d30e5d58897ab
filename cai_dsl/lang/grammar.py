"""The grammar (``grammar/constitution.lark``, package data), its cached LALR parser, the
words it spells out that diagnostics refer to, and spans of its parse tree."""

from __future__ import annotations

import functools
import importlib.resources

import lark

from cai_dsl.lang import ast

MAX_FILE_BYTES = 32 * 1024 * 1024
MAX_TREE_DEPTH = 120
MAX_SYNTAX_ERRORS = 20

TOP_LEVEL_KEYWORDS = (
    "constitution",
    "source",
    "import",
    "facet",
    "behavior",
    "exclusive",
    "principle",
    "group",
    "priority",
    "conflict",
    "deployment",
    "test",
    "property",
)
PRINCIPLE_FIELDS = ("critique", "revise", "compare", "when", "require", "forbid", "prefer", "weight", "tags", "example")
BEHAVIOR_FIELDS = ("marker", "pattern", "judge", "opening")


@functools.lru_cache(maxsize=1)
def grammar_text() -> str:
    """The grammar shipped as package data (``grammar/constitution.lark``)."""
    return importlib.resources.files("cai_dsl.grammar").joinpath("constitution.lark").read_text(encoding="utf-8")


@functools.lru_cache(maxsize=1)
def lark_parser() -> lark.Lark:
    """The LALR parser, built once per process; ``strict`` rejects any grammar conflict."""
    return lark.Lark(
        grammar_text(),
        parser="lalr",
        lexer="contextual",
        strict=True,
        propagate_positions=True,
        maybe_placeholders=True,
    )


def point(path: str, line: int, column: int, length: int = 1) -> ast.Span:
    """A span of ``length`` characters at ``line``:``column``."""
    return ast.Span(file=path, line=line, column=column, end_line=line, end_column=column + max(length, 1))


def span_of(path: str, meta_or_token) -> ast.Span:
    """The span of a parse-tree node's ``meta`` or of a token."""
    return ast.Span(
        file=path,
        line=meta_or_token.line,
        column=meta_or_token.column,
        end_line=meta_or_token.end_line,
        end_column=meta_or_token.end_column,
    )
