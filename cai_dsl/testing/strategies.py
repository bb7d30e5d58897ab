"""Hypothesis strategies for constitutions, public for users' property tests.

* Scenarios of a deployment (:func:`scenarios`) and random valid constitution sources
  (:func:`constitution_sources`), with :func:`load` to resolve a file for them.
* Valid `.const` ASTs (:data:`files`, :data:`expressions`, :data:`items` ...), token soup
  and mutations of source text (:func:`mutations`). Generated nodes carry no spans and no
  comments; every generated file satisfies the parser's own checks (simple names where
  the parser requires them, ``better a``/``better b``, at least two operands for
  ``and``/``or``, two values for an ordered facet...), so printing it and parsing the text
  back must give the same AST under :func:`cai_dsl.lang.ast.strip_spans`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from hypothesis import strategies as st

from cai_dsl.core.errors import EXIT_DIAGNOSTICS, CaiError
from cai_dsl.lang import ast
from cai_dsl.lang.builder import MAX_WEIGHT
from cai_dsl.lang.parser import grammar_text
from cai_dsl.lang.resolver import Constitution, resolve
from cai_dsl.semantics.evaluator import ResolvedPolicy, eval_expr, number_constants, number_points, resolved_policy


class ConstitutionErrors(CaiError):
    """Raised by :func:`load` when the constitution does not resolve cleanly (exit code 1)."""

    exit_code = EXIT_DIAGNOSTICS


@dataclass(frozen=True)
class LoadedConstitution:
    """A resolved constitution with convenience methods for property tests."""

    constitution: Constitution

    def policy(self, deployment: str, scenario: dict[str, str]) -> ResolvedPolicy:
        """The resolved policy of a complete scenario."""
        return resolved_policy(self.constitution, self.constitution.deployments[deployment], scenario)

    def reachable(self, deployment: str, scenario: dict[str, str]) -> bool:
        d = self.constitution.deployments[deployment]
        return all(eval_expr(a, scenario, self.constitution.facets) for a in d.assumptions)


def load(path: str | Path) -> LoadedConstitution:
    """Resolve a `.const` file; raise :class:`ConstitutionErrors` with rendered errors if any."""
    from cai_dsl.diagnostics.render import render_text

    constitution = resolve(str(path))
    errors = [d for d in constitution.diagnostics if d.is_error]
    if errors:
        raise ConstitutionErrors(render_text(errors, constitution.sources))
    return LoadedConstitution(constitution)


def scenarios(loaded: LoadedConstitution | Constitution, deployment: str | None = None) -> st.SearchStrategy[dict]:
    """Complete scenarios (one value per facet); with ``deployment``, only reachable ones. A
    number facet draws any number in its range, often one next to a compared constant."""
    constitution = loaded.constitution if isinstance(loaded, LoadedConstitution) else loaded
    facets = constitution.facets
    constants = number_constants(constitution)

    def values(name: str, f: ast.Facet) -> st.SearchStrategy:
        if f.bounds is None:
            return st.sampled_from([v.name for v in f.values])
        points = number_points(f, constants.get(name, ()))
        return st.one_of(st.sampled_from(points), st.integers(f.bounds.low.value, f.bounds.high.value))

    strategy = st.fixed_dictionaries({name: values(name, f) for name, f in sorted(facets.items())})
    if deployment is None:
        return strategy
    d = constitution.deployments[deployment]
    return strategy.filter(lambda s: all(eval_expr(a, s, facets) for a in d.assumptions))


# ---------------------------------------------------------------- random constitutions

_FACETS = {"topic": ["general", "medical", "cyber"], "risk": ["low", "medium", "high"], "intent": ["benign", "malicious"]}
_ORDERED = {"risk"}
_NUMBERS = {"dose": (0, 20)}  # number facets of the random constitutions: name -> range
_BEHAVIORS = ["refuse", "caveat", "detail", "partial", "cite"]


@st.composite
def _condition(draw, depth: int = 2) -> str:
    facet = draw(st.sampled_from(sorted(_FACETS) + sorted(_NUMBERS)))
    if facet in _NUMBERS:
        low, high = _NUMBERS[facet]
        return f"{facet} {draw(st.sampled_from(_OPS))} {draw(st.integers(low, high))}"
    values = _FACETS[facet]
    kind = draw(st.sampled_from(["cmp", "in", "bool"] + (["and", "or", "not"] if depth > 0 else [])))
    if kind == "cmp":
        ops = ["==", "!="] + (["<", "<=", ">", ">="] if facet in _ORDERED else [])
        return f"{facet} {draw(st.sampled_from(ops))} {draw(st.sampled_from(values))}"
    if kind == "in":
        chosen = draw(st.lists(st.sampled_from(values), min_size=1, max_size=2, unique=True))
        neg = draw(st.booleans())
        return f"{facet} {'not in' if neg else 'in'} {{{', '.join(chosen)}}}"
    if kind == "bool":
        return draw(st.sampled_from(["true", "false"]))
    if kind == "not":
        return f"not ({draw(_condition(depth - 1))})"
    left, right = draw(_condition(depth - 1)), draw(_condition(depth - 1))
    return f"({left}) {kind} ({right})"


@st.composite
def constitution_sources(draw, max_principles: int = 5) -> str:
    """Source text of a random valid constitution over a small scenario space.

    Random conditions (over symbolic facets and a number facet), effects, an exclusive set, authority levels, priorities (possibly
    cyclic), conflict rules with branches, and a deployment with random assumptions and
    a narrowing override: the
    kind of input on which the SMT checker is cross-checked against enumeration.
    """
    lines = []
    for name, values in _FACETS.items():
        sep = " < " if name in _ORDERED else " | "
        lines.append(f"facet {name}: {sep.join(values)}")
    for name, (low, high) in _NUMBERS.items():
        lines.append(f"facet {name}: number [{low} .. {high}]")
    for b in _BEHAVIORS:
        lines.append(f"behavior {b}")
    lines.append("exclusive refuse, detail, partial")
    levels = draw(st.booleans())  # authority levels rank principles in clashes
    if levels:
        lines.append("authority top > mid > low")
    n = draw(st.integers(min_value=2, max_value=max_principles))
    ids = [f"p{i}" for i in range(n)]
    for pid in ids:
        body = []
        if levels and draw(st.booleans()):
            body.append(f"authority {draw(st.sampled_from(['top', 'mid', 'low']))}")
        if draw(st.booleans()):
            body.append(f"when {draw(_condition())}")
        effects = draw(
            st.lists(st.tuples(st.sampled_from(["require", "forbid", "prefer"]), st.sampled_from(_BEHAVIORS)), min_size=1, max_size=3)
        )
        for kind, beh in effects:
            body.append(f"{kind} {beh}")
        lines.append(f"principle {pid} {{ compare \"Which response is better for {pid}?\" {' '.join(body)} }}")
    for _ in range(draw(st.integers(0, 2))):
        a, b = draw(st.lists(st.sampled_from(ids), min_size=2, max_size=2, unique=True))
        lines.append(f"priority {a} > {b}")
    ruled: set[frozenset[str]] = set()
    for _ in range(draw(st.integers(0, 2))):
        a, b = draw(st.lists(st.sampled_from(ids), min_size=2, max_size=2, unique=True))
        if frozenset((a, b)) in ruled:
            continue
        ruled.add(frozenset((a, b)))
        branches = [f"when {draw(_condition(1))}: {draw(st.sampled_from([a, b]))}" for _ in range(draw(st.integers(0, 2)))]
        if draw(st.booleans()):
            branches.append(f"otherwise: {draw(st.sampled_from([a, b]))}")
        lines.append(f"conflict {a} vs {b} {{ {' '.join(branches)} }}")
    assume = f"assume {draw(_condition(1))}" if draw(st.booleans()) else ""
    if draw(st.booleans()):  # an override that narrows a principle's condition
        assume += f" override {draw(st.sampled_from(ids))} {{ narrow when {draw(_condition(1))} }}"
    lines.append(f"deployment base {{ include * {assume} }}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- ASTs, source text and mutations

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
    st.builds(ast.Comparison, facet=idents(), op=st.sampled_from(_OPS), value=st.builds(ast.Number, value=st.integers(-10**6, 10**6))),
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
weights = number_literals.filter(lambda lit: 0 <= float(lit) <= MAX_WEIGHT).map(
    lambda lit: ast.Weight(value=float(lit), literal=lit)
)
def _word(*words: str) -> st.SearchStrategy[ast.Ident]:
    return st.sampled_from(words).map(lambda n: ast.Ident(name=n))


turns = st.builds(ast.Turn, role=_word("user", "assistant"), text=texts())


def _requests(*kinds: str) -> st.SearchStrategy[tuple[ast.Request, ...]]:
    """At most one ``request`` line of each kind, in canonical order."""
    return st.lists(st.sampled_from(kinds), unique=True).map(
        lambda chosen: tuple(sorted(chosen, key=kinds.index))
    ).flatmap(lambda chosen: st.tuples(*(st.builds(ast.Request, what=_word(k), text=texts()) for k in chosen)))


examples = st.one_of(
    st.builds(
        ast.Example,
        turns=_tuple(turns),
        requests=_requests("critique", "revision"),
        prompt=_opt(texts()),
        response=_opt(texts()),
        critique=_opt(texts()),
        revision=_opt(texts()),
    ),
    st.builds(
        ast.CompareExample,
        turns=_tuple(turns),
        requests=_requests("compare"),
        prompt=_opt(texts()),
        a=_opt(texts()),
        b=_opt(texts()),
        better=_opt(_word("a", "b")),
        rationale=_opt(texts()),
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

principles = st.builds(
    ast.Principle, id=idents(dotted_names), authority=_opt(idents()), final=_opt(st.just(ast.Final())), **_BODY
)
overrides = st.builds(ast.Override, target=idents(dotted_names), narrow=_opt(expressions), **_BODY)

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
    st.builds(ast.DeploymentAuthority, level=idents()),
    st.builds(ast.Lock, selectors=_tuple(selectors, 1)),
)

_EXPECT_KINDS = ["require", "forbid", "prefer", "not_require", "not_forbid", "not_prefer", "active", "not_active"]

expectations = st.one_of(
    st.builds(ast.Expectation, expect=st.sampled_from(_EXPECT_KINDS), subject=idents(dotted_names)),
    st.builds(ast.Expectation, expect=st.just("winner"), subject=idents(dotted_names), other=idents(dotted_names)),
)


#: A test's deployment: a name, or a glob over names (``*``, ``name*``).
_deployment_refs = st.one_of(idents(), st.just(ast.Ident(name="*")), simple_names.map(lambda n: ast.Ident(name=n + "*")))


def _facet(name: ast.Ident, values: tuple, ordered: bool) -> ast.Facet:
    return ast.Facet(name=name, values=values, ordered=ordered and len(values) >= 2)


def _number_facet(name: ast.Ident, low: int, width: int) -> ast.Facet:
    return ast.Facet(name=name, bounds=ast.NumberRange(low=ast.Number(value=low), high=ast.Number(value=low + width)))


#: A behavior's observation block (markers, patterns, judges, openings).
observes = st.builds(
    ast.Observe,
    markers=_tuple(texts()),
    patterns=_tuple(texts(), 0, 2),
    judges=_tuple(texts(), 0, 2),
    openings=_tuple(texts(), 0, 2),
)

items = st.one_of(
    st.builds(ast.Header, name=texts(), version=_opt(texts())),
    st.builds(ast.Source, text=texts()),
    st.builds(ast.Import, path=texts()),
    st.builds(_facet, idents(), _tuple(idents(), 1, 4), st.booleans()),
    st.builds(_number_facet, idents(), st.integers(-1000, 1000), st.integers(0, 10**6)),
    st.builds(ast.Behavior, name=idents(), description=_opt(texts()), observe=_opt(observes)),
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
    st.builds(ast.TestCase, name=texts(), deployment=_deployment_refs, given=_opt(expressions), expectations=_tuple(expectations)),
    st.builds(ast.PropertyCase, name=texts(), deployment=_deployment_refs, forall=expressions, expectations=_tuple(expectations)),
    st.builds(ast.AuthorityDecl, levels=_tuple(idents(), 2, 3)),
    examples,  # top-level: shared by every principle
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
