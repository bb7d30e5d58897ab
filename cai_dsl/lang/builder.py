"""Typed AST from the parser's reductions (:class:`AstBuilder`), one method per grammar rule."""

from __future__ import annotations

import re
from bisect import bisect_right

from cai_dsl.diagnostics import Diagnostic, rules
from cai_dsl.lang import ast
from cai_dsl.lang.lalr import Tok
from cai_dsl.lang.strings import long_string_value, unescape

#: The largest ``weight``: weights are summed and averaged, so they must stay far from float overflow.
MAX_WEIGHT = 1e6
#: The largest number (in size) a number facet takes: exact in JSON (IEEE doubles) and in z3.
MAX_NUMBER = 2**53 - 1


class AstBuilder:
    """Reductions -> AST; collects non-fatal diagnostics in ``self.diagnostics``.

    One method per grammar rule, called by :func:`cai_dsl.lang.lalr.parse` as
    ``method(start, end, children)`` when the rule is reduced (``start``/``end``: offsets of
    the node's text in ``text``); tokens are :class:`~cai_dsl.lang.lalr.Tok`.
    """

    def __init__(self, path: str, text: str):
        self.path = path
        self.diagnostics: list[Diagnostic] = []
        self._line_starts = [0, *(m.end() for m in re.finditer("\n", text))]

    # -- helpers
    def _s(self, start: int, end: int) -> ast.Span:
        """The span of ``text[start:end]`` (lines and columns 1-based, as Lark counts them)."""
        starts = self._line_starts
        line = bisect_right(starts, start)
        end_line = bisect_right(starts, end)
        return ast.Span.trusted(self.path, line, start - starts[line - 1] + 1, end_line, end - starts[end_line - 1] + 1)

    def _tspan(self, token: Tok) -> ast.Span:
        return self._s(token.start, token.end)

    def _ident(self, token: Tok) -> ast.Ident:
        return ast.Ident.trusted(name=token.value, span=self._s(token.start, token.end))

    def _simple(self, token: Tok, what: str) -> ast.Ident:
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
    def string(self, start, end, children) -> ast.Text:
        token: Tok = children[0]
        span = self._tspan(token)
        try:
            if token.type == "LONG_STRING":
                return ast.Text.trusted(value=long_string_value(token.value[3:-3]), triple=True, span=span)
            return ast.Text.trusted(value=unescape(token.value[1:-1]), span=span)
        except ValueError as exc:
            self.diagnostics.append(
                rules.INVALID_LITERAL(
                    f"invalid string: {exc}", span, help='valid escapes are \\" \\\\ \\n \\t \\r and \\uXXXX'
                )
            )
            return ast.Text.trusted(value=token.value.strip('"'), triple=token.type == "LONG_STRING", span=span)

    # -- header
    def start(self, start, end, children) -> list:
        # a top-level example comes back as its principle-field pair ("examples", node)
        return [c[1] if isinstance(c, tuple) else c for c in children]

    def header(self, start, end, children):
        return ast.Header.trusted(name=children[0], version=children[1], span=self._s(start, end))

    def source(self, start, end, children):
        return ast.Source.trusted(text=children[0], span=self._s(start, end))

    def import_decl(self, start, end, children):
        return ast.Import.trusted(path=children[0], span=self._s(start, end))

    # -- vocabulary
    def unordered_values(self, start, end, children):
        return (False, [self._simple(t, "facet value") for t in children])

    def ordered_values(self, start, end, children):
        return (True, [self._simple(t, "facet value") for t in children])

    def number_range(self, start, end, children):
        word, low, high = children
        if word.value != "number":
            self.diagnostics.append(
                rules.INVALID_LITERAL(
                    f"expected `number [LOW .. HIGH]`, not `{word.value}`", self._tspan(word), help="e.g. number [0 .. 100]"
                )
            )
        bounds = ast.NumberRange.trusted(low=self._number(low), high=self._number(high), span=self._s(start, end))
        if bounds.low.value > bounds.high.value:
            self.diagnostics.append(
                rules.INVALID_LITERAL(
                    f"empty range: {bounds.low.value} is above {bounds.high.value}", bounds.span, help="write the lower bound first"
                )
            )
        return (False, bounds)

    def facet(self, start, end, children):
        name, (ordered, values) = children
        if isinstance(values, ast.NumberRange):
            return ast.Facet.trusted(name=self._simple(name, "facet"), bounds=values, span=self._s(start, end))
        return ast.Facet.trusted(name=self._simple(name, "facet"), values=tuple(values), ordered=ordered, span=self._s(start, end))

    def _number(self, token: Tok) -> ast.Number:
        """A whole number of a number facet (a range bound, or the right side of a comparison)."""
        span = self._tspan(token)
        text = token.value
        if re.fullmatch(r"[+-]?\d+", text) is None or abs(int(text)) > MAX_NUMBER:
            self.diagnostics.append(
                rules.INVALID_LITERAL(
                    f"number facets take whole numbers up to {MAX_NUMBER} in size, not `{text}`",
                    span,
                    help="scale the facet (e.g. cents instead of dollars)",
                )
            )
            value = float(text)
            return ast.Number.trusted(value=int(value) if abs(value) <= MAX_NUMBER else 0, span=span)
        return ast.Number.trusted(value=int(text), span=span)

    def behavior(self, start, end, children):
        name, description, observe = children
        return ast.Behavior.trusted(
            name=self._simple(name, "behavior"), description=description, observe=observe, span=self._s(start, end)
        )

    def obs_marker(self, start, end, children):
        return ("markers", children)

    def obs_pattern(self, start, end, children):
        return ("patterns", children)

    def obs_judge(self, start, end, children):
        return ("judges", children)

    def obs_opening(self, start, end, children):
        return ("openings", children)

    def observe(self, start, end, children):
        fields: dict[str, list[ast.Text]] = {}
        for key, values in children:  # a field may repeat: its values accumulate in order
            fields.setdefault(key, []).extend(values)
        return ast.Observe.trusted(span=self._s(start, end), **{key: tuple(values) for key, values in fields.items()})

    def exclusive(self, start, end, children):
        return ast.Exclusive.trusted(members=tuple(self._simple(t, "behavior") for t in children), span=self._s(start, end))

    # -- principle fields
    def critique(self, start, end, children):
        return ("critique", children[0])

    def revise(self, start, end, children):
        return ("revise", children[0])

    def compare(self, start, end, children):
        return ("compare", children[0])

    def when(self, start, end, children):
        return ("when", children[0])

    def effect_kind(self, start, end, children):
        return children[0].value

    def effect(self, start, end, children):
        kind, *names = children
        return (
            "effects",
            ast.Effect.trusted(effect=kind, behaviors=tuple(self._simple(t, "behavior") for t in names), span=self._s(start, end)),
        )

    def weight(self, start, end, children):
        token = children[0]
        weight = ast.Weight.trusted(value=float(token.value), literal=token.value, span=self._s(start, end))
        if not 0 <= weight.value <= MAX_WEIGHT:  # also NaN; beyond it a sum of weights overflows
            self.diagnostics.append(
                rules.INVALID_LITERAL(
                    f"weight must be a number from 0 to {MAX_WEIGHT:g}, not {weight.literal}",
                    weight.span,
                    help="weights are relative: scale them down together",
                )
            )
        return ("weight", weight)

    def tags(self, start, end, children):
        return ("tags", ast.Tags.trusted(names=tuple(self._simple(t, "tag") for t in children), span=self._s(start, end)))

    def ex_prompt(self, start, end, children):
        return ("prompt", children[0])

    def ex_response(self, start, end, children):
        return ("response", children[0])

    def ex_critique(self, start, end, children):
        return ("critique", children[0])

    def ex_revision(self, start, end, children):
        return ("revision", children[0])

    def _word(self, token: Tok, what: str, allowed: tuple[str, ...]) -> ast.Ident:
        ident = self._ident(token)
        if ident.name not in allowed:
            self.diagnostics.append(
                rules.INVALID_LITERAL(
                    f"{what} must be {' or '.join(f'`{a}`' for a in allowed)}, not `{ident.name}`", ident.span
                )
            )
        return ident

    def ex_turn(self, start, end, children):
        role = self._word(children[0], "a turn's role", ("user", "assistant"))
        return ("turns", ast.Turn.trusted(role=role, text=children[1], span=self._s(start, end)))

    def ex_request(self, start, end, children):
        what = self._word(children[0], "a request", ("critique", "revision", "compare"))
        return ("requests", ast.Request.trusted(what=what, text=children[1], span=self._s(start, end)))

    def ex_rationale(self, start, end, children):
        return ("rationale", children[0])

    def ex_a(self, start, end, children):
        return ("a", children[0])

    def ex_b(self, start, end, children):
        return ("b", children[0])

    def ex_better(self, start, end, children):
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

    def example(self, start, end, children):
        return ("examples", ast.Example.trusted(span=self._s(start, end), **self._example_fields(children, ("critique", "revision"))))

    def compare_example(self, start, end, children):
        return ("examples", ast.CompareExample.trusted(span=self._s(start, end), **self._example_fields(children, ("compare",))))

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

    def principle(self, start, end, children):
        name, *pairs = children
        fields = self._fields(pairs, "principle", repeatable=("effects", "examples"))
        return ast.Principle.trusted(id=self._ident(name), span=self._s(start, end), **fields)

    def override(self, start, end, children):
        name, *pairs = children
        fields = self._fields(pairs, "override", repeatable=("effects", "examples"))
        return ast.Override.trusted(target=self._ident(name), span=self._s(start, end), **fields)

    # -- authority
    def authority_decl(self, start, end, children):
        return ast.AuthorityDecl.trusted(levels=tuple(self._simple(t, "authority level") for t in children), span=self._s(start, end))

    def authority(self, start, end, children):
        return ("authority", self._simple(children[0], "authority level"))

    def final(self, start, end, children):
        return ("final", ast.Final.trusted(span=self._s(start, end)))

    def lock(self, start, end, children):
        return ast.Lock.trusted(selectors=tuple(children), span=self._s(start, end))

    def narrow(self, start, end, children):
        return ("narrow", children[0])

    # -- ordering
    def selector(self, start, end, children):
        token: Tok = children[0]
        form = {"NAME": "name", "GLOB": "glob", "TAG": "tag"}[token.type]
        text = token.value[1:] if form == "tag" else token.value
        return ast.Selector.trusted(form=form, text=text, span=self._tspan(token))

    def group(self, start, end, children):
        name, *members = children
        return ast.Group.trusted(name=self._simple(name, "group"), members=tuple(members), span=self._s(start, end))

    def priority_level(self, start, end, children):
        return tuple(children)

    def priority(self, start, end, children):
        return ast.Priority.trusted(levels=tuple(children), span=self._s(start, end))

    def conflict_branch(self, start, end, children):
        return ast.ConflictBranch.trusted(condition=children[0], winner=self._ident(children[1]), span=self._s(start, end))

    def otherwise(self, start, end, children):
        return self._ident(children[0])

    def conflict(self, start, end, children):
        left, right, *rest = children
        otherwise = rest.pop()
        return ast.Conflict.trusted(
            left=self._ident(left),
            right=self._ident(right),
            branches=tuple(rest),
            otherwise=otherwise,
            span=self._s(start, end),
        )

    # -- deployments
    def include(self, start, end, children):
        return ast.Include.trusted(selectors=tuple(children), span=self._s(start, end))

    def exclude(self, start, end, children):
        return ast.Exclude.trusted(selectors=tuple(children), span=self._s(start, end))

    def assume(self, start, end, children):
        return ast.Assume.trusted(condition=children[0], span=self._s(start, end))

    def number_value(self, start, end, children):
        text = children[0].value
        is_int = re.fullmatch(r"[+-]?\d+", text) is not None
        return ("number", int(text) if is_int else float(text), text)

    def string_value(self, start, end, children):
        return ("string", children[0].value, children[0].value)

    def true_value(self, start, end, children):
        return ("bool", True, "true")

    def false_value(self, start, end, children):
        return ("bool", False, "false")

    def name_value(self, start, end, children):
        return ("name", children[0].value, children[0].value)

    def setting(self, start, end, children):
        key, (form, value, literal) = children
        return ast.Setting.trusted(
            key=self._simple(key, "setting"), value=value, value_form=form, literal=literal, span=self._s(start, end)
        )

    def deployment(self, start, end, children):
        name, parent, *items = children
        return ast.Deployment.trusted(
            name=self._simple(name, "deployment"),
            extends=self._ident(parent) if parent is not None else None,
            items=tuple(
                ast.DeploymentAuthority.trusted(level=item[1], span=item[1].span) if isinstance(item, tuple) else item
                for item in items
            ),
            span=self._s(start, end),
        )

    # -- tests
    def given(self, start, end, children):
        return children[0]

    def forall(self, start, end, children):
        return children[0]

    def behavior_expectation(self, start, end, children):
        return (children[0], self._ident(children[1]), None)

    def negated_behavior_expectation(self, start, end, children):
        return ("not_" + children[0], self._ident(children[1]), None)

    def winner_expectation(self, start, end, children):
        return ("winner", self._ident(children[0]), self._ident(children[1]))

    def active_expectation(self, start, end, children):
        return ("active", self._ident(children[0]), None)

    def negated_active_expectation(self, start, end, children):
        return ("not_active", self._ident(children[0]), None)

    def expectation(self, start, end, children):
        kind, subject, other = children[0]
        return ast.Expectation.trusted(expect=kind, subject=subject, other=other, span=self._s(start, end))

    def test(self, start, end, children):
        name, deployment, given, *expectations = children
        return ast.TestCase.trusted(
            name=name,
            deployment=self._ident(deployment),
            given=given,
            expectations=tuple(expectations),
            span=self._s(start, end),
        )

    def property(self, start, end, children):
        name, deployment, forall, *expectations = children
        return ast.PropertyCase.trusted(
            name=name,
            deployment=self._ident(deployment),
            forall=forall,
            expectations=tuple(expectations),
            span=self._s(start, end),
        )

    # -- expressions
    def or_expr(self, start, end, children):
        return ast.Or.trusted(operands=tuple(children), span=self._s(start, end))

    def and_expr(self, start, end, children):
        return ast.And.trusted(operands=tuple(children), span=self._s(start, end))

    def negation(self, start, end, children):
        return ast.Not.trusted(operand=children[0], span=self._s(start, end))

    def true_literal(self, start, end, children):
        return ast.BoolLiteral.trusted(value=True, span=self._s(start, end))

    def false_literal(self, start, end, children):
        return ast.BoolLiteral.trusted(value=False, span=self._s(start, end))

    def comparator(self, start, end, children):
        return children[0].value

    def comparison(self, start, end, children):
        facet, op, value = children
        right = self._number(value) if value.type == "NUMBER" else self._ident(value)
        return ast.Comparison.trusted(facet=self._ident(facet), op=op, value=right, span=self._s(start, end))

    def value_set(self, start, end, children):
        return tuple(self._ident(t) for t in children)

    def membership(self, start, end, children):
        return ast.Membership.trusted(facet=self._ident(children[0]), values=children[1], span=self._s(start, end))

    def negated_membership(self, start, end, children):
        return ast.Membership.trusted(facet=self._ident(children[0]), values=children[1], negated=True, span=self._s(start, end))
