"""A table-driven LALR(1) driver: the contextual lexer and the parser in one loop over the
tables Lark builds for the grammar, each reduction calling the AST builder at once (no parse
tree, no per-token objects for keywords and punctuation).

It accepts exactly the language of ``lark_parser()``: the same parse table, the same terminals
tried in Lark's order in each parser state (a keyword matched by ``NAME`` becomes the keyword
where the state takes it), the same child filtering (``_rule`` inlined, ``?rule`` with one child
passed through, ``[x]`` placeholders) and the same spans (a node runs from its first child to its
last, parentheses of a passed-through ``?rule`` included in its parent). On any syntax error it
raises :class:`Rejected`; the caller asks Lark for the diagnostics.

One assumption beyond Lark's: ignored text (whitespace, comments) never starts a token, so it is
skipped before each token (checked when the tables are built).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import lark
from lark.lexer import PatternRE, PatternStr

from cai_dsl.lang.grammar import lark_parser

_END = "$END"


class Rejected(Exception):
    """The text is not in the language (Lark says why)."""


class Tok:
    """A kept token: its terminal, its text and its offsets (end exclusive)."""

    __slots__ = ("type", "value", "start", "end")

    def __init__(self, type: str, value: str, start: int, end: int):
        self.type = type
        self.value = value
        self.start = start
        self.end = end

    def __repr__(self) -> str:
        return f"Tok({self.type}, {self.value!r}, {self.start}, {self.end})"


# Reduction kinds
_NODE, _INLINE, _EXPAND1, _PASS = 0, 1, 2, 3


@dataclass(frozen=True)
class Rule:
    """How one grammar rule reduces: ``size`` symbols popped; ``include`` says, per kept child,
    its index, whether it is an inlined ``_rule`` to splice, and how many ``None`` placeholders
    go before it; ``trailing`` placeholders go last; ``callback`` names the builder method."""

    origin: str
    size: int
    kind: int
    include: tuple[tuple[int, bool, int], ...]
    trailing: int
    callback: str | None
    simple: bool  # every symbol kept as is, no placeholders: the children are the values in order


@dataclass(frozen=True)
class Tables:
    """Per parser state: a scanner (a compiled regex, its group -> terminal names, keyword
    retyping per terminal), the actions (terminal -> next state, or ``~rule``) and the gotos."""

    scanners: tuple[tuple[Callable, dict[int, str], dict[str, dict[str, str]]], ...]
    actions: tuple[dict[str, int], ...]
    gotos: tuple[dict[str, int], ...]
    rules: tuple[Rule, ...]
    start: int
    end: int
    dropped: frozenset[str]  # terminals no rule keeps (keywords, punctuation): no Tok is made for them


def _sort_key(term) -> tuple:
    # the order Lark's lexer tries terminals in (lark.lexer.BasicLexer)
    return (-term.priority, -term.pattern.max_width, -len(term.pattern.value), term.name)


def _scanner(terms: Sequence, ignore_re: str) -> tuple[Callable, dict[int, str], dict[str, dict[str, str]]]:
    """A matcher for one parser state: skip ignored text, then the first terminal that matches
    (``$END`` at the end of the text). String terminals that a regex terminal of the same
    priority matches whole are found by that terminal and retyped (as Lark's lexer does)."""
    terms = sorted(terms, key=_sort_key)
    strings = [t for t in terms if isinstance(t.pattern, PatternStr)]
    keywords: dict[str, dict[str, str]] = {}
    embedded = set()
    for retok in terms:
        if not isinstance(retok.pattern, PatternRE):
            continue
        compiled = re.compile(retok.pattern.to_regexp())
        for strtok in strings:
            value = strtok.pattern.value
            found = compiled.match(value)  # Lark's test: the first match is the whole keyword
            if strtok.priority == retok.priority and found is not None and found.group(0) == value:
                keywords.setdefault(str(retok.name), {})[value] = str(strtok.name)
                if strtok.pattern.flags <= retok.pattern.flags:
                    embedded.add(strtok.name)
    kept = [t for t in terms if t.name not in embedded]
    alternatives = "|".join(f"(?P<{t.name!s}>{t.pattern.to_regexp()})" for t in kept)
    compiled = re.compile(f"(?>{ignore_re})*(?:{alternatives}|(?P<_END_>\\Z))" if kept else f"(?>{ignore_re})*(?P<_END_>\\Z)")
    names = {index: name for name, index in compiled.groupindex.items()}
    names[compiled.groupindex["_END_"]] = _END
    return compiled.match, names, keywords


def _rule(rule, maybe_placeholders: bool) -> Rule:
    """The reduction of one compiled Lark rule (as lark.parse_tree_builder shapes its tree)."""
    expansion = rule.expansion
    empty = rule.options.empty_indices if maybe_placeholders else ()
    nones_at = [0] * (len(expansion) + 1)
    if empty:
        nones_at = [len(ones) for ones in "".join(str(int(b)) for b in empty).split("0")]
    include = []
    pending = 0
    for i, sym in enumerate(expansion):
        pending += nones_at[i]
        if rule.options.keep_all_tokens or not (sym.is_term and sym.filter_out):
            include.append((i, not sym.is_term and sym.name.startswith("_"), pending))
            pending = 0
    trailing = pending + nones_at[len(expansion)]
    origin = str(rule.origin.name)
    if origin.startswith("_"):
        kind = _INLINE
    elif rule.options.expand1 and not rule.alias:
        kind = _PASS if len(expansion) == 1 and len(include) == 1 and not trailing else _EXPAND1
    else:
        kind = _NODE
    simple = not trailing and len(include) == len(expansion) and not any(e or n for _, e, n in include)
    if kind == _PASS and (include[0][1] or include[0][2]):  # one inlined `_rule` child: keep the general path
        kind = _EXPAND1
    callback = None if kind == _INLINE else (rule.alias or rule.options.template_source or origin)
    return Rule(origin, len(expansion), kind, tuple(include), trailing, callback, simple)


def build_tables(parser: lark.Lark) -> Tables:
    """The driver's tables from a Lark LALR parser with the contextual lexer."""
    table = parser.parser.parser.parser.parse_table
    terminals = {str(t.name): t for t in parser.terminals}
    ignore = [terminals[name] for name in parser.lexer_conf.ignore]
    ignore_re = "|".join(t.pattern.to_regexp() for t in sorted(ignore, key=_sort_key))
    probe = re.compile(f"(?:{ignore_re})")
    for term in terminals.values():  # ignored text never starts a token (see the module docstring)
        if term.name not in parser.lexer_conf.ignore:
            for sample in (" ", "\t", "\n", "\r", "\f", "\ufeff", "# x", "#\n", "#"):
                if probe.match(sample) and re.match(term.pattern.to_regexp(), sample):
                    raise RuntimeError(f"terminal {term.name} may start with ignored text")
    rule_index: dict[Any, int] = {}
    rules: list[Rule] = []
    kept: set[str] = set()
    for rule in parser.rules:
        rule_index[rule] = len(rules)
        rules.append(_rule(rule, parser.options.maybe_placeholders))
        kept.update(str(sym.name) for sym in rule.expansion if sym.is_term and (rule.options.keep_all_tokens or not sym.filter_out))
    n_states = max(table.states) + 1
    scanners: list = [None] * n_states
    actions: list[dict[str, int]] = [{} for _ in range(n_states)]
    gotos: list[dict[str, int]] = [{} for _ in range(n_states)]
    by_accepts: dict[frozenset, tuple] = {}
    for state, row in table.states.items():
        for symbol, (action, arg) in row.items():
            shift = action.name == "Shift"
            symbol = str(symbol)  # Lark's names are Tokens, slower dictionary keys
            if symbol in terminals or symbol == _END:
                actions[state][symbol] = arg if shift else ~rule_index[arg]
            else:
                gotos[state][symbol] = arg
        accepts = frozenset(name for name in row if name in terminals and name not in parser.lexer_conf.ignore)
        if accepts not in by_accepts:
            by_accepts[accepts] = _scanner([terminals[name] for name in accepts], ignore_re)
        scanners[state] = by_accepts[accepts]
    (start,) = table.start_states.values()
    (end,) = table.end_states.values()
    dropped = frozenset(terminals) - kept
    return Tables(tuple(scanners), tuple(actions), tuple(gotos), tuple(rules), start, end, dropped)


@functools.cache
def tables() -> Tables:
    """The driver's tables for the grammar, built once per process."""
    return build_tables(lark_parser())


def _walk_order(diagnostics: list, marks: list[tuple[int, int, int, int]]) -> list:
    """``diagnostics`` in the order of a walk of the tree from its last node to its first, each
    node after its children (the order the builder reported them in when it walked a Lark tree):
    by the reporting node's start, last first, and among nested nodes the inner one first."""
    groups = sorted(marks, key=lambda mark: (-mark[0], mark[1]))  # stable: equal extents stay inner first
    return diagnostics[: marks[0][2]] + [d for _, _, lo, hi in groups for d in diagnostics[lo:hi]]


def parse(text: str, builder: Any, table: Tables | None = None) -> tuple[Any, int]:
    """Parse ``text``, calling ``builder.<rule>(start, end, children)`` for each node (offsets of
    its first and last character, end exclusive); returns the root's value and the tree height.
    Raises :class:`Rejected` on a syntax error. What the callbacks add to ``builder.diagnostics``
    is put in :func:`_walk_order` at the end."""
    table = table or tables()
    scanners, actions, gotos, rules, end_state = table.scanners, table.actions, table.gotos, table.rules, table.end
    plans = [
        # `?rule`s of several symbols may have no method: they pass their one child through
        (r.size, r.kind, None if r.simple else r.include, r.trailing, r.origin, getattr(builder, r.callback or "", None))
        for r in rules
    ]
    diagnostics: list = builder.diagnostics
    reported = len(diagnostics)
    marks: list[tuple[int, int, int, int]] = []
    states = [table.start]
    # one entry per stack symbol: (value, start offset, end offset, height); height counts the parse
    # tree's nodes (an inlined rule's entry holds its children's height)
    values: list[tuple] = []
    dropped = table.dropped
    state = table.start
    pos = 0
    while True:
        match, names, keywords = scanners[state]
        m = match(text, pos)
        if m is None:
            raise Rejected(pos)
        group = m.lastindex
        kind = names[group]
        if kind is _END:
            tok_start = tok_end = len(text)
            entry = None
        else:
            tok_start, tok_end = m.span(group)
            value = m.group(group)
            if kind in keywords:
                kind = keywords[kind].get(value, kind)
            entry = (None if kind in dropped else Tok(kind, value, tok_start, tok_end), tok_start, tok_end, 0)
        pos = tok_end
        row = actions[state]
        while True:
            code = row.get(kind)
            if code is None:
                raise Rejected(tok_start)
            if code >= 0:
                if entry is None:
                    raise Rejected(tok_start)
                states.append(code)
                values.append(entry)
                state = code
                break
            size, how, include, trailing, origin, callback = plans[~code]
            if how == _PASS:  # a `?rule` of one symbol: its value, extent and height as they are
                state = gotos[states[-2]][origin]
                states[-1] = state
                if entry is None and state == end_state:
                    return values[-1][0], values[-1][3]
                row = actions[state]
                continue
            if size:
                kids = values[-size:]
                del values[-size:]
                del states[-size:]
                first, last = kids[0], kids[-1]
                if first[1] is None or last[1] is None:
                    placed = [k for k in kids if k[1] is not None]
                    first, last = (placed[0], placed[-1]) if placed else ((None, None, None, 0),) * 2
                start, end = first[1], last[2]
                if size == 1:
                    height = first[3]
                elif size == 2:
                    height = first[3] if first[3] > last[3] else last[3]
                else:
                    height = max([k[3] for k in kids])
                if include is None:  # every symbol kept as it is
                    children = [k[0] for k in kids]
                else:
                    children = []
                    for i, splice, nones in include:
                        if nones:
                            children.extend([None] * nones)
                        if splice:
                            if children:
                                children.extend(kids[i][0])
                            else:  # a left-recursive list grows in place (it is used once)
                                children = kids[i][0]
                        else:
                            children.append(kids[i][0])
                    if trailing:
                        children.extend([None] * trailing)
            else:
                start = end = None
                height = 0
                children = [None] * trailing
            if how == _INLINE:
                result = (children, start, end, height)
            elif how == _EXPAND1 and len(children) == 1:
                result = (children[0], start, end, height)
            else:
                result = (callback(start, end, children), start, end, height + 1)
                if len(diagnostics) != reported:
                    marks.append((start or 0, end or 0, reported, len(diagnostics)))
                    reported = len(diagnostics)
            state = gotos[states[-1]][origin]
            states.append(state)
            values.append(result)
            if entry is None and state == end_state:
                if marks:
                    diagnostics[:] = _walk_order(diagnostics, marks)
                return result[0], result[3]
            row = actions[state]
