"""The one de-duplication pass, keyed by each rule's scope."""

from cai_dsl.core.source import Span
from cai_dsl.diagnostics import rules
from cai_dsl.diagnostics.dedupe import dedupe

SPAN = Span(file="c.const", line=3, column=11, end_line=3, end_column=14)


def test_file_scope_keeps_one_per_location_whatever_the_deployment():
    a = rules.SHADOWED("principle `p` loses every clash it takes part in, in deployment `a`", SPAN, deployment="a")
    b = rules.SHADOWED("principle `p` loses every clash it takes part in, in deployment `b`", SPAN, deployment="b")
    other = rules.SHADOWED("principle `p` loses every clash it takes part in, in deployment `a`", SPAN.model_copy(update={"line": 9}))
    assert rules.SHADOWED.scope == "file"
    assert dedupe([a, b, other, a]) == [a, other]


def test_deployment_scope_keeps_one_per_deployment():
    a = rules.CONTRADICTION("`p` and `q` clash", SPAN, deployment="a")
    b = rules.CONTRADICTION("`p` and `q` clash", SPAN, deployment="b")
    assert rules.CONTRADICTION.scope == "deployment"
    assert dedupe([a, b, a, b]) == [a, b]


def test_unknown_codes_are_kept_per_deployment():
    d = rules.CONTRADICTION("x", SPAN, deployment="a").model_copy(update={"code": "X999"})
    assert dedupe([d, d.model_copy(update={"deployment": "b"}), d]) == [d, d.model_copy(update={"deployment": "b"})]
