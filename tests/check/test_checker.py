"""Checker: each semantic rule triggers and does not; the SMT results are
cross-checked against the plain enumerating evaluator on random constitutions."""

from pathlib import Path

from hypothesis import HealthCheck, given, settings

from cai_dsl.check.checker import check
from cai_dsl.semantics.evaluator import all_scenarios, number_constants, reachable, resolved_policy
from cai_dsl.lang.resolver import resolve
from cai_dsl.testing import constitution_sources

ROOT = Path(__file__).resolve().parents[2]

VOCAB = """
facet topic: general | medical | cyber
facet risk: low < medium < high
behavior refuse
behavior detail
behavior caveat
exclusive refuse, detail
"""


def lint(tmp_path, body: str, name: str = "c.const"):
    path = tmp_path / name
    path.write_text(VOCAB + body)
    constitution = resolve(str(path))
    return constitution, check(constitution, operational=False)


def codes(diags):
    """Semantic codes only (the vocabulary above leaves some names unused on purpose)."""
    return sorted({d.code for d in diags if d.code.startswith("CAI2")})


def test_contradiction_has_witness_and_both_spans(tmp_path):
    c, diags = lint(
        tmp_path,
        """
principle a { when risk >= medium forbid caveat }
principle b { when topic == medical require caveat }
deployment base { include * }
""",
    )
    [d] = [d for d in diags if d.code == "CAI201"]
    assert d.witness["topic"] == "medical" and d.witness["risk"] in ("medium", "high")
    assert set(d.principles) == {"a", "b"}
    assert {r.span.line for r in d.related} == {9, 10}
    assert d.deployment == "base"


def test_exclusive_clash_is_a_contradiction(tmp_path):
    _, diags = lint(tmp_path, "principle a { require refuse }\nprinciple b { require detail }\ndeployment base { include * }\n")
    assert "CAI201" in codes(diags)


def test_priority_resolves_clash(tmp_path):
    _, diags = lint(
        tmp_path,
        "principle a { require refuse }\nprinciple b { require detail }\npriority a > b\ndeployment base { include * }\n",
    )
    assert "CAI201" not in codes(diags)
    assert "CAI206" in codes(diags)  # b loses its only clash everywhere


def test_disjoint_conditions_do_not_clash(tmp_path):
    _, diags = lint(
        tmp_path,
        "principle a { when risk == low forbid caveat }\nprinciple b { when risk == high require caveat }\n"
        "deployment base { include * }\n",
    )
    assert codes(diags) == []


def test_assumption_removes_clash(tmp_path):
    _, diags = lint(
        tmp_path,
        "principle a { when topic == cyber forbid caveat }\nprinciple b { require caveat }\n"
        "deployment base { include * }\ndeployment safe { include * assume topic != cyber }\n",
    )
    assert [d.deployment for d in diags if d.code == "CAI201"] == ["base"]


def test_conflict_gap_and_full_rule(tmp_path):
    _, diags = lint(
        tmp_path,
        "principle a { forbid caveat }\nprinciple b { require caveat }\n"
        "conflict a vs b { when risk == high: a }\ndeployment base { include * }\n",
    )
    [gap] = [d for d in diags if d.code == "CAI203"]
    assert gap.witness["risk"] != "high"
    _, diags = lint(
        tmp_path,
        "principle a { forbid caveat }\nprinciple b { require caveat }\n"
        "conflict a vs b { when risk == high: a otherwise: b }\ndeployment base { include * }\n",
    )
    assert "CAI203" not in codes(diags) and "CAI201" not in codes(diags)


def test_rule_gap_filled_by_priority(tmp_path):
    _, diags = lint(
        tmp_path,
        "principle a { forbid caveat }\nprinciple b { require caveat }\n"
        "conflict a vs b { when risk == high: b }\npriority a > b\ndeployment base { include * }\n",
    )
    assert not {"CAI201", "CAI203"} & set(codes(diags))


def test_priority_cycle(tmp_path):
    _, diags = lint(
        tmp_path,
        "principle a { compare \"?\" }\nprinciple b { compare \"?\" }\nprinciple c { compare \"?\" }\n"
        "priority a > b\npriority b > c\npriority c > a\ndeployment base { include * }\n",
    )
    [d] = [d for d in diags if d.code == "CAI202"]
    assert d.message == "priority cycle: a > b > c > a"


def test_unsatisfiable_assumption(tmp_path):
    _, diags = lint(tmp_path, "principle a { require caveat }\ndeployment base { include * assume risk > high }\n")
    assert codes(diags) == ["CAI204"]


def test_never_active(tmp_path):
    _, diags = lint(
        tmp_path, "principle a { when topic == cyber require caveat }\ndeployment base { include * assume topic == medical }\n"
    )
    assert codes(diags) == ["CAI205"]
    _, diags = lint(tmp_path, "principle a { when topic == cyber require caveat }\ndeployment base { include * }\n")
    assert codes(diags) == []


def test_unreachable_branch(tmp_path):
    _, diags = lint(
        tmp_path,
        "principle a { forbid caveat }\nprinciple b { when risk == high require caveat }\n"
        "conflict a vs b { when risk == low: a otherwise: b }\ndeployment base { include * }\n",
    )
    [d] = [d for d in diags if d.code == "CAI207"]
    assert (d.span.line, d.span.column) == (10, 19)  # the `when risk == low` branch


def test_self_contradictory_principle(tmp_path):
    _, diags = lint(tmp_path, "principle a { require caveat forbid caveat }\ndeployment base { include * }\n")
    assert "CAI208" in codes(diags)


def test_suppression_comment(tmp_path):
    _, diags = lint(
        tmp_path,
        "# cai: ignore[CAI201]\nprinciple a { forbid caveat }\nprinciple b { require caveat }\ndeployment base { include * }\n",
    )
    assert "CAI201" not in codes(diags)


def test_language_example_findings():
    c = resolve(str(ROOT / "examples" / "language-example.const"))
    diags = check(c, operational=False)
    assert not any(d.is_error for d in diags)
    # the example's conflict rule sends every clash to its first branch, so
    # `otherwise` never decides and help.goals loses every clash it takes part in
    assert {(d.code, tuple(d.principles)) for d in diags if d.code.startswith("CAI2")} == {
        ("CAI206", ("help.goals",)),
        ("CAI207", ("help.goals", "harm.less_harmful")),
    }


# ---------------------------------------------------------------- cross-check


def _resolve_text(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("x") / "r.const"
    path.write_text(text)
    constitution = resolve(str(path))
    assert not constitution.has_errors, [d.message for d in constitution.diagnostics]
    return constitution


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(constitution_sources())
def test_witnesses_reproduce_and_checker_is_complete(tmp_path_factory, text):
    constitution = _resolve_text(tmp_path_factory, text)
    deployment = constitution.deployments["base"]
    diags = check(constitution, operational=False)
    reported = {frozenset(d.principles) for d in diags if d.code in ("CAI201", "CAI203")}
    # every witness reproduces the clash in the plain evaluator
    for d in diags:
        if d.code in ("CAI201", "CAI203"):
            scenario = d.witness
            assert reachable(deployment, scenario, constitution.facets)
            policy = resolved_policy(constitution, deployment, scenario)
            assert frozenset(d.principles) in {frozenset((c.first, c.second)) for c in policy.unresolved}
    # and every unresolved clash the evaluator finds by enumeration is reported
    found = set()
    for scenario in all_scenarios(constitution.facets, number_constants(constitution)):
        if reachable(deployment, scenario, constitution.facets):
            for clash in resolved_policy(constitution, deployment, scenario).unresolved:
                found.add(frozenset((clash.first, clash.second)))
    assert found == reported


def test_check_reports_each_stage_as_it_starts():
    constitution = resolve(str(ROOT / "constitutions" / "harmless-helpful.const"))
    stages: list[str] = []
    check(constitution, on_stage=stages.append)
    assert stages[-1] == "operational and observability lints"
    assert stages[:-1] == [f"deployment {n}: contradictions (SMT)" for n in constitution.deployments]
