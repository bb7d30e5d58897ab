"""The SMT encoding and its named queries, cross-checked against the plain evaluator."""

from hypothesis import HealthCheck, given, settings, strategies as st

from cai_dsl.lang import ast
from cai_dsl.lang.resolver import resolve
from cai_dsl.semantics.evaluator import (
    active_principles,
    all_scenarios,
    number_constants,
    number_points,
    clashes_between,
    conflict_winner,
    reachable,
    resolved_policy,
)
from cai_dsl.semantics.smt import DeploymentModel, ScenarioSpace
from cai_dsl.testing import constitution_sources

VOCAB = """
facet topic: general | medical | cyber
facet risk: low < medium < high
behavior refuse
behavior detail
exclusive refuse, detail
"""


def _resolve_text(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("x") / "r.const"
    path.write_text(text)
    constitution = resolve(str(path))
    assert not constitution.has_errors, [d.message for d in constitution.diagnostics]
    return constitution


def _model(tmp_path_factory, body: str, deployment: str = "base") -> DeploymentModel:
    constitution = _resolve_text(tmp_path_factory, VOCAB + body)
    return DeploymentModel(ScenarioSpace(constitution), constitution.deployments[deployment])


CLASH = """
principle harm.a { when risk == high  require refuse }
principle help.b { when topic == medical  require detail }
"""


def test_clash_unresolved_returns_a_witness(tmp_path_factory):
    model = _model(tmp_path_factory, CLASH + "deployment base { include * }\n")
    assert model.live_pairs() == [("harm.a", "help.b")]
    assert model.clash_unresolved("harm.a", "help.b") == {"risk": "high", "topic": "medical"}
    # an unresolved clash is a contradiction (CAI201), not a loss: neither is shadowed (CAI206)
    assert model.always_loses() == []


def test_priority_resolves_and_the_loser_always_loses(tmp_path_factory):
    model = _model(tmp_path_factory, CLASH + "deployment base { include *  priority harm.a > help.b }\n")
    assert model.clash_unresolved("harm.a", "help.b") is None
    assert model.can_win("harm.a", "help.b") is not None
    assert model.can_win("help.b", "harm.a") is None
    assert model.always_loses() == ["help.b"]


def test_reachable_and_never_active(tmp_path_factory):
    body = CLASH + "deployment base { include *  assume risk == low }\ndeployment none { include *  assume risk > high }\n"
    model = _model(tmp_path_factory, body)
    assert model.reachable() is not None
    assert model.reachable({"risk": "high"}) is None
    assert model.never_active("harm.a") and not model.never_active("help.b")
    assert model.live_pairs() == []
    assert _model(tmp_path_factory, body, "none").reachable() is None


def test_activity_statuses_and_counterexample(tmp_path_factory):
    model = _model(tmp_path_factory, CLASH + "deployment base { include *  priority harm.a > help.b }\n")
    given_ = {"topic": "medical"}
    assert model.activity("help.b", given_) == "always"
    assert model.activity("harm.a", given_) == "sometimes"
    statuses = model.possible_statuses("detail", given_)
    assert set(statuses) == {"required", "free"}
    assert statuses["free"]["risk"] == "high"
    assert model.counterexample(None, model.claim("require", "detail")) is not None
    assert model.counterexample(None, model.claim("winner", "harm.a", "help.b")) is None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(constitution_sources())
def test_symbolic_policy_matches_evaluator(tmp_path_factory, text):
    constitution = _resolve_text(tmp_path_factory, text)
    deployment = constitution.deployments["base"]
    space = ScenarioSpace(constitution)
    model = DeploymentModel(space, deployment)
    for scenario in all_scenarios(constitution.facets, number_constants(constitution)):
        if not reachable(deployment, scenario, constitution.facets):
            continue
        policy = resolved_policy(constitution, deployment, scenario)
        fixed = space.scenario_constraint(scenario)
        for behavior, decision in policy.decisions.items():
            assert (model.sat(fixed, model.required(behavior)) is not None) == (decision.status == "required")
            assert (model.sat(fixed, model.forbidden(behavior)) is not None) == (decision.status == "forbidden")


def test_authority_level_ranks_a_clash(tmp_path_factory):
    levels = "authority top > user\n" + CLASH.replace("require detail }", "require detail  authority user }")
    model = _model(tmp_path_factory, levels + "deployment base { include * }\n")
    assert model.clash_unresolved("harm.a", "help.b") is None  # the higher level wins
    assert model.always_loses() == ["help.b"]
    assert model.final_always_wins("harm.a") == {}
    assert model.final_always_wins("help.b") == {"harm.a": {"risk": "high", "topic": "medical"}}


def test_narrowing_override_adds_to_the_condition(tmp_path_factory):
    body = CLASH + "deployment base { include *  override help.b { narrow when risk == low } }\n"
    model = _model(tmp_path_factory, body)
    assert model.live_pairs() == []  # help.b now needs topic == medical and risk == low
    assert model.activity("help.b", {"topic": "medical", "risk": "low"}) == "always"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(constitution_sources())
def test_final_always_wins_matches_enumeration(tmp_path_factory, text):
    """The final-principle proof (CAI209), asked of every principle, agrees with brute force."""
    constitution = _resolve_text(tmp_path_factory, text)
    deployment = constitution.deployments["base"]
    model = DeploymentModel(ScenarioSpace(constitution), deployment)
    for pid in deployment.principle_ids:
        losing: set[str] = set()
        for scenario in all_scenarios(constitution.facets, number_constants(constitution)):
            if not reachable(deployment, scenario, constitution.facets):
                continue
            active = {p.id.name: p for p in active_principles(deployment, scenario, constitution.facets)}
            if pid not in active:
                continue
            for other, p in active.items():
                if other != pid and clashes_between(active[pid], p, constitution.exclusives):
                    if conflict_winner(constitution, deployment, pid, other, scenario)[0] != pid:
                        losing.add(other)
        assert set(model.final_always_wins(pid)) == losing


# ------------------------------------------------------------------ number facets

DOSES = """
facet dose_mg: number [0 .. 10000]
behavior refuse
behavior detail
principle harm.dose { when dose_mg > 500  require refuse }
principle help.dose { when dose_mg >= 100 and dose_mg != 700  forbid refuse }
"""


def test_number_facet_witness_is_a_number_in_range(tmp_path_factory):
    constitution = _resolve_text(tmp_path_factory, DOSES + "deployment base { include *  assume dose_mg <= 600 }\n")
    model = DeploymentModel(ScenarioSpace(constitution), constitution.deployments["base"])
    witness = model.clash_unresolved("harm.dose", "help.dose")
    assert isinstance(witness["dose_mg"], int) and 500 < witness["dose_mg"] <= 600
    assert model.reachable({"dose_mg": 700}) is None  # outside the assumption
    assert model.activity("harm.dose", {"dose_mg": 501}) == "always"
    assert model.activity("harm.dose", {"dose_mg": 500}) == "never"


def test_number_points_are_the_boundaries_inside_the_range(tmp_path_factory):
    constitution = _resolve_text(tmp_path_factory, DOSES + "deployment base { include * }\n")
    constants = number_constants(constitution)
    assert constants == {"dose_mg": {100, 500, 700}}
    assert number_points(constitution.facets["dose_mg"], constants["dose_mg"]) == [0, 99, 100, 101, 499, 500, 501, 699, 700, 701, 10000]
    assert number_points(constitution.facets["dose_mg"], [0, 10000, 20000]) == [0, 1, 9999, 10000]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["==", "!=", "<", "<=", ">", ">="]), st.integers(-3, 12)), min_size=1, max_size=4))
def test_number_points_see_every_truth_assignment(atoms):
    """Enumerating the points is exact: every combination of atom truths that some value in the
    range gives, some point gives too."""
    facet = ast.Facet(name=ast.Ident(name="n"), bounds=ast.NumberRange(low=ast.Number(value=0), high=ast.Number(value=9)))
    truths = lambda v: tuple(ast.NUMBER_COMPARATORS[op](v, c) for op, c in atoms)  # noqa: E731
    everywhere = {truths(v) for v in range(0, 10)}
    assert {truths(v) for v in number_points(facet, [c for _, c in atoms])} == everywhere
