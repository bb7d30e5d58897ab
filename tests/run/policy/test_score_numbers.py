"""PolicyScorer and prompt files with number facets: numbers validated, partial scenarios exact."""

import json

import pytest

from cai_dsl.lang.resolver import resolve
from cai_dsl.run.data import load_prompts
from cai_dsl.run.policy.score import PolicyError, PolicyScorer
from cai_dsl.run.sl import SLError

SOURCE = """
facet dose_mg: number [0 .. 10000]
facet risk: low < high
behavior refuse "decline" { marker "I can't" }
behavior dose "state a dose" { marker "mg" }
principle harm.dose { compare "Which response declines a dangerous dose?"  when dose_mg > 500  require refuse }
principle help.dose { compare "Which response states the dose asked for?"  when dose_mg <= 500  require dose }
deployment base { include * }
"""


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    path = tmp_path_factory.mktemp("n") / "doses.const"
    path.write_text(SOURCE)
    return PolicyScorer(resolve(str(path)), "base")


def decided(scorer, scenario):
    return {d.behavior: d.decision for d in scorer.policy(scenario).decisions}


def test_numbers_and_numeric_text_are_accepted(scorer):
    assert scorer.validate({"dose_mg": 600, "risk": "low"}) == (("dose_mg", 600), ("risk", "low"))
    assert scorer.validate({"dose_mg": "600"}) == (("dose_mg", 600),)
    assert decided(scorer, {"dose_mg": 501}) == {"refuse": "required"}
    assert decided(scorer, {"dose_mg": 500, "risk": "high"}) == {"dose": "required"}


@pytest.mark.parametrize("value", [20000, -1, "lots", 1.5, True])
def test_bad_numbers_are_rejected(scorer, value):
    with pytest.raises(PolicyError, match="number facet `dose_mg`"):
        scorer.validate({"dose_mg": value})


def test_a_scenario_without_the_number_is_decided_over_every_dose(scorer):
    policy = scorer.policy({"risk": "high"})
    assert policy.decisions == ()  # some doses require refusing, others stating the dose
    assert policy.completions == 5  # the points 0, 499, 500, 501, 10000 stand for every dose


def test_prompt_files_accept_numbers(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"prompt": "How much?", "scenario": {"dose_mg": 600, "risk": "high"}}) + "\n")
    assert load_prompts(path)[0].scenario == {"dose_mg": 600, "risk": "high"}
    path.write_text(json.dumps({"prompt": "How much?", "scenario": {"dose_mg": 6.5}}) + "\n")
    with pytest.raises(SLError, match="whole numbers for number facets"):
        load_prompts(path)
