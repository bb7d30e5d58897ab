"""Per-facet projections of conditions: a sound over-approximation of the values each
facet may take where a condition holds, without a solver (used by CAI307). Number
facets are left out (any value)."""

from __future__ import annotations

from typing import Mapping

from cai_dsl.lang import ast

Projection = dict[str, frozenset[str]]  # facet -> values a scenario may take; absent = any


def _atom_values(node: ast.Comparison | ast.Membership, facets: Mapping[str, ast.Facet]) -> frozenset[str] | None:
    facet = facets.get(node.facet.name)
    if facet is None or facet.bounds is not None:  # number facets are not projected (constrain nothing)
        return None
    domain = [v.name for v in facet.values]
    if isinstance(node, ast.Membership):
        chosen = {v.name for v in node.values}
        return frozenset(v for v in domain if (v in chosen) != node.negated)
    value = node.value.name
    if node.op == "==":
        return frozenset(v for v in domain if v == value)
    if node.op == "!=":
        return frozenset(v for v in domain if v != value)
    if value not in domain:
        return None
    k = domain.index(value)
    pick = {
        "<": lambda i: i < k,
        "<=": lambda i: i <= k,
        ">": lambda i: i > k,
        ">=": lambda i: i >= k,
    }[node.op]
    return frozenset(v for i, v in enumerate(domain) if pick(i))


def project(expr: ast.Expr | None, facets: Mapping[str, ast.Facet]) -> Projection | None:
    """Per facet, a superset of the values any scenario satisfying ``expr`` takes.

    Returns None when ``expr`` is certainly unsatisfiable on some facet. ``and``
    intersects, ``or`` unites facet by facet, ``not`` of an atom complements it and
    ``not`` of anything else constrains nothing (an over-approximation).
    """
    if expr is None:
        return {}
    # iterative post-order, like the evaluator, so deep expressions cannot overflow
    results: dict[int, Projection | None] = {}
    stack: list[tuple[ast.Expr, bool]] = [(expr, False)]
    while stack:
        node, expanded = stack.pop()
        if isinstance(node, (ast.And, ast.Or)) and not expanded:
            stack.append((node, True))
            stack.extend((c, False) for c in node.operands)
            continue
        result: Projection | None
        if isinstance(node, ast.BoolLiteral):
            result = {} if node.value else None
        elif isinstance(node, (ast.Comparison, ast.Membership)):
            values = _atom_values(node, facets)
            result = {} if values is None else ({node.facet.name: values} if values else None)
        elif isinstance(node, ast.Not):
            inner = node.operand
            if isinstance(inner, (ast.Comparison, ast.Membership)):
                values = _atom_values(inner, facets)
                facet = facets.get(inner.facet.name)
                if values is None or facet is None:
                    result = {}
                else:
                    rest = frozenset(v.name for v in facet.values) - values
                    result = {inner.facet.name: rest} if rest else None
            elif isinstance(inner, ast.BoolLiteral):
                result = None if inner.value else {}
            else:
                result = {}
        elif isinstance(node, ast.And):
            result = {}
            for child in node.operands:
                sub = results[id(child)]
                if sub is None:
                    result = None
                    break
                result = meet(result, sub)
                if result is None:
                    break
        else:  # Or
            parts = [results[id(c)] for c in node.operands]
            parts = [p for p in parts if p is not None]
            if not parts:
                result = None
            else:
                keys = set(parts[0]).intersection(*parts[1:])
                result = {k: frozenset().union(*(p[k] for p in parts)) for k in keys}
        results[id(node)] = result
    return results[id(expr)]


def meet(a: Projection | None, b: Projection | None) -> Projection | None:
    if a is None or b is None:
        return None
    out = dict(a)
    for facet, values in b.items():
        merged = out[facet] & values if facet in out else values
        if not merged:
            return None
        out[facet] = merged
    return out
