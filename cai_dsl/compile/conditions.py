"""Conditions in the IR: a compact, span-free tree over facets, and its three-valued evaluation."""

from __future__ import annotations

import unicodedata
from typing import Literal, Mapping

from cai_dsl.compile.base import Compact
from cai_dsl.lang import ast

__all__ = ["Cond", "CondOp", "FacetIR", "eval_cond", "facet_ir", "validate_scenario"]


CondOp = Literal["true", "false", "==", "!=", "<", "<=", ">", ">=", "in", "not in", "and", "or", "not"]


class Cond(Compact):
    """A compact, span-free condition tree over facets.

    ``true``/``false``; ``facet OP value`` (``==``, ``!=``, ``<``...; ``value`` a value name,
    or a whole number for a number facet); ``facet in values`` / ``not in``; ``and``/``or``
    over ``args``; ``not`` over ``args[0]``.
    """

    op: CondOp
    facet: str | None = None
    value: str | int | None = None
    values: tuple[str, ...] = ()
    args: tuple["Cond", ...] = ()

    def facets_used(self) -> set[str]:
        out: set[str] = set()
        stack = [self]
        while stack:
            node = stack.pop()
            if node.facet is not None:
                out.add(node.facet)
            stack.extend(node.args)
        return out


Cond.model_rebuild()


class FacetIR(Compact):
    """A facet: its value names (low to high when ``ordered``), or, for a number facet, no
    values and ``bounds`` (the lowest and highest whole number, both included)."""

    name: str
    values: tuple[str, ...] = ()
    ordered: bool = False
    bounds: tuple[int, int] | None = None


def _lookalikes(text: str) -> str:
    """`` (U+0430 CYRILLIC SMALL LETTER A)`` for the non-ASCII characters of ``text``, else ``""``."""
    odd = [f"U+{ord(c):04X} {unicodedata.name(c, 'unnamed')}" for c in dict.fromkeys(text) if ord(c) > 127]
    return f" (it contains {', '.join(odd)})" if odd else ""


def validate_scenario(
    scenario: Mapping[str, object] | None, facets: Mapping[str, FacetIR], error: type[Exception] = ValueError
) -> tuple[tuple[str, str | int], ...]:
    """The scenario as sorted ``(facet, value)`` pairs, checked against the facet vocabulary: an unknown
    facet or value raises ``error`` naming the facet, the value and the allowed ones; a number facet
    takes a whole number in its bounds (or a string of one). ``None`` values are left out."""
    if scenario is not None and not isinstance(scenario, Mapping):
        raise error(f"a scenario is an object of facet names to values, not {type(scenario).__name__}")
    out: list[tuple[str, str | int]] = []
    for key, value in sorted((scenario or {}).items()):
        if value is None:  # a column of dicts with missing keys (Hugging Face datasets) reads back None
            continue
        facet = facets.get(key)
        if facet is None:
            raise error(f"unknown facet `{key}` in scenario{_lookalikes(key)}; facets are: {', '.join(sorted(facets))}")
        if facet.bounds is not None:
            low, high = facet.bounds
            number = _number(value) if not isinstance(value, float) else None
            if number is None or not low <= number <= high:
                raise error(f"`{value}` is not a value of number facet `{key}`: expected a whole number from {low} to {high}")
            out.append((key, number))
        elif value not in facet.values:
            raise error(
                f"`{value}` is not a value of facet `{key}`{_lookalikes(str(value))}; values are: {', '.join(facet.values)}"
            )
        else:
            out.append((key, value))  # type: ignore[arg-type]
    return tuple(out)


def facet_ir(facet: ast.Facet) -> FacetIR:
    """The IR of a resolved facet (its value names or its bounds)."""
    if facet.bounds is not None:
        return FacetIR(name=facet.name.name, bounds=(facet.bounds.low.value, facet.bounds.high.value))
    return FacetIR(name=facet.name.name, values=tuple(v.name for v in facet.values), ordered=facet.ordered)


def _number(value: object) -> int | None:
    """A scenario's value of a number facet (a number, or a string of one), or None if it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def eval_cond(cond: Cond | None, scenario: Mapping[str, str | None], facets: Mapping[str, FacetIR]) -> bool | None:
    """Three-valued (Kleene) truth of ``cond``: a facet missing from ``scenario`` (or None) is unknown.

    Returns True, False, or None when the answer depends on an unknown facet.
    """
    if cond is None:
        return True
    op = cond.op
    if op == "true":
        return True
    if op == "false":
        return False
    if op == "not":
        inner = eval_cond(cond.args[0], scenario, facets)
        return None if inner is None else not inner
    if op == "and":
        result: bool | None = True
        for arg in cond.args:
            v = eval_cond(arg, scenario, facets)
            if v is False:
                return False
            if v is None:
                result = None
        return result
    if op == "or":
        result = False
        for arg in cond.args:
            v = eval_cond(arg, scenario, facets)
            if v is True:
                return True
            if v is None:
                result = None
        return result
    actual = scenario.get(cond.facet or "")
    if actual is None:
        return None
    if isinstance(cond.value, int):  # a number facet
        number = _number(actual)
        if number is None:
            return None
        return ast.NUMBER_COMPARATORS[op](number, cond.value)
    if op == "in":
        return actual in cond.values
    if op == "not in":
        return actual not in cond.values
    if op == "==":
        return actual == cond.value
    if op == "!=":
        return actual != cond.value
    facet = facets.get(cond.facet or "")
    if facet is None or actual not in facet.values or cond.value not in facet.values:
        return None
    a, b = facet.values.index(actual), facet.values.index(cond.value)
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
