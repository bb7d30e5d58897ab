"""AST conditions -> IR conditions: `.const` text with minimal parentheses, :class:`Cond` trees, allowed values."""

from __future__ import annotations

from typing import Iterable

from cai_dsl.compile.conditions import Cond, FacetIR, eval_cond
from cai_dsl.lang import ast
from cai_dsl.lang.printer import format_expr as expr_text  # the one expression printer

__all__ = ["allowed_values", "cond_dict", "expr_text", "facets_in", "to_cond"]


def to_cond(expr) -> Cond:
    if isinstance(expr, ast.BoolLiteral):
        return Cond(op="true" if expr.value else "false")
    if isinstance(expr, ast.Comparison):
        return Cond(op=expr.op, facet=expr.facet.name, value=_right(expr))
    if isinstance(expr, ast.Membership):
        return Cond(op="not in" if expr.negated else "in", facet=expr.facet.name, values=tuple(v.name for v in expr.values))
    if isinstance(expr, ast.Not):
        return Cond(op="not", args=(to_cond(expr.operand),))
    return Cond(op="or" if isinstance(expr, ast.Or) else "and", args=tuple(to_cond(o) for o in expr.operands))


def _right(expr: ast.Comparison) -> str | int:
    """The right side of a comparison in the IR: a value name, or a number facet's number."""
    return expr.value.value if isinstance(expr.value, ast.Number) else expr.value.name


def cond_dict(expr, facets: set[str] | None = None) -> dict:
    """Like :func:`to_cond` but as the plain dict the program is validated from (faster);
    the facets it mentions are added to ``facets``."""
    if isinstance(expr, ast.Comparison):
        if facets is not None:
            facets.add(expr.facet.name)
        return {"op": expr.op, "facet": expr.facet.name, "value": _right(expr)}
    if isinstance(expr, ast.Membership):
        if facets is not None:
            facets.add(expr.facet.name)
        return {"op": "not in" if expr.negated else "in", "facet": expr.facet.name, "values": [v.name for v in expr.values]}
    if isinstance(expr, ast.BoolLiteral):
        return {"op": "true" if expr.value else "false"}
    if isinstance(expr, ast.Not):
        return {"op": "not", "args": [cond_dict(expr.operand, facets)]}
    return {"op": "or" if isinstance(expr, ast.Or) else "and", "args": [cond_dict(o, facets) for o in expr.operands]}


def facets_in(expr) -> set[str]:
    if expr is None:
        return set()
    return {n.facet.name for n in ast.iter_expr(expr) if isinstance(n, (ast.Comparison, ast.Membership))}


def allowed_values(facet: ast.Facet, assumptions: Iterable) -> tuple[str, ...]:
    """The facet's values left by the top-level conjuncts of the assumptions that mention only it."""
    name = facet.name.name
    order = [v.name for v in facet.values]
    info = {name: FacetIR(name=name, values=tuple(order), ordered=facet.ordered)}
    allowed = set(order)
    stack = list(assumptions)
    while stack:
        e = stack.pop()
        if isinstance(e, ast.And):
            stack.extend(e.operands)
            continue
        if facets_in(e) != {name}:
            continue
        cond = to_cond(e)
        allowed &= {v for v in order if eval_cond(cond, {name: v}, info) is True}
    return tuple(v for v in order if v in allowed)
