"""The one `.const` printer: an AST back to canonical text (:func:`format_ast`), and the
one expression printer (:func:`format_expr`), used by the formatter, the compiler, the
exporters and the language server.

Every file has exactly one canonical layout; the printer ignores the original
whitespace and prints the AST back with these rules:

* **Top level.** Items stay in source order. A blank line separates top-level items,
  except that runs of one-line declarations of the same family stay together with
  no blank line between them: ``constitution``/``source``; ``import``; ``facet``;
  ``behavior``/``exclusive``; ``group``/``priority``. (An item whose string is
  printed triple-quoted is not one-line.) The file ends with exactly one newline;
  an empty file stays empty.
* **Blocks** (principle, example, override, conflict, deployment, test, property,
  and a behavior's observation block)
  put ``{`` at the end of the declaration line, indent their contents by 2 spaces,
  and put ``}`` alone on its own line. There are no blank lines inside blocks. A
  block is always printed multi-line, even with a single short item
  (``deployment base {`` / ``include *`` / ``}``); only an empty block prints as
  ``{}``.
* **Principle fields** (and ``override`` bodies) come in the canonical order
  ``critique``, ``revise``, ``compare``, ``when``, the effect lines in source order
  (one per source line), ``weight``, ``tags``, ``authority``, ``final``, then the
  ``example`` blocks in source order (an ``override`` prints ``narrow when`` after ``when``). Example fields are ordered: the ``turn`` lines in source order, ``prompt``, ``response``,
  ``request critique``, ``critique``, ``request revision``, ``revision`` (or the turns, ``prompt``,
  ``request compare``, ``a``, ``b``, ``better``, ``rationale``); a top-level example prints like one
  in a principle, at top level. A behavior's block lists
  ``marker``, ``pattern``, ``judge``, ``opening`` lines in that order, one line per field
  and source line (values written on one line stay on one line). The string values of a
  block's keyword-string fields are aligned to one column
  (``revise   "..."`` under ``critique "..."``).
* **Lists** are joined with ``", "``; facet domains with ``" | "`` or ``" < "``;
  priority levels with ``" > "``; value sets print as ``in {a, b}``; tags selectors
  print as ``#tag``.
* **Expressions** print on one line with the fewest parentheses that keep the tree:
  ``not`` binds tighter than ``and``, which binds tighter than ``or``; a nested
  ``and`` inside ``and`` (or ``or`` inside ``or``) keeps its parentheses because it
  is a distinct tree.
* **Strings** print double-quoted with escapes (``\\" \\\\ \\n \\t \\r \\uXXXX``;
  control characters, surrogates and line separators are escaped). A value with a
  newline prints triple-quoted: ``\"\"\"`` then the lines indented one level deeper than
  the statement, and the closing ``\"\"\"`` on its own line at the statement's
  indentation -- but only when re-reading that literal gives back the identical
  value and no line would end in a space (whitespace-only lines or a common leading
  indentation would be changed by the dedent); otherwise the value prints
  double-quoted with ``\\n`` escapes.
* **Numbers** keep the spelling they were written with (``2.0`` stays ``2.0``).
* **Comments** are never dropped. An own-line comment is attached to the next
  statement (top-level item, principle field, example field, deployment item,
  conflict branch, test line) or, when nothing follows inside the enclosing block,
  to that block's closing brace; it prints on its own line just before it, at its
  indentation (before a ``}``: at the block's inner indentation). A comment inside a
  multi-line statement goes before that statement. A trailing comment stays at the
  end of the (last) line of the statement it trails, after two spaces; when several
  trail one statement, all but the last print before it. Comments after the last
  item stay at the end of the file, after a blank line.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from typing import Iterable, Union

from cai_dsl.lang import ast
from cai_dsl.lang.strings import long_string_value

INDENT = "  "
TRAILING_COMMENT_GAP = "  "

_NUMBER_RE = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")

Pos = tuple[int, int]


# ------------------------------------------------------------------ strings


def _escape_char(ch: str) -> str | None:
    code = ord(ch)
    if code < 0x20 or code == 0x7F or 0x80 <= code < 0xA0 or 0xD800 <= code <= 0xDFFF or code in (0x2028, 0x2029, 0xFEFF):
        return f"\\u{code:04x}"
    return None


_SIMPLE_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def quote(value: str) -> str:
    """``value`` as a double-quoted string literal with escapes."""
    out = []
    for ch in value:
        esc = _SIMPLE_ESCAPES.get(ch)
        if esc is None:
            esc = _escape_char(ch)
        out.append(esc if esc is not None else ch)
    return '"' + "".join(out) + '"'


_QUOTE_RUN_RE = re.compile(r'"{3,}')


def _escape_long_line(line: str) -> str:
    out = []
    for ch in line:
        if ch == "\\":
            out.append("\\\\")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        else:
            esc = _escape_char(ch)
            out.append(esc if esc is not None else ch)
    # a run of three quotes would close the literal: escape every quote of such a run
    return _QUOTE_RUN_RE.sub(lambda m: '\\"' * len(m.group(0)), "".join(out))


def triple_quote(value: str, indent: str) -> str | None:
    """``value`` as a triple-quoted literal whose lines sit one level deeper than
    ``indent``; None when that literal would not read back as exactly ``value``."""
    lines = value.split("\n")
    if any(line.endswith(" ") for line in lines):
        return None
    body = [indent + INDENT + _escape_long_line(line) if line else "" for line in lines]
    literal = '"""\n' + "\n".join(body) + "\n" + indent + '"""'
    try:
        if long_string_value(literal[3:-3]) != value:
            return None
    except ValueError:
        return None
    return literal


def format_string(value: str, indent: str = "") -> str:
    """The canonical literal for a string value written at indentation ``indent``."""
    if "\n" in value:
        literal = triple_quote(value, indent)
        if literal is not None:
            return literal
    return quote(value)


def _number(literal: str, value: float | int) -> str:
    if _NUMBER_RE.fullmatch(literal or ""):
        return literal
    return repr(value)


# ------------------------------------------------------------------ expressions


def _prec(expr: ast.Node) -> int:
    if isinstance(expr, ast.Or):
        return 1
    if isinstance(expr, ast.And):
        return 2
    if isinstance(expr, ast.Not):
        return 3
    return 4


def format_expr(expr: ast.Node, min_prec: int = 0) -> str:
    """An expression on one line with minimal parentheses (not > and > or)."""
    if isinstance(expr, ast.Or):
        text = " or ".join(format_expr(op, 2) for op in expr.operands)
    elif isinstance(expr, ast.And):
        text = " and ".join(format_expr(op, 3) for op in expr.operands)
    elif isinstance(expr, ast.Not):
        text = "not " + format_expr(expr.operand, 3)
    elif isinstance(expr, ast.BoolLiteral):
        text = "true" if expr.value else "false"
    elif isinstance(expr, ast.Comparison):
        right = expr.value.name if isinstance(expr.value, ast.Ident) else str(expr.value.value)
        text = f"{expr.facet.name} {expr.op} {right}"
    elif isinstance(expr, ast.Membership):
        keyword = "not in" if expr.negated else "in"
        text = f"{expr.facet.name} {keyword} {{{', '.join(v.name for v in expr.values)}}}"
    else:  # pragma: no cover - every Expr kind is handled above
        raise TypeError(f"not an expression: {type(expr).__name__}")
    return f"({text})" if _prec(expr) < min_prec else text


def _selector(sel: ast.Selector) -> str:
    return "#" + sel.text if sel.form == "tag" else sel.text


def _selectors(selectors: Iterable[ast.Selector]) -> str:
    return ", ".join(_selector(s) for s in selectors)


def _names(idents: Iterable[ast.Ident]) -> str:
    return ", ".join(i.name for i in idents)


# ------------------------------------------------------------------ layout tree


def _valid(span: ast.Span | None) -> bool:
    return span is not None and span.line >= 1 and span.column >= 1


@dataclass(eq=False)
class _Leaf:
    """A statement printed on one line (or several, for a triple-quoted string).

    ``text``'s first line carries no indentation; its continuation lines carry
    their absolute indentation."""

    text: str
    span: ast.Span | None
    leading: list[str] = field(default_factory=list)
    trailing: list[str] = field(default_factory=list)


@dataclass(eq=False)
class _Block:
    """``header {`` children ``}``; ``header_end`` is where the header's last token ends."""

    header: str
    span: ast.Span | None
    header_end: Pos | None
    children: list[Union[_Leaf, "_Block"]]
    leading: list[str] = field(default_factory=list)
    trailing: list[str] = field(default_factory=list)  # after `{`
    inner_end: list[str] = field(default_factory=list)  # own-line, before `}`
    close_trailing: list[str] = field(default_factory=list)  # after `}`


_Doc = Union[_Leaf, _Block]


def _end_of(node: ast.Node | None) -> Pos | None:
    if node is None or not _valid(node.span):
        return None
    return (node.span.end_line, node.span.end_column)


def _keyword_end(span: ast.Span | None, keyword: str) -> Pos | None:
    return (span.line, span.column + len(keyword)) if _valid(span) else None


class _Builder:
    """Turns AST nodes into the layout tree (pure: one instance per call)."""

    def text_fields(self, pairs: list[tuple[str, ast.Text | None]], indent: str) -> list[_Doc]:
        present = [(key, text) for key, text in pairs if text is not None]
        if not present:
            return []
        width = max(len(key) for key, _ in present)
        return [_Leaf(f"{key.ljust(width)} {format_string(text.value, indent)}", text.span) for key, text in present]

    def body(self, body: ast.PrincipleBody, depth: int) -> list[_Doc]:
        indent = INDENT * depth
        out = self.text_fields(
            [("critique", body.critique), ("revise", body.revise), ("compare", body.compare)], indent
        )
        if body.when is not None:
            out.append(_Leaf("when " + format_expr(body.when), body.when.span))
        narrow = getattr(body, "narrow", None)
        if narrow is not None:
            out.append(_Leaf("narrow when " + format_expr(narrow), narrow.span))
        for effect in body.effects:
            out.append(_Leaf(f"{effect.effect} {_names(effect.behaviors)}", effect.span))
        if body.weight is not None:
            out.append(_Leaf(f"weight {_number(body.weight.literal, body.weight.value)}", body.weight.span))
        if body.tags is not None:
            out.append(_Leaf(f"tags {_names(body.tags.names)}", body.tags.span))
        if isinstance(body, ast.Principle) and body.authority is not None:
            out.append(_Leaf(f"authority {body.authority.name}", body.authority.span))
        if isinstance(body, ast.Principle) and body.final is not None:
            out.append(_Leaf("final", body.final.span))
        for example in body.examples:
            out.append(self.example(example, depth))
        return out

    def example(self, example: ast.Example | ast.CompareExample, depth: int) -> _Block:
        indent = INDENT * (depth + 1)
        turns = [(f"turn {t.role.name}", t.text) for t in example.turns]
        request = lambda what: (f"request {what}", example.request(what))  # noqa: E731
        if isinstance(example, ast.CompareExample):
            pairs = [*turns, ("prompt", example.prompt), request("compare"), ("a", example.a), ("b", example.b)]
            children = self.text_fields(pairs, indent)
            if example.better is not None:
                children.append(_Leaf(f"better {example.better.name}", example.better.span))
            children += self.text_fields([("rationale", example.rationale)], indent)
            header = "example compare"
        else:
            pairs = [
                *turns,
                ("prompt", example.prompt),
                ("response", example.response),
                request("critique"),
                ("critique", example.critique),
                request("revision"),
                ("revision", example.revision),
            ]
            children = self.text_fields(pairs, indent)
            header = "example"
        return _Block(header, example.span, _keyword_end(example.span, "example"), children)

    def observe(self, observe: ast.Observe) -> list[_Doc]:
        """One line per field and source line (a value that starts on the line where the
        previous value of its field ends stays with it), fields in the order marker,
        pattern, judge, opening, values aligned."""
        lines: list[tuple[str, list[ast.Text]]] = []
        for key, values in (
            ("marker", observe.markers),
            ("pattern", observe.patterns),
            ("judge", observe.judges),
            ("opening", observe.openings),
        ):
            for value in values:
                if lines and lines[-1][0] == key and lines[-1][1][-1].span.end_line == value.span.line:
                    lines[-1][1].append(value)
                else:
                    lines.append((key, [value]))
        width = max((len(key) for key, _ in lines), default=0)
        out: list[_Doc] = []
        for key, values in lines:
            first, last = values[0].span, values[-1].span
            span = first.model_copy(update={"end_line": last.end_line, "end_column": last.end_column})
            literals = ", ".join(format_string(v.value, INDENT) for v in values)
            out.append(_Leaf(f"{key.ljust(width)} {literals}", span))
        return out

    def deployment_item(self, item: ast.Node, depth: int) -> _Doc:
        indent = INDENT * depth
        if isinstance(item, ast.Include):
            return _Leaf("include " + _selectors(item.selectors), item.span)
        if isinstance(item, ast.Exclude):
            return _Leaf("exclude " + _selectors(item.selectors), item.span)
        if isinstance(item, ast.Assume):
            return _Leaf("assume " + format_expr(item.condition), item.span)
        if isinstance(item, ast.Priority):
            return self.priority(item)
        if isinstance(item, ast.DeploymentAuthority):
            return _Leaf(f"authority {item.level.name}", item.span)
        if isinstance(item, ast.Lock):
            return _Leaf("lock " + _selectors(item.selectors), item.span)
        if isinstance(item, ast.Override):
            return _Block(f"override {item.target.name}", item.span, _end_of(item.target), self.body(item, depth + 1))
        if isinstance(item, ast.Setting):
            if item.value_form == "number" and not isinstance(item.value, bool):
                value = _number(item.literal, item.value)
            elif item.value_form == "string":
                value = format_string(str(item.value), indent)
            elif item.value_form == "bool":
                value = "true" if item.value else "false"
            else:
                value = str(item.value)
            return _Leaf(f"set {item.key.name} = {value}", item.span)
        raise TypeError(f"not a deployment item: {type(item).__name__}")

    def priority(self, item: ast.Priority) -> _Leaf:
        return _Leaf("priority " + " > ".join(_selectors(level) for level in item.levels), item.span)

    def expectation(self, exp: ast.Expectation) -> _Leaf:
        kind = exp.expect
        if kind == "winner":
            other = exp.other.name if exp.other is not None else ""
            text = f"winner {exp.subject.name} over {other}"
        elif kind.startswith("not_"):
            text = f"not {kind[4:]} {exp.subject.name}"
        else:
            text = f"{kind} {exp.subject.name}"
        return _Leaf("expect " + text, exp.span)

    def item(self, item: ast.Node) -> _Doc:
        if isinstance(item, ast.Header):
            text = "constitution " + format_string(item.name.value)
            if item.version is not None:
                text += " version " + format_string(item.version.value)
            return _Leaf(text, item.span)
        if isinstance(item, ast.Source):
            return _Leaf("source " + format_string(item.text.value), item.span)
        if isinstance(item, ast.Import):
            return _Leaf("import " + format_string(item.path.value), item.span)
        if isinstance(item, ast.Facet):
            if item.bounds is not None:
                text = f"facet {item.name.name}: number [{item.bounds.low.value} .. {item.bounds.high.value}]"
                return _Leaf(text, item.span)
            sep = " < " if item.ordered else " | "
            return _Leaf(f"facet {item.name.name}: {sep.join(v.name for v in item.values)}", item.span)
        if isinstance(item, ast.Behavior):
            text = f"behavior {item.name.name}"
            if item.description is not None:
                text += " " + format_string(item.description.value)
            if item.observe is None:
                return _Leaf(text, item.span)
            end = _end_of(item.description) or _end_of(item.name)
            return _Block(text, item.span, end, self.observe(item.observe))
        if isinstance(item, ast.Exclusive):
            return _Leaf("exclusive " + _names(item.members), item.span)
        if isinstance(item, ast.Group):
            return _Leaf(f"group {item.name.name} = {_selectors(item.members)}", item.span)
        if isinstance(item, ast.Priority):
            return self.priority(item)
        if isinstance(item, ast.AuthorityDecl):
            return _Leaf("authority " + " > ".join(v.name for v in item.levels), item.span)
        if isinstance(item, ast.Principle):
            return _Block(f"principle {item.id.name}", item.span, _end_of(item.id), self.body(item, 1))
        if isinstance(item, (ast.Example, ast.CompareExample)):
            return self.example(item, 0)
        if isinstance(item, ast.Conflict):
            children: list[_Doc] = [
                _Leaf(f"when {format_expr(b.condition)}: {b.winner.name}", b.span) for b in item.branches
            ]
            if item.otherwise is not None:
                children.append(_Leaf(f"otherwise: {item.otherwise.name}", item.otherwise.span))
            return _Block(f"conflict {item.left.name} vs {item.right.name}", item.span, _end_of(item.right), children)
        if isinstance(item, ast.Deployment):
            header = f"deployment {item.name.name}"
            if item.extends is not None:
                header += f" extends {item.extends.name}"
            end = _end_of(item.extends) or _end_of(item.name)
            return _Block(header, item.span, end, [self.deployment_item(i, 1) for i in item.items])
        if isinstance(item, ast.TestCase):
            children = []
            if item.given is not None:
                children.append(_Leaf("given " + format_expr(item.given), item.given.span))
            children.extend(self.expectation(e) for e in item.expectations)
            header = f"test {format_string(item.name.value)} in {item.deployment.name}"
            return _Block(header, item.span, _end_of(item.deployment), children)
        if isinstance(item, ast.PropertyCase):
            children = [_Leaf("forall " + format_expr(item.forall), item.forall.span)]
            children.extend(self.expectation(e) for e in item.expectations)
            header = f"property {format_string(item.name.value)} in {item.deployment.name}"
            return _Block(header, item.span, _end_of(item.deployment), children)
        raise TypeError(f"not a top-level item: {type(item).__name__}")


# ------------------------------------------------------------------ comments


def _walk(docs: Iterable[_Doc]) -> Iterable[_Doc]:
    stack = list(reversed(list(docs)))
    while stack:
        doc = stack.pop()
        yield doc
        if isinstance(doc, _Block):
            stack.extend(reversed(doc.children))


def attach_comments(comments: Iterable[ast.Comment], docs: list[_Doc]) -> list[str]:
    """Distribute comments onto the layout tree (see the module docstring); returns
    the comments that stay at the end of the file."""
    starts: list[tuple[Pos, list[str]]] = []  # own-line comments go to the next start
    ends: list[tuple[Pos, list[str]]] = []  # trailing comments go to the last end on their line
    leaves: list[tuple[Pos, Pos, _Leaf]] = []
    for doc in _walk(docs):
        span = doc.span
        if not _valid(span):
            continue
        start, end = (span.line, span.column), (span.end_line, span.end_column)
        starts.append((start, doc.leading))
        if isinstance(doc, _Leaf):
            ends.append((end, doc.trailing))
            leaves.append((start, end, doc))
        else:
            if doc.header_end is not None:
                ends.append((doc.header_end, doc.trailing))
            starts.append(((span.end_line, max(span.end_column - 1, 1)), doc.inner_end))
            ends.append((end, doc.close_trailing))
    starts.sort(key=lambda a: a[0])
    ends.sort(key=lambda a: a[0])
    leaves.sort(key=lambda a: a[0])
    start_pos = [a[0] for a in starts]
    end_pos = [a[0] for a in ends]
    leaf_pos = [a[0] for a in leaves]
    eof: list[str] = []
    for comment in sorted(comments, key=lambda c: (c.span.line, c.span.column)):
        at = (comment.span.line, comment.span.column)
        i = bisect.bisect_left(leaf_pos, at) - 1
        if i >= 0 and leaves[i][1] > at:  # inside a multi-line statement
            leaf = leaves[i][2]
            (leaf.trailing if comment.trailing else leaf.leading).append(comment.text)
            continue
        if comment.trailing:
            j = bisect.bisect_right(end_pos, at) - 1
            if j >= 0 and end_pos[j][0] == at[0]:
                ends[j][1].append(comment.text)
                continue
        k = bisect.bisect_right(start_pos, at)
        if k < len(starts):
            starts[k][1].append(comment.text)
        else:
            eof.append(comment.text)
    return eof


# ------------------------------------------------------------------ rendering


def _render(doc: _Doc, depth: int, out: list[str]) -> None:
    indent = INDENT * depth
    trailing = doc.trailing[-1:]
    for text in doc.leading + doc.trailing[:-1]:
        out.append(indent + text)
    if isinstance(doc, _Leaf):
        out.append(indent + doc.text + "".join(TRAILING_COMMENT_GAP + t for t in trailing))
        return
    inner_end = doc.inner_end + doc.close_trailing[:-1]
    close = "}" + "".join(TRAILING_COMMENT_GAP + t for t in doc.close_trailing[-1:])
    if not doc.children and not inner_end and not trailing:
        out.append(indent + doc.header + " {" + close)
        return
    out.append(indent + doc.header + " {" + "".join(TRAILING_COMMENT_GAP + t for t in trailing))
    for child in doc.children:
        _render(child, depth + 1, out)
    for text in inner_end:
        out.append(indent + INDENT + text)
    out.append(indent + close)


_FAMILIES = {
    ast.Header: "header",
    ast.Source: "header",
    ast.Import: "import",
    ast.Facet: "facet",
    ast.Behavior: "behavior",
    ast.Exclusive: "behavior",
    ast.Group: "ordering",
    ast.Priority: "ordering",
}


def format_ast(file: ast.ConstitutionFile) -> str:
    """The canonical source text of a parsed file, comments included."""
    builder = _Builder()
    docs = [builder.item(item) for item in file.items]
    eof = attach_comments(file.comments, docs)
    chunks: list[str] = []
    previous: tuple[str | None, bool] | None = None
    for item, doc in zip(file.items, docs):
        family = _FAMILIES.get(type(item))
        one_line = isinstance(doc, _Leaf) and "\n" not in doc.text
        if previous is not None:
            together = family is not None and previous == (family, True) and one_line
            chunks.append("\n" if together else "\n\n")
        lines: list[str] = []
        _render(doc, 0, lines)
        chunks.append("\n".join(lines))
        previous = (family, one_line)
    if eof:
        chunks.append("\n\n" if chunks else "")
        chunks.append("\n".join(eof))
    text = "".join(chunks)
    return text + "\n" if text else ""
