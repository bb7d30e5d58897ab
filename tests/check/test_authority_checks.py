"""The checker over authority: the final-principle proof (CAI209), authority ranking,
properties over every deployment (`in *`), and regressions of CAI206 and CAI403."""

from pathlib import Path

from cai_dsl.check.checker import check
from cai_dsl.check.tests import failures_as_diagnostics, run_tests
from cai_dsl.lang.resolver import resolve

VOCAB = """
facet topic: general | cbrn
facet risk: low < high
behavior uplift
behavior detail
authority platform > operator > user
principle hard.no_uplift {
  compare "Which response gives no help toward a weapon of mass destruction?"
  when topic == cbrn
  forbid uplift
  final
}
"""


def load(tmp_path: Path, body: str):
    path = tmp_path / "c.const"
    path.write_text(VOCAB + body)
    constitution = resolve(str(path))
    assert not constitution.has_errors, [d.message for d in constitution.diagnostics]
    return constitution


def semantic(constitution, code: str):
    return [d for d in check(constitution, operational=False) if d.code == code]


def test_final_principle_that_can_lose_is_an_error_with_a_witness(tmp_path):
    c = load(tmp_path, 'principle help.all { compare "Which?" require uplift }\ndeployment base { include * }\n')
    (d,) = semantic(c, "CAI209")
    assert d.witness == {"topic": "cbrn", "risk": "low"} or d.witness["topic"] == "cbrn"
    assert d.principles == ("hard.no_uplift", "help.all") and d.deployment == "base"


def test_final_principle_wins_through_authority_or_priority(tmp_path):
    by_level = 'principle help.all { compare "Which?" require uplift  authority user }\ndeployment base { include * }\n'
    assert semantic(load(tmp_path, by_level), "CAI209") == []
    assert semantic(load(tmp_path, by_level), "CAI201") == []  # the higher level resolves the clash
    by_priority = (
        'principle help.all { compare "Which?" require uplift }\npriority hard.* > help.*\n'
        "deployment base { include * }\n"
    )
    assert semantic(load(tmp_path, by_priority), "CAI209") == []


def test_final_proof_runs_in_every_deployment(tmp_path):
    body = """
principle help.all { compare "Which?" when risk == high  require uplift  authority user }
principle help.two { compare "Which?" require uplift }
deployment base { include *  exclude help.two }
deployment wide { include * }
"""
    found = semantic(load(tmp_path, body), "CAI209")
    assert [(d.deployment, d.principles[1]) for d in found] == [("wide", "help.two")]


def test_unresolved_clash_is_not_also_shadowed(tmp_path):
    """Regression: CAI206 fired on both principles of a clash nothing resolves (already CAI201)."""
    body = """
principle a.x { compare "Which?" when risk == high  require detail }
principle b.y { compare "Which?" forbid detail }
deployment base { include * }
"""
    c = load(tmp_path, body)
    assert len(semantic(c, "CAI201")) == 1
    assert semantic(c, "CAI206") == []
    ranked = load(tmp_path, body + "deployment ranked { include *  priority a.x > b.y }\n")
    assert [d.principles for d in semantic(ranked, "CAI206")] == [("b.y",)]


def test_property_over_every_deployment_names_the_offender(tmp_path):
    body = """
principle help.all { compare "Which?" require uplift  authority operator }
deployment base { include * }
deployment acme extends base { authority operator  exclude help.all }
deployment rogue { include help.* }
property "no deployment unlocks uplift" in * {
  forall topic == cbrn
  expect not require uplift
}
test "acme family" in acme* { given topic == cbrn  expect forbid uplift }
"""
    results = run_tests(load(tmp_path, body))
    assert [(r.name, r.deployment, r.passed) for r in results] == [
        ("no deployment unlocks uplift", "base", True),
        ("no deployment unlocks uplift", "acme", True),
        ("no deployment unlocks uplift", "rogue", False),
        ("acme family", "acme", True),
    ]
    (d,) = [d for d in failures_as_diagnostics(results) if d.is_error]
    assert d.deployment == "rogue" and "in deployment `rogue`" in d.message


def test_vacuous_case_passes_with_a_warning(tmp_path):
    """Regression: a vacuous test was reported as failed; docs/rules/CAI403.md says it passes."""
    c = load(tmp_path, 'deployment base { include *  assume risk == low }\ntest "never" in base { given risk == high  expect forbid uplift }\n')
    (r,) = run_tests(c)
    assert r.vacuous and r.passed
    assert [(d.code, d.severity) for d in failures_as_diagnostics([r])] == [("CAI403", "warning")]
