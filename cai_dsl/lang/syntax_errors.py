"""Syntax errors in plain words: what was found, what was expected, a hint; after an
error the parser resynchronises at the next top-level declaration to report more."""

from __future__ import annotations

import re
import unicodedata

from lark import Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from cai_dsl.diagnostics import Diagnostic, rules
from cai_dsl.lang.grammar import (
    BEHAVIOR_FIELDS,
    MAX_SYNTAX_ERRORS,
    MAX_TREE_DEPTH,
    PRINCIPLE_FIELDS,
    TOP_LEVEL_KEYWORDS,
    lark_parser,
    point,
    span_of,
)

_TERMINAL_WORDS = {
    "NAME": "a name",
    "GLOB": "a glob such as `harm.*`",
    "TAG": "a tag such as `#safety`",
    "NUMBER": "a number",
    "STRING": "a string",
    "LONG_STRING": "a string",
    "$END": "the end of the file",
}


def _describe_terminal(name: str) -> str:
    if name in _TERMINAL_WORDS:
        return _TERMINAL_WORDS[name]
    for term in lark_parser().terminals:
        if term.name == name and term.pattern.type == "str":
            return f"'{term.pattern.value}'"
    return name.lower()


def _describe_expected(expected: set[str]) -> str:
    words = sorted({_describe_terminal(n) for n in expected})
    keywords = {f"'{k}'" for k in TOP_LEVEL_KEYWORDS}
    if keywords <= set(words):
        words = [w for w in words if w not in keywords] + ["a declaration (`principle`, `facet`, `deployment`, ...)"]
    if len(words) > 12:
        words = words[:12] + ["..."]
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " or " + words[-1]


def _describe_token(token: Token) -> str:
    if token.type == "$END":
        return "end of file"
    if token.type == "TAG":
        return f"tag `{token}`"
    text = str(token)
    if token.type in ("STRING", "LONG_STRING"):
        return "a string"
    if token.type == "NAME":
        return f"name `{text}`"
    if token.type == "NUMBER":
        return f"number `{text}`"
    return f"`{text}`"


def _syntax_help(token: Token | None, expected: set[str]) -> str | None:
    described = {_describe_terminal(n) for n in expected}
    if token is not None and token.type == "TAG" and "TAG" not in expected:
        return "to write a comment, put a space after `#`"
    if token is not None and token.type == "$END" and "'}'" in described:
        return "a block opened with `{` is not closed"
    if token is not None and token.type == "NAME" and f"'{TOP_LEVEL_KEYWORDS[0]}'" in described:
        return "top-level declarations start with one of: " + ", ".join(TOP_LEVEL_KEYWORDS)
    if "'principle'" not in described and "'critique'" in described:
        return "principle fields are: " + ", ".join(PRINCIPLE_FIELDS)
    if "'marker'" in described and "'critique'" not in described:
        return "behavior fields are: " + ", ".join(BEHAVIOR_FIELDS)
    return None


def _syntax_diagnostic(exc: UnexpectedInput, text: str, path: str) -> Diagnostic:
    if isinstance(exc, UnexpectedToken):
        token = exc.token
        expected = set(exc.expected) | set(getattr(exc, "accepts", None) or ())
        if token.type == "$END":
            lines = text.splitlines() or [""]
            line, column = len(lines), len(lines[-1]) + 1
            span = point(path, line, column)
        else:
            span = span_of(path, token)
        return rules.SYNTAX_ERROR(
            f"unexpected {_describe_token(token)}; expected {_describe_expected(expected)}",
            span,
            help=_syntax_help(token, expected),
        )
    if isinstance(exc, UnexpectedCharacters):
        char = text[exc.pos_in_stream] if exc.pos_in_stream < len(text) else ""
        span = point(path, exc.line, exc.column)
        if char == '"':
            rest = text[exc.pos_in_stream :]
            if text[max(exc.pos_in_stream - 2, 0) : exc.pos_in_stream + 1] == '"""' and exc.column > 2:
                # the lexer took the first two quotes of `"""` for an empty string
                span = point(path, exc.line, exc.column - 2)
                rest = '"""'
            if rest.startswith('"""'):
                return rules.UNTERMINATED_STRING("unterminated triple-quoted string", span, help='close it with `"""`')
            return rules.UNTERMINATED_STRING(
                "unterminated string",
                span,
                help='close it with `"` on the same line, or use `"""` for text spanning several lines',
            )
        if char == "#":
            return rules.SYNTAX_ERROR(
                "`#` must be followed by a space to start a comment, or by a name to reference a tag",
                span,
                help="write `# comment` or `#tag`",
            )
        if char == "=" and text[exc.pos_in_stream : exc.pos_in_stream + 2] != "==":
            return rules.SYNTAX_ERROR("unexpected `=`", span, help="compare values with `==`")
        shown = repr(char) if char.isprintable() and char.strip() else f"U+{ord(char):04X}" if char else "end of input"
        if char and not char.isascii():  # a look-alike (Cyrillic `а` for `a`) must say which character it is
            shown = f"{shown} (U+{ord(char):04X} {unicodedata.name(char, 'unnamed character')}; names are ASCII)"
        allowed = getattr(exc, "allowed", None) or set()
        expected = f"; expected {_describe_expected(set(allowed))}" if allowed else ""
        return rules.SYNTAX_ERROR(f"unexpected character {shown}{expected}", span)
    if isinstance(exc, UnexpectedEOF):
        lines = text.splitlines() or [""]
        return rules.SYNTAX_ERROR(
            f"unexpected end of file; expected {_describe_expected(set(exc.expected))}",
            point(path, len(lines), len(lines[-1]) + 1),
        )
    return rules.SYNTAX_ERROR(str(exc).splitlines()[0], point(path, 1, 1))


_RESYNC_RE = re.compile(r"^(?:" + "|".join(TOP_LEVEL_KEYWORDS) + r")\b", re.M)


def _resync_offset(text: str, after_line: int) -> int | None:
    """Offset of the first line after ``after_line`` that starts a top-level declaration."""
    pos = 0
    for _ in range(after_line):
        nl = text.find("\n", pos)
        if nl < 0:
            return None
        pos = nl + 1
    match = _RESYNC_RE.search(text, pos)
    return match.start() if match else None


def _blank_prefix(text: str, offset: int) -> str:
    """Replace text before ``offset`` by spaces (keeping newlines) so positions stay exact."""
    prefix = re.sub(r"[^\n]", " ", text[:offset])
    return prefix + text[offset:]


def tree_too_deep(tree: Tree, path: str) -> Diagnostic | None:
    stack: list[tuple[Tree, int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_TREE_DEPTH:
            return rules.NESTING_TOO_DEEP(
                f"nesting deeper than {MAX_TREE_DEPTH} levels",
                span_of(path, node.meta),
                help="flatten the expression, e.g. with `in {...}`, or split it across conflict branches",
            )
        for child in node.children:
            if isinstance(child, Tree):
                stack.append((child, depth + 1))
    return None


def syntax_errors(text: str, path: str, first: UnexpectedInput) -> list[Diagnostic]:
    diagnostics = [_syntax_diagnostic(first, text, path)]
    current = first
    while len(diagnostics) < MAX_SYNTAX_ERRORS:
        line = getattr(current, "line", -1)
        if not isinstance(line, int) or line < 1:
            break
        offset = _resync_offset(text, line)
        if offset is None:
            break
        try:
            lark_parser().parse(_blank_prefix(text, offset))
            break
        except UnexpectedInput as exc:
            diag = _syntax_diagnostic(exc, text, path)
            if diag.span == diagnostics[-1].span:
                break
            diagnostics.append(diag)
            current = exc
    return diagnostics
