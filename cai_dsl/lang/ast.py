"""Typed abstract syntax tree of a `.const` file.

Every node is a frozen pydantic model carrying the :class:`Span` it was parsed
from. Lists are tuples so nodes are hashable and immutable. Union members carry
a ``kind`` literal so the JSON dump (``cai parse --json``) is self-describing and
loads back into the same models.
"""

from __future__ import annotations

import functools
import operator
from types import MappingProxyType
from typing import Annotated, Callable, Iterator, Literal, Mapping, TypeVar, Union

T = TypeVar("T")

from pydantic import BaseModel, ConfigDict, Field

from cai_dsl.core.source import Span


_new = object.__new__
_setattr = object.__setattr__  # a frozen model's own __setattr__ refuses

NO_SPAN = Span(file="<generated>", line=0, column=0, end_line=0, end_column=0)


class Node(BaseModel):
    """Base of every AST node."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    span: Span = NO_SPAN

    @classmethod
    def trusted(cls: type[N], **values: object) -> N:
        """The node from values the parser already gives in the fields' exact types (tuples, not
        lists), without validation: what ``model_construct`` makes, several times faster."""
        node = _new(cls)
        data = _defaults(cls).copy()  # every field, in order
        data.update(values)
        _setattr(node, "__dict__", data)
        _setattr(node, "__pydantic_fields_set__", _fields_set(cls, tuple(values)))
        _setattr(node, "__pydantic_extra__", None)
        _setattr(node, "__pydantic_private__", None)
        return node


N = TypeVar("N", bound=Node)


@functools.cache
def _fields_set(cls: type[Node], names: tuple[str, ...]) -> set[str]:
    """The fields-set of the nodes made with ``names``, one set shared by all of them (it is never
    changed in place: the models are frozen, and pydantic copies it before a ``model_copy`` update);
    a set per node would be a third of the objects a parse makes."""
    return set(names)


@functools.cache
def _defaults(cls: type[Node]) -> dict[str, object]:
    """Each field of ``cls`` in order, with its default (None for a required field)."""
    return {name: None if field.is_required() else field.default for name, field in cls.model_fields.items()}


class Ident(Node):
    """A name as written, e.g. a facet, a value, a behavior or a dotted principle id."""

    kind: Literal["ident"] = "ident"
    name: str


class Text(Node):
    """A string literal, already unescaped; ``triple`` records the quoting style."""

    kind: Literal["text"] = "text"
    value: str
    triple: bool = False


# ---------------------------------------------------------------- expressions


class BoolLiteral(Node):
    kind: Literal["bool"] = "bool"
    value: bool


class Number(Node):
    """A whole number: the right side of a comparison with a number facet, or a range bound."""

    kind: Literal["number"] = "number"
    value: int


#: What each comparison operator means between numbers (number facets).
NUMBER_COMPARATORS: Mapping[str, Callable[[int, int], bool]] = MappingProxyType(
    {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
)


class Comparison(Node):
    """``facet OP value`` where OP is one of == != < <= > >=; ``value`` is a facet value
    (:class:`Ident`) or, for a number facet, a :class:`Number`."""

    kind: Literal["comparison"] = "comparison"
    facet: Ident
    op: Literal["==", "!=", "<", "<=", ">", ">="]
    value: Annotated[Union[Ident, Number], Field(discriminator="kind")]

    @property
    def number(self) -> int | None:
        """The compared number, or None when the right side is a facet value."""
        return self.value.value if isinstance(self.value, Number) else None


class Membership(Node):
    """``facet in {a, b}`` or, when ``negated``, ``facet not in {a, b}``."""

    kind: Literal["membership"] = "membership"
    facet: Ident
    values: tuple[Ident, ...]
    negated: bool = False


class Not(Node):
    kind: Literal["not"] = "not"
    operand: Expr


class And(Node):
    kind: Literal["and"] = "and"
    operands: tuple[Expr, ...]


class Or(Node):
    kind: Literal["or"] = "or"
    operands: tuple[Expr, ...]


Expr = Annotated[
    Union[BoolLiteral, Comparison, Membership, Not, And, Or], Field(discriminator="kind")
]
Not.model_rebuild()
And.model_rebuild()
Or.model_rebuild()


def iter_expr(expr: Expr) -> Iterator[Expr]:
    """Yield ``expr`` and all its sub-expressions, outermost first (iteratively)."""
    stack = [expr]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, Not):
            stack.append(node.operand)
        elif isinstance(node, (And, Or)):
            stack.extend(reversed(node.operands))


def fold_expr(expr: Expr, combine: "Callable[[Expr, list], T]") -> "T":
    """Fold ``expr`` bottom-up without recursion: ``combine(node, child_values)`` gives
    each node's value from its operands' values (empty for comparisons and literals)."""
    results: dict[int, object] = {}
    stack: list[tuple[Expr, bool]] = [(expr, False)]
    while stack:
        node, expanded = stack.pop()
        children = (node.operand,) if isinstance(node, Not) else node.operands if isinstance(node, (And, Or)) else ()
        if children and not expanded:
            stack.append((node, True))
            stack.extend((c, False) for c in children)
            continue
        results[id(node)] = combine(node, [results[id(c)] for c in children])
    return results[id(expr)]  # type: ignore[return-value]


# ------------------------------------------------------------- declarations


class Header(Node):
    kind: Literal["header"] = "header"
    name: Text
    version: Text | None = None


class Source(Node):
    kind: Literal["source"] = "source"
    text: Text


class Import(Node):
    kind: Literal["import"] = "import"
    path: Text


class NumberRange(Node):
    """``number [low .. high]``: the whole numbers from ``low`` to ``high``, both included."""

    kind: Literal["range"] = "range"
    low: Number
    high: Number


class Facet(Node):
    """A scenario dimension; ``ordered`` facets list their values low to high. A number
    facet has a ``bounds`` range instead of values (``values`` is empty)."""

    kind: Literal["facet"] = "facet"
    name: Ident
    values: tuple[Ident, ...] = ()
    ordered: bool = False
    bounds: NumberRange | None = None

    @property
    def is_number(self) -> bool:
        return self.bounds is not None


class Observe(Node):
    """How a behavior shows in a response: marker phrases (case-insensitive, matched on
    word boundaries), Python regexes (case-insensitive), yes/no judge questions, and
    canonical openings of a response that exhibits it; each in source order."""

    kind: Literal["observe"] = "observe"
    markers: tuple[Text, ...] = ()
    patterns: tuple[Text, ...] = ()
    judges: tuple[Text, ...] = ()
    openings: tuple[Text, ...] = ()

    @property
    def detectable(self) -> bool:
        """Whether a detector (marker, pattern) or a judge question can observe it."""
        return bool(self.markers or self.patterns or self.judges)


class Behavior(Node):
    kind: Literal["behavior"] = "behavior"
    name: Ident
    description: Text | None = None
    observe: Observe | None = None


class Exclusive(Node):
    """At most one of ``members`` holds in a response."""

    kind: Literal["exclusive"] = "exclusive"
    members: tuple[Ident, ...]


EffectKind = Literal["require", "forbid", "prefer"]


class Effect(Node):
    kind: Literal["effect"] = "effect"
    effect: EffectKind
    behaviors: tuple[Ident, ...]


class Weight(Node):
    kind: Literal["weight"] = "weight"
    value: float
    literal: str  # as written, so the formatter keeps "2.0" as "2.0"


class Tags(Node):
    kind: Literal["tags"] = "tags"
    names: tuple[Ident, ...]


class Turn(Node):
    """``turn user "..."`` / ``turn assistant "..."``: one message of an example's dialogue."""

    kind: Literal["turn"] = "turn"
    role: Ident  # `user` or `assistant` (checked by the builder)
    text: Text


class Request(Node):
    """``request critique "..."`` / ``request revision "..."``: the request text shown with an
    example (default: its principle's ``critique``/``revise`` text; for a comparison, ``compare``)."""

    kind: Literal["request"] = "request"
    what: Ident  # `critique` or `revision` (critique examples), `compare` (comparison examples)
    text: Text


class Example(Node):
    """A critique/revision few-shot: a dialogue (``turns``), then prompt, response, critique, revision.

    In a principle it is that principle's; at top level it is shared by every principle."""

    kind: Literal["example"] = "example"
    turns: tuple[Turn, ...] = ()
    requests: tuple[Request, ...] = ()
    prompt: Text | None = None
    response: Text | None = None
    critique: Text | None = None
    revision: Text | None = None

    def request(self, what: str) -> Text | None:
        """The text of its ``request WHAT`` line, if any."""
        return next((r.text for r in self.requests if r.what.name == what), None)


class CompareExample(Node):
    """A labelled comparison: which of responses ``a`` and ``b`` is better (after the dialogue
    ``turns``), and optionally why (``rationale``)."""

    kind: Literal["compare_example"] = "compare_example"
    turns: tuple[Turn, ...] = ()
    requests: tuple[Request, ...] = ()
    prompt: Text | None = None
    a: Text | None = None
    b: Text | None = None
    better: Ident | None = None
    rationale: Text | None = None

    request = Example.request


class PrincipleBody(Node):
    """The fields of a principle (or of an ``override``; absent fields stay None)."""

    critique: Text | None = None
    revise: Text | None = None
    compare: Text | None = None
    when: Expr | None = None
    effects: tuple[Effect, ...] = ()
    weight: Weight | None = None
    tags: Tags | None = None
    examples: tuple[Annotated[Union[Example, CompareExample], Field(discriminator="kind")], ...] = ()

    def effect_behaviors(self, effect: EffectKind) -> tuple[str, ...]:
        """Names of the behaviors this body requires, forbids or prefers."""
        return tuple(b.name for e in self.effects if e.effect == effect for b in e.behaviors)

    @property
    def tag_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tags.names) if self.tags else ()


class Final(Node):
    """The ``final`` mark: no deployment may exclude, override or outrank the principle."""

    kind: Literal["final"] = "final"


class Principle(PrincipleBody):
    kind: Literal["principle"] = "principle"
    id: Ident
    authority: Ident | None = None  # the lowest level allowed to change it (None: the highest)
    final: Final | None = None


class AuthorityDecl(Node):
    """``authority platform > operator > user``: the levels, highest first."""

    kind: Literal["authority_decl"] = "authority_decl"
    levels: tuple[Ident, ...]


class Selector(Node):
    """A reference to principles: an id or group name, a glob (``harm.*``), or a ``#tag``."""

    kind: Literal["selector"] = "selector"
    form: Literal["name", "glob", "tag"]
    text: str


class Group(Node):
    kind: Literal["group"] = "group"
    name: Ident
    members: tuple[Selector, ...]


class Priority(Node):
    """``priority a > b, c > d``: each level outranks every later level."""

    kind: Literal["priority"] = "priority"
    levels: tuple[tuple[Selector, ...], ...]


class ConflictBranch(Node):
    kind: Literal["conflict_branch"] = "conflict_branch"
    condition: Expr
    winner: Ident


class Conflict(Node):
    kind: Literal["conflict"] = "conflict"
    left: Ident
    right: Ident
    branches: tuple[ConflictBranch, ...] = ()
    otherwise: Ident | None = None


class Include(Node):
    kind: Literal["include"] = "include"
    selectors: tuple[Selector, ...]


class Exclude(Node):
    kind: Literal["exclude"] = "exclude"
    selectors: tuple[Selector, ...]


class Assume(Node):
    kind: Literal["assume"] = "assume"
    condition: Expr


class Override(PrincipleBody):
    """Replaces the fields it gives; ``narrow`` (``narrow when EXPR``) adds ``EXPR`` to the
    principle's condition instead of replacing it."""

    kind: Literal["override"] = "override"
    target: Ident
    narrow: Expr | None = None


class DeploymentAuthority(Node):
    """``authority L`` in a deployment: the level of whoever writes it."""

    kind: Literal["authority"] = "authority"
    level: Ident


class Lock(Node):
    """``lock SELECTORS``: the descendants of the deployment may no longer change these."""

    kind: Literal["lock"] = "lock"
    selectors: tuple[Selector, ...]


SettingValue = Union[bool, int, float, str]


class Setting(Node):
    """``set key = value``; ``value_form`` says how it was written."""

    kind: Literal["setting"] = "setting"
    key: Ident
    value: SettingValue
    value_form: Literal["number", "string", "bool", "name"]
    literal: str  # as written, so the formatter keeps the number's spelling


DeploymentItem = Annotated[
    Union[Include, Exclude, Assume, Priority, Override, Setting, DeploymentAuthority, Lock],
    Field(discriminator="kind"),
]


class Deployment(Node):
    kind: Literal["deployment"] = "deployment"
    name: Ident
    extends: Ident | None = None
    items: tuple[DeploymentItem, ...] = ()


ExpectationKind = Literal[
    "require", "forbid", "prefer", "not_require", "not_forbid", "not_prefer", "winner", "active", "not_active"
]


class Expectation(Node):
    """One ``expect`` line: about a behavior, a winner pair, or a principle being active."""

    kind: Literal["expectation"] = "expectation"
    expect: ExpectationKind
    subject: Ident  # the behavior, the winner, or the principle
    other: Ident | None = None  # the loser, for ``winner X over Y``


class TestCase(Node):
    """``deployment`` is a deployment name or a glob over them (``*``, ``acme*``)."""

    kind: Literal["test"] = "test"
    name: Text
    deployment: Ident
    given: Expr | None = None
    expectations: tuple[Expectation, ...] = ()


class PropertyCase(Node):
    kind: Literal["property"] = "property"
    name: Text
    deployment: Ident
    forall: Expr
    expectations: tuple[Expectation, ...] = ()


Item = Annotated[
    Union[
        Header,
        Source,
        Import,
        Facet,
        Behavior,
        Exclusive,
        Principle,
        Group,
        Priority,
        Conflict,
        Deployment,
        TestCase,
        PropertyCase,
        AuthorityDecl,
        Example,
        CompareExample,
    ],
    Field(discriminator="kind"),
]


class Comment(Node):
    """A ``# ...`` comment; ``trailing`` when code precedes it on its line."""

    kind: Literal["comment"] = "comment"
    text: str
    trailing: bool = False


class ConstitutionFile(Node):
    """One parsed file: its items in source order, and its comments."""

    kind: Literal["file"] = "file"
    path: str
    items: tuple[Item, ...] = ()
    comments: tuple[Comment, ...] = ()

    def of_kind(self, cls: type[Node]) -> list:
        return [item for item in self.items if isinstance(item, cls)]

    @property
    def header(self) -> Header | None:
        headers = self.of_kind(Header)
        return headers[0] if headers else None

    @property
    def imports(self) -> list[Import]:
        return self.of_kind(Import)

    @property
    def principles(self) -> list[Principle]:
        return self.of_kind(Principle)

    @property
    def deployments(self) -> list[Deployment]:
        return self.of_kind(Deployment)


def strip_spans(data: object) -> object:
    """A model dump with every ``span`` removed (to compare ASTs ignoring layout)."""
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json", exclude={"comments"} if isinstance(data, ConstitutionFile) else None)
    stack: list[object] = [data]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for layout_key in ("span", "path", "triple", "literal"):
                node.pop(layout_key, None)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return data
