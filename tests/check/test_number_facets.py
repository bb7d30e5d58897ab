"""Number facets in the checker: witnesses, tests and properties, and explain."""

import pytest

from cai_dsl.check.checker import check
from cai_dsl.check.explain import ScenarioError, explain, parse_scenario
from cai_dsl.check.tests import run_tests
from cai_dsl.lang.resolver import resolve

SOURCE = """
facet dose_mg: number [0 .. 10000]
facet risk: low < high
behavior refuse "decline"
behavior dose "state a dose"
principle harm.dose { when dose_mg > 500 and risk == high  require refuse }
principle help.dose { when dose_mg <= 500  require dose }
principle help.answer { when dose_mg >= 100  forbid refuse }
deployment base { include *  priority harm.dose > help.answer }
deployment open { include * }
test "a large risky dose is refused" in base { given dose_mg == 600 and risk == high  expect require refuse }
test "a small dose is answered" in base { given dose_mg < 100  expect require dose  expect not forbid refuse }
property "above 500 the dose is never stated" in base { forall dose_mg > 500  expect not require dose }
test "wrong on purpose" in base { given dose_mg >= 100 and risk == low  expect require refuse }
"""


@pytest.fixture()
def constitution(tmp_path):
    path = tmp_path / "doses.const"
    path.write_text(SOURCE)
    c = resolve(str(path))
    assert not c.has_errors, [d.message for d in c.diagnostics]
    return c


def test_contradiction_witness_carries_a_number(constitution):
    (d,) = [d for d in check(constitution, operational=False) if d.code == "CAI201"]
    assert d.deployment == "open" and d.witness["risk"] == "high"
    assert isinstance(d.witness["dose_mg"], int) and d.witness["dose_mg"] > 500
    assert d.to_json()["witness"]["dose_mg"] == d.witness["dose_mg"]


def test_tests_and_properties_over_numbers(constitution):
    results = {r.name: r for r in run_tests(constitution)}
    assert all(results[n].passed for n in results if n != "wrong on purpose")
    failed = results["wrong on purpose"]
    (bad,) = [r for r in failed.results if not r.passed]
    assert bad.counterexample["risk"] == "low" and bad.counterexample["dose_mg"] >= 100


def test_explain_given_a_number(constitution):
    given = parse_scenario("dose_mg=600", constitution)
    assert given == {"dose_mg": 600}
    partial = explain(constitution, "base", given)
    assert not partial.complete and partial.sometimes_active == ["harm.dose"] and partial.always_active == ["help.answer"]
    complete = explain(constitution, "base", parse_scenario("dose_mg == 600, risk=high", constitution))
    assert complete.policy.decisions["refuse"].status == "required"
    assert complete.to_json()["given"] == {"dose_mg": 600, "risk": "high"}


@pytest.mark.parametrize(
    "text, words", [("dose_mg=lots", "expected a whole number"), ("dose_mg=20000", "outside the range"), ("dose_mg=1.5", "whole number")]
)
def test_explain_rejects_bad_numbers(constitution, text, words):
    with pytest.raises(ScenarioError, match=words):
        parse_scenario(text, constitution)
