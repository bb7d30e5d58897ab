"""Parse `.const` source into the typed AST, with diagnostics instead of exceptions.

The grammar (``grammar/constitution.lark``) is compiled by Lark once per process
(``lark_parser`` is cached); :mod:`cai_dsl.lang.lalr` runs its tables, and an
:class:`~cai_dsl.lang.builder.AstBuilder` makes frozen :mod:`cai_dsl.lang.ast` models with
source spans as rules are reduced (no parse tree). When the text is not valid, Lark parses it
again to say why: syntax errors are reported in plain words with the offending token's span;
after an error the parser resynchronises at the next top-level declaration to report more.
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from lark.exceptions import UnexpectedInput

from cai_dsl.core.files import read_limited
from cai_dsl.diagnostics import Diagnostic, rules
from cai_dsl.lang import ast, lalr
from cai_dsl.lang.builder import AstBuilder
from cai_dsl.lang.grammar import MAX_FILE_BYTES, MAX_SYNTAX_ERRORS, MAX_TREE_DEPTH, grammar_text, lark_parser, point
from cai_dsl.lang.strings import long_string_value, unescape
from cai_dsl.lang.syntax_errors import syntax_errors, tree_too_deep

__all__ = [
    "ParseResult",
    "decode_source",
    "extract_comments",
    "grammar_text",
    "lark_parser",
    "long_string_value",
    "parse_file",
    "parse_text",
    "read_source",
    "unescape",
]


@dataclass
class ParseResult:
    """A parsed file (None when syntax errors prevented building it) and its diagnostics."""

    path: str
    text: str
    file: ast.ConstitutionFile | None
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.file is not None and not any(d.is_error for d in self.diagnostics)


# ------------------------------------------------------------------ reading


def _too_large(path: str, size: int | None, limit: int) -> Diagnostic:
    what = f"file is {size / 2**20:.1f} MiB" if size is not None else "file is too large"
    return rules.FILE_TOO_LARGE(
        f"{what}; the limit is {limit / 2**20:g} MiB",
        point(path, 1, 1),
        help="split the constitution into several files joined with `import` (or raise `[tool.cai] max-file-mib`)",
    )


def decode_source(data: bytes, path: str, limit: int = MAX_FILE_BYTES) -> tuple[str | None, list[Diagnostic]]:
    """Decode UTF-8 (an optional BOM is dropped); report the first bad byte's position."""
    if len(data) > limit:
        return None, [_too_large(path, len(data), limit)]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        return None, [
            rules.INVALID_ENCODING(
                f"byte 0x{data[exc.start]:02x} is not valid UTF-8",
                point(path, line, column),
                help="save the file as UTF-8 text",
            )
        ]
    if text.startswith("\ufeff"):
        text = text[1:]
    return text, []


def read_source(path: str | Path, limit: int = MAX_FILE_BYTES) -> tuple[str | None, list[Diagnostic]]:
    """Read and decode a regular file of at most ``limit`` bytes (checked before reading, and never
    more than ``limit + 1`` bytes read); devices, FIFOs, directories and OS errors are CAI007."""
    path = str(path)
    try:
        data = read_limited(path, limit)
    except OSError as exc:
        return None, [rules.UNREADABLE_FILE(f"cannot read `{path}`: {exc.strerror or exc}", None)]
    except ValueError as exc:
        return None, [rules.UNREADABLE_FILE(f"cannot read `{path}`: {exc}", None, help="name a regular `.const` file")]
    if data is None:
        try:
            size: int | None = os.stat(path).st_size
        except OSError:
            size = None
        return None, [_too_large(path, size if size and size > limit else None, limit)]
    return decode_source(data, path, limit)


def parse_file(path: str | Path, limit: int = MAX_FILE_BYTES) -> ParseResult:
    """Read and parse one file."""
    text, diagnostics = read_source(path, limit)
    if text is None:
        return ParseResult(str(path), "", None, diagnostics)
    return parse_text(text, str(path))


_STRING_OR_COMMENT_RE = re.compile(
    r'"""(?:[^"\\]|\\[\s\S]|"(?!""))*"""'  # triple-quoted string
    r'|"(?:[^"\\\n]|\\.)*"'  # string
    r"|#(?=[ \t\r\n]|$)[^\n]*",  # comment
)


def extract_comments(text: str, path: str) -> tuple[ast.Comment, ...]:
    """Comments of a syntactically valid file (strings are skipped, so `#` inside them is text)."""
    comments = []
    line, counted_to = 1, 0
    for match in _STRING_OR_COMMENT_RE.finditer(text):
        if match.group(0)[0] != "#":
            continue
        start = match.start()
        line += text.count("\n", counted_to, start)
        counted_to = start
        line_start = text.rfind("\n", 0, start) + 1
        body = match.group(0).rstrip("\r")
        column = start - line_start + 1
        comments.append(
            ast.Comment(
                text=body.rstrip(),
                trailing=bool(text[line_start:start].strip()),
                span=ast.Span(file=path, line=line, column=column, end_line=line, end_column=column + len(body)),
            )
        )
    return tuple(comments)


#: Bidirectional embedding, override and isolate controls: they make text display in another order
#: than it parses (CVE-2021-42574, "Trojan Source"). Marks (U+200E/U+200F) stay allowed.
_BIDI_RE = re.compile("[\u202a-\u202e\u2066-\u2069]")


def bidi_controls(text: str, path: str) -> list[Diagnostic]:
    """CAI010 for each line holding a bidirectional control character (named by code point)."""
    out: list[Diagnostic] = []
    line, counted_to = 1, 0
    last_line = 0
    for match in _BIDI_RE.finditer(text):
        line += text.count("\n", counted_to, match.start())
        counted_to = match.start()
        if line == last_line:
            continue
        last_line = line
        column = match.start() - (text.rfind("\n", 0, match.start()) + 1) + 1
        out.append(
            rules.BIDI_CONTROL(
                f"bidirectional control character U+{ord(match.group()):04X} "
                f"({unicodedata.name(match.group())}): the text displays in another order than it reads",
                point(path, line, column),
                help="remove it; write right-to-left text without embedding or override controls",
            )
        )
        if len(out) >= MAX_SYNTAX_ERRORS:
            break
    return out


def parse_text(text: str, path: str = "<string>") -> ParseResult:
    """Parse source text. Never raises for bad input: problems come back as diagnostics."""
    result = _parse_text(text, path)
    bidi = bidi_controls(text, path) if len(text) <= MAX_FILE_BYTES else []
    if bidi:
        result.diagnostics = [*bidi, *result.diagnostics]
    return result


def _parse_text(text: str, path: str) -> ParseResult:
    if len(text) > MAX_FILE_BYTES:
        return ParseResult(path, text, None, [_too_large(path, len(text.encode("utf-8", "surrogatepass")), MAX_FILE_BYTES)])
    builder = AstBuilder(path, text)
    try:
        with _collector_paused():
            items, height = lalr.parse(text, builder)
    except lalr.Rejected:
        problems = _lark_problems(text, path)
        if problems is None:
            raise RuntimeError(f"{path}: the parser rejected a text that Lark accepts") from None
        return ParseResult(path, text, None, problems)
    except ValueError as exc:  # a model rejected a value (pydantic ValidationError is a ValueError)
        problems = _lark_problems(text, path)  # syntax errors and nesting are reported first
        if problems is not None:
            return ParseResult(path, text, None, problems)
        first = str(exc).splitlines()[0]
        return ParseResult(path, text, None, [rules.INVALID_LITERAL(f"invalid value: {first}", point(path, 1, 1))])
    if height > MAX_TREE_DEPTH:
        problems = _lark_problems(text, path)
        if problems is not None:
            return ParseResult(path, text, None, problems)
    file_span = ast.Span(
        file=path, line=1, column=1, end_line=text.count("\n") + 1, end_column=len(text) - text.rfind("\n")
    )
    parsed = ast.ConstitutionFile(
        path=path, items=tuple(items), comments=extract_comments(text, path), span=file_span
    )
    return ParseResult(path, text, parsed, builder.diagnostics)


@contextlib.contextmanager
def _collector_paused():
    """Pause CPython's cyclic garbage collector: a parse makes several objects per token, all kept
    and none in a reference cycle, and the collector would walk the growing heap again and again
    for nothing (more than half the time of a large file's parse). Collection resumes after."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _lark_problems(text: str, path: str) -> list[Diagnostic] | None:
    """Lark's parse of ``text``: its syntax errors, or too deep a nesting; None when it is fine."""
    try:
        tree = lark_parser().parse(text)
    except UnexpectedInput as exc:
        return syntax_errors(text, path, exc)
    deep = tree_too_deep(tree, path)
    return [deep] if deep is not None else None
