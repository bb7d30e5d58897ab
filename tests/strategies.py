"""Hypothesis strategies for valid `.const` ASTs, source text and mutations of it.

Self-contained (depends only on hypothesis and :mod:`cai_dsl`), so it can move to
``cai_dsl.testing`` unchanged. Generated nodes carry no spans (``NO_SPAN``) and no
comments; every generated file satisfies the parser's own checks (simple names
where the parser requires them, ``better a``/``better b``, at least two operands
for ``and``/``or``, two values for an ordered facet...), so printing it and parsing
the text back must give the same AST under :func:`cai_dsl.lang.ast.strip_spans`.
"""

from __future__ import annotations

import re

from hypothesis import strategies as st

from cai_dsl.lang import ast
from cai_dsl.lang.parser import grammar_text

# every word the grammar spells out ("principle", "in", "a", "true", ...): names never
# use one, even where the contextual lexer would accept it
KEYWORDS: frozenset[str] = frozenset(re.findall(r'"([A-Za-z_][A-Za-z0-9_]*)"', grammar_text()))

_POOL = ["x", "y", "z", "risk", "topic", "low", "high", "harm", "help", "safety", "p1", "_u", "Zed9", "v_2"]

simple_names = st.one_of(
    st.sampled_from(_POOL),
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,7}", fullmatch=True),
).filter(lambda n: n not in KEYWORDS)

dotted_names = st.lists(simple_names, min_size=1, max_size=3).map(".".join)


def idents(names: st.SearchStrategy[str] = simple_names) -> st.SearchStrategy[ast.Ident]:
    return names.map(lambda n: ast.Ident(name=n))


_PROSE = st.lists(
    st.text(alphabet=st.sampled_from(list("abc xyz.,'?!-")), max_size=12), min_size=1, max_size=4
).map("\n".join)

text_values = st.one_of(
    st.text(max_size=20),
    st.text(alphabet=st.sampled_from(list('ab "\\\n\t\r #{}u') + ["\u2028", "\ud800", "\x00", "é", "😀"]), max_size=20),
    _PROSE,
    _PROSE.map(lambda s: "  " + s.replace("\n", "\n  ")),  # common indentation: dedent would eat it
    _PROSE.map(lambda s: s + "\n"),
)


def texts(values: st.SearchStrategy[str] = text_values) -> st.SearchStrategy[ast.Text]:
    return values.map(lambda v: ast.Text(value=v))


number_literals = st.builds(
    lambda sign, whole, frac, exp: sign + whole + frac + exp,
    st.sampled_from(["", "", "-", "+"]),
    st.from_regex(r"[0-9]{1,4}", fullmatch=True),
    st.sampled_from(["", "", ".", ".5", ".25", ".0"]),
    st.sampled_from(["", "", "e3", "E-2", "e+1"]),
)

# ---------------------------------------------------------------- expressions

_OPS = ["==", "!=", "<", "<=", ">", ">="]

_atoms = st.one_of(
    st.builds(ast.BoolLiteral, value=st.booleans()),
    st.builds(ast.Comparison, facet=idents(), op=st.sampled_from(_OPS), value=idents()),
    st.builds(
        ast.Membership,
        facet=idents(),
        values=st.lists(idents(), min_size=1, max_size=3).map(tuple),
        negated=st.booleans(),
    ),
)


def _compound(children: st.SearchStrategy) -> st.SearchStrategy:
    operands = st.lists(children, min_size=2, max_size=3).map(tuple)
    return st.one_of(
        st.builds(ast.Not, operand=children),
        st.builds(ast.And, operands=operands),
        st.builds(ast.Or, operands=operands),
    )


expressions = st.recursive(_atoms, _compound, max_leaves=8)

# ---------------------------------------------------------------- principles


def _opt(strategy: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(st.none(), strategy)


def _tuple(strategy: st.SearchStrategy, min_size: int = 0, max_size: int = 3) -> st.SearchStrategy:
    return st.lists(strategy, min_size=min_size, max_size=max_size).map(tuple)


selectors = st.one_of(
    dotted_names.map(lambda n: ast.Selector(form="name", text=n)),
    st.lists(simple_names, max_size=2).map(lambda ps: ast.Selector(form="glob", text="".join(p + "." for p in ps) + "*")),
    simple_names.map(lambda n: ast.Selector(form="tag", text=n)),
)

effects = st.builds(ast.Effect, effect=st.sampled_from(["require", "forbid", "prefer"]), behaviors=_tuple(idents(), 1))
weights = number_literals.map(lambda lit: ast.Weight(value=float(lit), literal=lit))
examples = st.one_of(
    st.builds(ast.Example, prompt=_opt(texts()), response=_opt(texts()), critique=_opt(texts()), revision=_opt(texts())),
    st.builds(
        ast.CompareExample,
        prompt=_opt(texts()),
        a=_opt(texts()),
        b=_opt(texts()),
        better=_opt(st.sampled_from(["a", "b"]).map(lambda n: ast.Ident(name=n))),
    ),
)

_BODY = dict(
    critique=_opt(texts()),
    revise=_opt(texts()),
    compare=_opt(texts()),
    when=_opt(expressions),
    effects=_tuple(effects),
    weight=_opt(weights),
    tags=_opt(st.builds(ast.Tags, names=_tuple(idents(), 1))),
    examples=_tuple(examples, max_size=2),
)

principles = st.builds(ast.Principle, id=idents(dotted_names), **_BODY)
overrides = st.builds(ast.Override, target=idents(dotted_names), **_BODY)

# ---------------------------------------------------------------- ordering, deployments, tests

priorities = st.builds(ast.Priority, levels=_tuple(_tuple(selectors, 1, 2), 2, 3))


def _setting(key: ast.Ident, form: str, data) -> ast.Setting:
    if form == "number":
        literal = data
        value = int(literal) if re.fullmatch(r"[+-]?\d+", literal) else float(literal)
        return ast.Setting(key=key, value=value, value_form="number", literal=literal)
    if form == "bool":
        return ast.Setting(key=key, value=data, value_form="bool", literal="true" if data else "false")
    return ast.Setting(key=key, value=data, value_form=form, literal=data)


settings = st.one_of(
    st.builds(_setting, idents(), st.just("number"), number_literals),
    st.builds(_setting, idents(), st.just("bool"), st.booleans()),
    st.builds(_setting, idents(), st.just("string"), text_values),
    st.builds(_setting, idents(), st.just("name"), simple_names),
)

deployment_items = st.one_of(
    st.builds(ast.Include, selectors=_tuple(selectors, 1)),
    st.builds(ast.Exclude, selectors=_tuple(selectors, 1)),
    st.builds(ast.Assume, condition=expressions),
    priorities,
    overrides,
    settings,
)

_EXPECT_KINDS = ["require", "forbid", "prefer", "not_require", "not_forbid", "not_prefer", "active", "not_active"]

expectations = st.one_of(
    st.builds(ast.Expectation, expect=st.sampled_from(_EXPECT_KINDS), subject=idents(dotted_names)),
    st.builds(ast.Expectation, expect=st.just("winner"), subject=idents(dotted_names), other=idents(dotted_names)),
)


def _facet(name: ast.Ident, values: tuple, ordered: bool) -> ast.Facet:
    return ast.Facet(name=name, values=values, ordered=ordered and len(values) >= 2)


items = st.one_of(
    st.builds(ast.Header, name=texts(), version=_opt(texts())),
    st.builds(ast.Source, text=texts()),
    st.builds(ast.Import, path=texts()),
    st.builds(_facet, idents(), _tuple(idents(), 1, 4), st.booleans()),
    st.builds(ast.Behavior, name=idents(), description=_opt(texts())),
    st.builds(ast.Exclusive, members=_tuple(idents(), 2, 4)),
    principles,
    st.builds(ast.Group, name=idents(), members=_tuple(selectors, 1)),
    priorities,
    st.builds(
        ast.Conflict,
        left=idents(dotted_names),
        right=idents(dotted_names),
        branches=_tuple(st.builds(ast.ConflictBranch, condition=expressions, winner=idents(dotted_names)), 0, 2),
        otherwise=_opt(idents(dotted_names)),
    ),
    st.builds(ast.Deployment, name=idents(), extends=_opt(idents()), items=_tuple(deployment_items, 0, 4)),
    st.builds(ast.TestCase, name=texts(), deployment=idents(), given=_opt(expressions), expectations=_tuple(expectations)),
    st.builds(ast.PropertyCase, name=texts(), deployment=idents(), forall=expressions, expectations=_tuple(expectations)),
)

files = st.builds(ast.ConstitutionFile, path=st.just("<generated>"), items=_tuple(items, 0, 6))

# ---------------------------------------------------------------- raw text and mutations

_TOKENS = sorted(KEYWORDS) + [
    "{", "}", "(", ")", ",", ":", "=", "==", "!=", "<", "<=", ">", ">=", "|", "*", "harm.*", "#safety", "# note",
    "#", '"s"', '"""\n  t\n  """', '"\\n"', '"bad \\q"', '"open', '"""open', "1.5", "-2", "x", "p.q", "\n", "\t",
]

token_soup = st.lists(st.sampled_from(_TOKENS), max_size=40).map(" ".join)


@st.composite
def mutations(draw, source: str) -> str:
    """``source`` after a few random edits: delete, insert, duplicate, swap, truncate."""
    text = source
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["delete", "insert", "duplicate", "token", "truncate"]))
        n = len(text)
        i = draw(st.integers(0, n))
        if op == "delete" and n:
            j = draw(st.integers(i, min(n, i + 8)))
            text = text[:i] + text[j:]
        elif op == "insert":
            piece = draw(st.one_of(st.text(max_size=3), st.sampled_from(_TOKENS)))
            text = text[:i] + piece + text[i:]
        elif op == "duplicate" and n:
            j = draw(st.integers(i, min(n, i + 20)))
            text = text[:j] + text[i:j] + text[j:]
        elif op == "token":
            text = text[:i] + " " + draw(st.sampled_from(_TOKENS)) + " " + text[i:]
        elif op == "truncate":
            text = text[:i]
    return text
