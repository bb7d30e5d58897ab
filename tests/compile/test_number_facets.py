"""Number facets in the IR: bounds, conditions with numbers, the classifier, the schema."""

import json

import pytest

from cai_dsl.compile.compiler import compile_program
from cai_dsl.compile.conditions import Cond, FacetIR, eval_cond
from cai_dsl.compile.ir import Program, ir_json_schema
from cai_dsl.lang.resolver import resolve

SOURCE = """
facet dose_mg: number [0 .. 10000]
facet risk: low < high
behavior refuse "decline" { marker "I can't" }
behavior dose "state a dose" { marker "mg" }
principle harm.dose {
  critique "Does the response state a dose above 500 mg for a risky request?"
  revise "Rewrite the response without the dose."
  when dose_mg > 500 and risk == high
  require refuse
}
principle help.dose {
  critique "Does the response state the dose the user asked for?"
  revise "Rewrite the response to state the dose."
  when dose_mg <= 500
  require dose
}
deployment base { include *  assume dose_mg >= 1 }
"""


@pytest.fixture(scope="module")
def program(tmp_path_factory) -> Program:
    path = tmp_path_factory.mktemp("n") / "doses.const"
    path.write_text(SOURCE)
    constitution = resolve(str(path))
    return compile_program(constitution, "base", check=False)


def test_facets_and_conditions_carry_numbers(program):
    data = json.loads(program.to_json())
    assert data["facets"][0] == {"name": "dose_mg", "bounds": [0, 10000], "ordered": False}
    assert data["principles"][0]["condition"]["args"][0] == {"op": ">", "facet": "dose_mg", "value": 500}
    assert data["assumptions"][0] == {"when": "dose_mg >= 1", "condition": {"op": ">=", "facet": "dose_mg", "value": 1}}
    assert program.verify_hash() and Program.from_json(program.to_json()) == program
    schema = ir_json_schema()["$defs"]
    assert {"type": "integer"} in schema["Cond"]["properties"]["value"]["anyOf"]
    assert "bounds" in schema["FacetIR"]["properties"] and "values" not in schema["FacetIR"].get("required", [])


def test_number_facets_are_not_asked_by_the_classifier(program):
    assert [q.facet for q in program.scenario_classifier.questions] == ["risk"]


def test_scenario_tags_with_numbers_select_principles(program):
    assert program.active_principles({"dose_mg": 600, "risk": "high"}) == ["harm.dose"]
    assert program.active_principles({"dose_mg": "600", "risk": "high"}) == ["harm.dose"]  # a tag read as text
    assert program.active_principles({"dose_mg": 20}) == ["help.dose"]
    assert program.active_principles({"risk": "high"}) == ["harm.dose", "help.dose"]  # unknown dose
    assert program.reachable({"dose_mg": 0}) is False and program.reachable({"dose_mg": "many"}) is None


def test_eval_cond_on_numbers_is_three_valued():
    facets = {"n": FacetIR(name="n", bounds=(0, 9))}
    lt = Cond(op="<", facet="n", value=5)
    assert eval_cond(lt, {"n": 4}, facets) is True and eval_cond(lt, {"n": 5}, facets) is False
    assert eval_cond(lt, {}, facets) is None and eval_cond(lt, {"n": True}, facets) is None
    assert eval_cond(Cond(op="not", args=(Cond(op="==", facet="n", value=3),)), {"n": 3}, facets) is False
