"""The plain evaluator's priority order: the transitive closure of the priority edges as bitsets (issue 13:
long priority chains in linear time), equal to the naive closure on random graphs, cycles included."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cai_dsl.semantics.evaluator import PriorityOrder


def _naive_closure(edges):
    closure = set(edges)
    while True:
        extra = {(a, d) for a, b in closure for c, d in closure if b == c} - closure
        if not extra:
            return closure
        closure |= extra


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 7), st.integers(0, 7)), max_size=20))
def test_priority_order_equals_the_transitive_closure(raw):
    edges = [(f"p{a}", f"p{b}") for a, b in raw]
    order = PriorityOrder(edges)
    names = [f"p{i}" for i in range(9)]
    assert {(a, b) for a in names for b in names if (a, b) in order} == _naive_closure(edges)


def test_priority_order_of_a_long_chain_is_cheap():
    n = 5000
    order = PriorityOrder((f"p{i}", f"p{i + 1}") for i in range(n))
    assert ("p0", f"p{n}") in order and (f"p{n}", "p0") not in order and ("p7", "p7") not in order
