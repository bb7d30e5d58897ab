"""Parse tree -> typed AST (:class:`AstBuilder`), one method per grammar rule."""

from __future__ import annotations

import re

from lark import Token, Tree

from cai_dsl.diagnostics import Diagnostic, rules
from cai_dsl.lang import ast
from cai_dsl.lang.grammar import span_of
from cai_dsl.lang.strings import long_string_value, unescape

#: The largest ``weight``: weights are summed and averaged, so they must stay far from float overflow.
MAX_WEIGHT = 1e6
#: The largest number (in size) a number facet takes: exact in JSON (IEEE doubles) and in z3.
MAX_NUMBER = 2**53 - 1


class AstBuilder:
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
        return span_of(self.path, meta)

    def _ident(self, token: Token) -> ast.Ident:
        return ast.Ident(name=str(token), span=span_of(self.path, token))

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
        span = span_of(self.path, token)
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
        # a top-level example comes back as its principle-field pair ("examples", node)
        return [c[1] if isinstance(c, tuple) else c for c in children]

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

    def number_range(self, meta, children):
        word, low, high = children
        if str(word) != "number":
            self.diagnostics.append(
                rules.INVALID_LITERAL(
                    f"expected `number [LOW .. HIGH]`, not `{word}`", span_of(self.path, word), help="e.g. number [0 .. 100]"
                )
            )
        bounds = ast.NumberRange(low=self._number(low), high=self._number(high), span=self._s(meta))
        if bounds.low.value > bounds.high.value:
            self.diagnostics.append(
                rules.INVALID_LITERAL(
                    f"empty range: {bounds.low.value} is above {bounds.high.value}", bounds.span, help="write the lower bound first"
                )
            )
        return (False, bounds)

    def facet(self, meta, children):
        name, (ordered, values) = children
        if isinstance(values, ast.NumberRange):
            return ast.Facet(name=self._simple(name, "facet"), bounds=values, span=self._s(meta))
        return ast.Facet(name=self._simple(name, "facet"), values=tuple(values), ordered=ordered, span=self._s(meta))

    def _number(self, token: Token) -> ast.Number:
        """A whole number of a number facet (a range bound, or the right side of a comparison)."""
        span = span_of(self.path, token)
        text = str(token)
        if re.fullmatch(r"[+-]?\d+", text) is None or abs(int(text)) > MAX_NUMBER:
            self.diagnostics.append(
                rules.INVALID_LITERAL(
                    f"number facets take whole numbers up to {MAX_NUMBER} in size, not `{text}`",
                    span,
                    help="scale the facet (e.g. cents instead of dollars)",
                )
            )
            value = float(text)
            return ast.Number(value=int(value) if abs(value) <= MAX_NUMBER else 0, span=span)
        return ast.Number(value=int(text), span=span)

    def behavior(self, meta, children):
        name, description, observe = children
        return ast.Behavior(
            name=self._simple(name, "behavior"), description=description, observe=observe, span=self._s(meta)
        )

    def obs_marker(self, meta, children):
        return ("markers", children)

    def obs_pattern(self, meta, children):
        return ("patterns", children)

    def obs_judge(self, meta, children):
        return ("judges", children)

    def obs_opening(self, meta, children):
        return ("openings", children)

    def observe(self, meta, children):
        fields: dict[str, list[ast.Text]] = {}
        for key, values in children:  # a field may repeat: its values accumulate in order
            fields.setdefault(key, []).extend(values)
        return ast.Observe(span=self._s(meta), **{key: tuple(values) for key, values in fields.items()})

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
        weight = ast.Weight(value=float(token), literal=str(token), span=self._s(meta))
        if not 0 <= weight.value <= MAX_WEIGHT:  # also NaN; beyond it a sum of weights overflows
            self.diagnostics.append(
                rules.INVALID_LITERAL(
                    f"weight must be a number from 0 to {MAX_WEIGHT:g}, not {weight.literal}",
                    weight.span,
                    help="weights are relative: scale them down together",
                )
            )
        return ("weight", weight)

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

    def _word(self, token: Token, what: str, allowed: tuple[str, ...]) -> ast.Ident:
        ident = self._ident(token)
        if ident.name not in allowed:
            self.diagnostics.append(
                rules.INVALID_LITERAL(
                    f"{what} must be {' or '.join(f'`{a}`' for a in allowed)}, not `{ident.name}`", ident.span
                )
            )
        return ident

    def ex_turn(self, meta, children):
        role = self._word(children[0], "a turn's role", ("user", "assistant"))
        return ("turns", ast.Turn(role=role, text=children[1], span=self._s(meta)))

    def ex_request(self, meta, children):
        what = self._word(children[0], "a request", ("critique", "revision", "compare"))
        return ("requests", ast.Request(what=what, text=children[1], span=self._s(meta)))

    def ex_rationale(self, meta, children):
        return ("rationale", children[0])

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
        return ("examples", ast.Example(span=self._s(meta), **self._example_fields(children, ("critique", "revision"))))

    def compare_example(self, meta, children):
        return ("examples", ast.CompareExample(span=self._s(meta), **self._example_fields(children, ("compare",))))

    def _example_fields(self, children, kinds: tuple[str, ...]) -> dict:
        """The fields of an example; its requests (of ``kinds``) once each, in the order of
        ``kinds`` (their order means nothing)."""
        fields = self._fields(children, "example", repeatable=("turns", "requests"))
        if "requests" not in fields:
            return fields
        kept: dict[str, ast.Request] = {}
        for r in fields["requests"]:
            name = r.what.name
            if name not in kinds:
                if name in ("critique", "revision", "compare"):  # else already reported by ex_request
                    where = "an `example compare`" if name == "compare" else "an `example`"
                    self.diagnostics.append(rules.INVALID_LITERAL(f"`request {name}` belongs in {where}", r.span))
            elif name in kept:
                self.diagnostics.append(rules.DUPLICATE_FIELD(f"`request {name}` is given twice in this example", r.span))
            else:
                kept[name] = r
        fields["requests"] = tuple(kept[k] for k in kinds if k in kept)
        return fields

    def principle(self, meta, children):
        name, *pairs = children
        fields = self._fields(pairs, "principle", repeatable=("effects", "examples"))
        return ast.Principle(id=self._ident(name), span=self._s(meta), **fields)

    def override(self, meta, children):
        name, *pairs = children
        fields = self._fields(pairs, "override", repeatable=("effects", "examples"))
        return ast.Override(target=self._ident(name), span=self._s(meta), **fields)

    # -- authority
    def authority_decl(self, meta, children):
        return ast.AuthorityDecl(levels=tuple(self._simple(t, "authority level") for t in children), span=self._s(meta))

    def authority(self, meta, children):
        return ("authority", self._simple(children[0], "authority level"))

    def final(self, meta, children):
        return ("final", ast.Final(span=self._s(meta)))

    def lock(self, meta, children):
        return ast.Lock(selectors=tuple(children), span=self._s(meta))

    def narrow(self, meta, children):
        return ("narrow", children[0])

    # -- ordering
    def selector(self, meta, children):
        token: Token = children[0]
        form = {"NAME": "name", "GLOB": "glob", "TAG": "tag"}[token.type]
        text = str(token)[1:] if form == "tag" else str(token)
        return ast.Selector(form=form, text=text, span=span_of(self.path, token))

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
            items=tuple(
                ast.DeploymentAuthority(level=item[1], span=item[1].span) if isinstance(item, tuple) else item
                for item in items
            ),
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
        right = self._number(value) if value.type == "NUMBER" else self._ident(value)
        return ast.Comparison(facet=self._ident(facet), op=op, value=right, span=self._s(meta))

    def value_set(self, meta, children):
        return tuple(self._ident(t) for t in children)

    def membership(self, meta, children):
        return ast.Membership(facet=self._ident(children[0]), values=children[1], span=self._s(meta))

    def negated_membership(self, meta, children):
        return ast.Membership(facet=self._ident(children[0]), values=children[1], negated=True, span=self._s(meta))
