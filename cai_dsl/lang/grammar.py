"""The grammar (``grammar/constitution.lark``, package data), its cached LALR parser, the
words it spells out that diagnostics refer to, and spans of its parse tree."""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import json
import os
import sys
import tempfile
from pathlib import Path

import lark
from lark.grammar import Rule
from lark.lexer import TerminalDef

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


_LARK_OPTIONS = (("parser", "lalr"), ("lexer", "contextual"), ("strict", True), ("propagate_positions", True), ("maybe_placeholders", True))


@functools.lru_cache(maxsize=1)
def lark_parser() -> lark.Lark:
    """The LALR parser, built once per process (``strict`` rejects any grammar conflict), its tables
    kept in the user's cache directory: loading them takes a few milliseconds, building them most
    of a second."""
    path = parser_cache_file()
    parser = _load_parser(path) if path is not None else None
    if parser is None:
        parser = lark.Lark(grammar_text(), **dict(_LARK_OPTIONS))
        if path is not None:
            _save_parser(parser, path)
    return parser


def parser_cache_file() -> Path | None:
    """Where the parser's tables are kept: ``$XDG_CACHE_HOME/cai-dsl`` (default ``~/.cache/cai-dsl``),
    in a file named for the grammar, the options and the Lark and Python versions (so a changed
    grammar never reads stale tables); None when there is no home directory."""
    try:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    except RuntimeError:  # no home directory
        return None
    key = "\n".join((grammar_text(), repr(_LARK_OPTIONS), lark.__version__, sys.version))
    return base / "cai-dsl" / f"lalr-{hashlib.sha256(key.encode('utf-8', 'surrogatepass')).hexdigest()[:32]}.json"


def _load_parser(path: Path) -> lark.Lark | None:
    """The parser saved at ``path`` (JSON: Lark's own serialized tables, never a pickle); None when it
    is missing, not the user's own, or unreadable in any way (a corrupt or truncated file is rebuilt
    and replaced)."""
    try:
        with open(path, "rb") as f:
            if hasattr(os, "getuid") and os.fstat(f.fileno()).st_uid != os.getuid():
                return None  # tables someone else wrote could make the parser accept other text
            if f.readline() != path.name.encode() + b"\n":
                return None
            saved = json.loads(f.read().decode("utf-8"), object_hook=_untag)
        return lark.Lark._load_from_dict(saved["data"], saved["memo"])
    except Exception:  # noqa: BLE001 - any failure means: build the parser
        return None


def _tag(value):
    """Lark's serialized tables as JSON data: dicts with non-string keys and tuples are tagged so that
    :func:`_untag` gives back exactly the same values (JSON has only string keys and lists)."""
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {k: _tag(v) for k, v in value.items()}
        return {"__items__": [[_tag(k), _tag(v)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {"__tuple__": [_tag(v) for v in value]}
    if isinstance(value, list):
        return [_tag(v) for v in value]
    return value


def _untag(obj: dict):
    if len(obj) == 1 and "__items__" in obj:
        return {_hashable(k): v for k, v in obj["__items__"]}
    if len(obj) == 1 and "__tuple__" in obj:
        return tuple(obj["__tuple__"])
    return obj


def _hashable(key):
    return tuple(_hashable(k) for k in key) if isinstance(key, list) else key


def _save_parser(parser: lark.Lark, path: Path) -> None:
    """Save the parser at ``path`` atomically (a temporary file renamed over it); a cache that
    cannot be written is skipped."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".lalr-", suffix=".tmp")
    except OSError:
        return
    try:
        data, memo = parser.memo_serialize([TerminalDef, Rule])
        with os.fdopen(fd, "wb") as f:
            f.write(path.name.encode() + b"\n")
            f.write(json.dumps(_tag({"data": data, "memo": memo})).encode("utf-8"))
        os.replace(tmp, path)
    except Exception:  # noqa: BLE001 - the cache is an optimisation only
        try:
            os.unlink(tmp)
        except OSError:
            pass


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
