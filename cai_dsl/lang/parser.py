"""Parse `.const` source into the typed AST, with diagnostics instead of exceptions.

The Lark LALR parser is built once per process (``lark_parser`` is cached) from
``grammar/constitution.lark``. A :class:`_AstBuilder` transformer turns the parse
tree into frozen :mod:`cai_dsl.lang.ast` models with source spans. Syntax errors are
reported in plain words with the offending token's span; after an error the
parser resynchronises at the next top-level declaration to report more.
"""

from __future__ import annotations

import functools
import importlib.resources
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import lark
from lark import Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from cai_dsl.lang import ast

from cai_dsl.diagnostics import rules
from cai_dsl.diagnostics.base import Diagnostic

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

_TERMINAL_WORDS = {
    "NAME": "a name",
    "GLOB": "a glob such as `harm.*`",
    "TAG": "a tag such as `#safety`",
    "NUMBER": "a number",
    "STRING": "a string",
    "LONG_STRING": "a string",
    "$END": "the end of the file",
}


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


def _point(path: str, line: int, column: int, length: int = 1) -> ast.Span:
    return ast.Span(file=path, line=line, column=column, end_line=line, end_column=column + max(length, 1))


def decode_source(data: bytes, path: str) -> tuple[str | None, list[Diagnostic]]:
    """Decode UTF-8 (an optional BOM is dropped); report the first bad byte's position."""
    if len(data) > MAX_FILE_BYTES:
        return None, [
            rules.FILE_TOO_LARGE(
                f"file is {len(data) / 2**20:.1f} MiB; the limit is {MAX_FILE_BYTES // 2**20} MiB",
                _point(path, 1, 1),
                help="split the constitution into several files joined with `import`",
            )
        ]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        return None, [
            rules.INVALID_ENCODING(
                f"byte 0x{data[exc.start]:02x} is not valid UTF-8",
                _point(path, line, column),
                help="save the file as UTF-8 text",
            )
        ]
    if text.startswith("\ufeff"):
        text = text[1:]
    return text, []


def read_source(path: str | Path) -> tuple[str | None, list[Diagnostic]]:
    """Read and decode a file, turning OS errors into a CAI007 diagnostic."""
    path = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return None, [rules.UNREADABLE_FILE(f"cannot read `{path}`: {exc.strerror or exc}", None)]
    return decode_source(data, path)


def parse_file(path: str | Path) -> ParseResult:
    """Read and parse one file."""
    text, diagnostics = read_source(path)
    if text is None:
        return ParseResult(str(path), "", None, diagnostics)
    return parse_text(text, str(path))


# ------------------------------------------------------------------ strings


_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "r": "\r"}
_ESCAPE_RE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)", re.S)


def unescape(body: str) -> str:
    """Resolve ``\\"``, ``\\\\``, ``\\n``, ``\\t``, ``\\r`` and ``\\uXXXX``; raise ValueError otherwise."""

    def sub(match: re.Match) -> str:
        esc = match.group(1)
        if esc in _ESCAPES:
            return _ESCAPES[esc]
        if esc.startswith("u") and len(esc) == 5:
            return chr(int(esc[1:], 16))
        raise ValueError(f"unknown escape `\\{esc}`")

    return _ESCAPE_RE.sub(sub, body)


def long_string_value(raw_body: str) -> str:
    """The value of a triple-quoted string body: a first newline is dropped, the
    closing line's indentation and newline are dropped, common indentation is removed."""
    body = raw_body
    if body.startswith("\r\n"):
        body = body[2:]
    elif body.startswith("\n"):
        body = body[1:]
    body = re.sub(r"\r?\n[ \t]*\Z", "", body)
    body = body.replace("\r\n", "\n")
    return unescape(textwrap.dedent(body))


# ------------------------------------------------------------------ builder


def _span(path: str, meta_or_token) -> ast.Span:
    return ast.Span(
        file=path,
        line=meta_or_token.line,
        column=meta_or_token.column,
        end_line=meta_or_token.end_line,
        end_column=meta_or_token.end_column,
    )


class _BuildError(Exception):
    def __init__(self, diagnostic: Diagnostic):
        self.diagnostic = diagnostic


class _AstBuilder:
    """Parse tree -> AST; collects non-fatal diagnostics in ``self.diagnostics``.

    One method per grammar rule, called as ``method(meta, children)`` bottom-up by
    :meth:`build`, an iterative walk (no recursion limit, and cheaper than Lark's
    generic Transformer dispatch, which dominated the parse profile).
    """

    def __init__(self, path: str):
        self.path = path
        self.diagnostics: list[Diagnostic] = []

    def build(self, tree: Tree):
        results: dict[int, object] = {}
        stack: list[tuple[Tree, bool]] = [(tree, False)]
        handlers: dict[str, object] = {}
        while stack:
            node, expanded = stack.pop()
            if not expanded:
                stack.append((node, True))
                stack.extend((child, False) for child in node.children if isinstance(child, Tree))
                continue
            name = node.data
            handler = handlers.get(name)
            if handler is None:
                handler = handlers[name] = getattr(self, str(name))
            children = [results.pop(id(c)) if isinstance(c, Tree) else c for c in node.children]
            results[id(node)] = handler(node.meta, children)
        return results[id(tree)]

    # -- helpers
    def _s(self, meta) -> ast.Span:
        return _span(self.path, meta)

    def _ident(self, token: Token) -> ast.Ident:
        return ast.Ident(name=str(token), span=_span(self.path, token))

    def _simple(self, token: Token, what: str) -> ast.Ident:
        ident = self._ident(token)
        if "." in ident.name:
            self.diagnostics.append(
                rules.INVALID_NAME(
                    f"{what} `{ident.name}` cannot contain a dot",
                    ident.span,
                    help="dotted names are for principle ids; use an underscore instead",
                )
            )
        return ident

    # -- strings
    def string(self, meta, children) -> ast.Text:
        token: Token = children[0]
        span = _span(self.path, token)
        try:
            if token.type == "LONG_STRING":
                return ast.Text(value=long_string_value(str(token)[3:-3]), triple=True, span=span)
            return ast.Text(value=unescape(str(token)[1:-1]), span=span)
        except ValueError as exc:
            self.diagnostics.append(
                rules.INVALID_LITERAL(
                    f"invalid string: {exc}", span, help='valid escapes are \\" \\\\ \\n \\t \\r and \\uXXXX'
                )
            )
            return ast.Text(value=str(token).strip('"'), triple=token.type == "LONG_STRING", span=span)

    # -- header
    def start(self, meta, children) -> list:
        return children

    def header(self, meta, children):
        return ast.Header(name=children[0], version=children[1], span=self._s(meta))

    def source(self, meta, children):
        return ast.Source(text=children[0], span=self._s(meta))

    def import_decl(self, meta, children):
        return ast.Import(path=children[0], span=self._s(meta))

    # -- vocabulary
    def unordered_values(self, meta, children):
        return (False, [self._simple(t, "facet value") for t in children])

    def ordered_values(self, meta, children):
        return (True, [self._simple(t, "facet value") for t in children])

    def facet(self, meta, children):
        name, (ordered, values) = children
        return ast.Facet(name=self._simple(name, "facet"), values=tuple(values), ordered=ordered, span=self._s(meta))

    def behavior(self, meta, children):
        return ast.Behavior(name=self._simple(children[0], "behavior"), description=children[1], span=self._s(meta))

    def exclusive(self, meta, children):
        return ast.Exclusive(members=tuple(self._simple(t, "behavior") for t in children), span=self._s(meta))

    # -- principle fields
    def critique(self, meta, children):
        return ("critique", children[0])

    def revise(self, meta, children):
        return ("revise", children[0])

    def compare(self, meta, children):
        return ("compare", children[0])

    def when(self, meta, children):
        return ("when", children[0])

    def effect_kind(self, meta, children):
        return str(children[0])

    def effect(self, meta, children):
        kind, *names = children
        return (
            "effects",
            ast.Effect(effect=kind, behaviors=tuple(self._simple(t, "behavior") for t in names), span=self._s(meta)),
        )

    def weight(self, meta, children):
        token = children[0]
        return ("weight", ast.Weight(value=float(token), literal=str(token), span=self._s(meta)))

    def tags(self, meta, children):
        return ("tags", ast.Tags(names=tuple(self._simple(t, "tag") for t in children), span=self._s(meta)))

    def ex_prompt(self, meta, children):
        return ("prompt", children[0])

    def ex_response(self, meta, children):
        return ("response", children[0])

    def ex_critique(self, meta, children):
        return ("critique", children[0])

    def ex_revision(self, meta, children):
        return ("revision", children[0])

    def ex_a(self, meta, children):
        return ("a", children[0])

    def ex_b(self, meta, children):
        return ("b", children[0])

    def ex_better(self, meta, children):
        ident = self._ident(children[0])
        if ident.name not in ("a", "b"):
            self.diagnostics.append(
                rules.INVALID_LITERAL(f"`better` must be `a` or `b`, not `{ident.name}`", ident.span)
            )
        return ("better", ident)

    def _fields(self, pairs, block: str, repeatable: tuple[str, ...] = ()) -> dict:
        fields: dict = {}
        for key, value in pairs:
            if key in repeatable:
                fields.setdefault(key, []).append(value)
            elif key in fields:
                self.diagnostics.append(
                    rules.DUPLICATE_FIELD(
                        f"`{key}` is given twice in this {block}",
                        getattr(value, "span", None),
                        help="keep one; in a principle, several `require`/`forbid`/`prefer` lines are allowed",
                    )
                )
            else:
                fields[key] = value
        for key in repeatable:
            if key in fields:
                fields[key] = tuple(fields[key])
        return fields

    def example(self, meta, children):
        return ("examples", ast.Example(span=self._s(meta), **self._fields(children, "example")))

    def compare_example(self, meta, children):
        return ("examples", ast.CompareExample(span=self._s(meta), **self._fields(children, "example")))

    def principle(self, meta, children):
        name, *pairs = children
        fields = self._fields(pairs, "principle", repeatable=("effects", "examples"))
        return ast.Principle(id=self._ident(name), span=self._s(meta), **fields)

    def override(self, meta, children):
        name, *pairs = children
        fields = self._fields(pairs, "override", repeatable=("effects", "examples"))
        return ast.Override(target=self._ident(name), span=self._s(meta), **fields)

    # -- ordering
    def selector(self, meta, children):
        token: Token = children[0]
        form = {"NAME": "name", "GLOB": "glob", "TAG": "tag"}[token.type]
        text = str(token)[1:] if form == "tag" else str(token)
        return ast.Selector(form=form, text=text, span=_span(self.path, token))

    def group(self, meta, children):
        name, *members = children
        return ast.Group(name=self._simple(name, "group"), members=tuple(members), span=self._s(meta))

    def priority_level(self, meta, children):
        return tuple(children)

    def priority(self, meta, children):
        return ast.Priority(levels=tuple(children), span=self._s(meta))

    def conflict_branch(self, meta, children):
        return ast.ConflictBranch(condition=children[0], winner=self._ident(children[1]), span=self._s(meta))

    def otherwise(self, meta, children):
        return self._ident(children[0])

    def conflict(self, meta, children):
        left, right, *rest = children
        otherwise = rest.pop()
        return ast.Conflict(
            left=self._ident(left),
            right=self._ident(right),
            branches=tuple(rest),
            otherwise=otherwise,
            span=self._s(meta),
        )

    # -- deployments
    def include(self, meta, children):
        return ast.Include(selectors=tuple(children), span=self._s(meta))

    def exclude(self, meta, children):
        return ast.Exclude(selectors=tuple(children), span=self._s(meta))

    def assume(self, meta, children):
        return ast.Assume(condition=children[0], span=self._s(meta))

    def number_value(self, meta, children):
        text = str(children[0])
        is_int = re.fullmatch(r"[+-]?\d+", text) is not None
        return ("number", int(text) if is_int else float(text), text)

    def string_value(self, meta, children):
        return ("string", children[0].value, children[0].value)

    def true_value(self, meta, children):
        return ("bool", True, "true")

    def false_value(self, meta, children):
        return ("bool", False, "false")

    def name_value(self, meta, children):
        return ("name", str(children[0]), str(children[0]))

    def setting(self, meta, children):
        key, (form, value, literal) = children
        return ast.Setting(
            key=self._simple(key, "setting"), value=value, value_form=form, literal=literal, span=self._s(meta)
        )

    def deployment(self, meta, children):
        name, parent, *items = children
        return ast.Deployment(
            name=self._simple(name, "deployment"),
            extends=self._ident(parent) if parent is not None else None,
            items=tuple(items),
            span=self._s(meta),
        )

    # -- tests
    def given(self, meta, children):
        return children[0]

    def forall(self, meta, children):
        return children[0]

    def behavior_expectation(self, meta, children):
        return (children[0], self._ident(children[1]), None)

    def negated_behavior_expectation(self, meta, children):
        return ("not_" + children[0], self._ident(children[1]), None)

    def winner_expectation(self, meta, children):
        return ("winner", self._ident(children[0]), self._ident(children[1]))

    def active_expectation(self, meta, children):
        return ("active", self._ident(children[0]), None)

    def negated_active_expectation(self, meta, children):
        return ("not_active", self._ident(children[0]), None)

    def expectation(self, meta, children):
        kind, subject, other = children[0]
        return ast.Expectation(expect=kind, subject=subject, other=other, span=self._s(meta))

    def test(self, meta, children):
        name, deployment, given, *expectations = children
        return ast.TestCase(
            name=name,
            deployment=self._ident(deployment),
            given=given,
            expectations=tuple(expectations),
            span=self._s(meta),
        )

    def property(self, meta, children):
        name, deployment, forall, *expectations = children
        return ast.PropertyCase(
            name=name,
            deployment=self._ident(deployment),
            forall=forall,
            expectations=tuple(expectations),
            span=self._s(meta),
        )

    # -- expressions
    def or_expr(self, meta, children):
        return ast.Or(operands=tuple(children), span=self._s(meta))

    def and_expr(self, meta, children):
        return ast.And(operands=tuple(children), span=self._s(meta))

    def negation(self, meta, children):
        return ast.Not(operand=children[0], span=self._s(meta))

    def true_literal(self, meta, children):
        return ast.BoolLiteral(value=True, span=self._s(meta))

    def false_literal(self, meta, children):
        return ast.BoolLiteral(value=False, span=self._s(meta))

    def comparator(self, meta, children):
        return str(children[0])

    def comparison(self, meta, children):
        facet, op, value = children
        return ast.Comparison(facet=self._ident(facet), op=op, value=self._ident(value), span=self._s(meta))

    def value_set(self, meta, children):
        return tuple(self._ident(t) for t in children)

    def membership(self, meta, children):
        return ast.Membership(facet=self._ident(children[0]), values=children[1], span=self._s(meta))

    def negated_membership(self, meta, children):
        return ast.Membership(facet=self._ident(children[0]), values=children[1], negated=True, span=self._s(meta))


# ------------------------------------------------------------------ errors


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
    return None


def _syntax_diagnostic(exc: UnexpectedInput, text: str, path: str) -> Diagnostic:
    if isinstance(exc, UnexpectedToken):
        token = exc.token
        expected = set(exc.expected) | set(getattr(exc, "accepts", None) or ())
        if token.type == "$END":
            lines = text.splitlines() or [""]
            line, column = len(lines), len(lines[-1]) + 1
            span = _point(path, line, column)
        else:
            span = _span(path, token)
        return rules.SYNTAX_ERROR(
            f"unexpected {_describe_token(token)}; expected {_describe_expected(expected)}",
            span,
            help=_syntax_help(token, expected),
        )
    if isinstance(exc, UnexpectedCharacters):
        char = text[exc.pos_in_stream] if exc.pos_in_stream < len(text) else ""
        span = _point(path, exc.line, exc.column)
        if char == '"':
            rest = text[exc.pos_in_stream :]
            if text[max(exc.pos_in_stream - 2, 0) : exc.pos_in_stream + 1] == '"""' and exc.column > 2:
                # the lexer took the first two quotes of `"""` for an empty string
                span = _point(path, exc.line, exc.column - 2)
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
        allowed = getattr(exc, "allowed", None) or set()
        expected = f"; expected {_describe_expected(set(allowed))}" if allowed else ""
        return rules.SYNTAX_ERROR(f"unexpected character {shown}{expected}", span)
    if isinstance(exc, UnexpectedEOF):
        lines = text.splitlines() or [""]
        return rules.SYNTAX_ERROR(
            f"unexpected end of file; expected {_describe_expected(set(exc.expected))}",
            _point(path, len(lines), len(lines[-1]) + 1),
        )
    return rules.SYNTAX_ERROR(str(exc).splitlines()[0], _point(path, 1, 1))


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


def _tree_too_deep(tree: Tree, path: str) -> Diagnostic | None:
    stack: list[tuple[Tree, int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_TREE_DEPTH:
            return rules.NESTING_TOO_DEEP(
                f"nesting deeper than {MAX_TREE_DEPTH} levels",
                _span(path, node.meta),
                help="flatten the expression, e.g. with `in {...}`, or split it across conflict branches",
            )
        for child in node.children:
            if isinstance(child, Tree):
                stack.append((child, depth + 1))
    return None


def _syntax_errors(text: str, path: str, first: UnexpectedInput) -> list[Diagnostic]:
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


def parse_text(text: str, path: str = "<string>") -> ParseResult:
    """Parse source text. Never raises for bad input: problems come back as diagnostics."""
    if len(text) > MAX_FILE_BYTES:
        return ParseResult(path, text, None, decode_source(b"x" * (MAX_FILE_BYTES + 1), path)[1])
    try:
        tree = lark_parser().parse(text)
    except UnexpectedInput as exc:
        return ParseResult(path, text, None, _syntax_errors(text, path, exc))
    deep = _tree_too_deep(tree, path)
    if deep is not None:
        return ParseResult(path, text, None, [deep])
    builder = _AstBuilder(path)
    try:
        items = builder.build(tree)
    except ValueError as exc:  # a model rejected a value (pydantic ValidationError is a ValueError)
        first = str(exc).splitlines()[0]
        return ParseResult(path, text, None, [rules.INVALID_LITERAL(f"invalid value: {first}", _point(path, 1, 1))])
    file_span = ast.Span(
        file=path, line=1, column=1, end_line=text.count("\n") + 1, end_column=len(text) - text.rfind("\n")
    )
    parsed = ast.ConstitutionFile(
        path=path, items=tuple(items), comments=extract_comments(text, path), span=file_span
    )
    return ParseResult(path, text, parsed, builder.diagnostics)
