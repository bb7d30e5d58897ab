"""The program's `behaviors` section: the observable behaviors a deployment's principles use."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cai_dsl.compile.compiler import compile_program
from cai_dsl.compile.ir import BehaviorIR, Program
from cai_dsl.lang.resolver import resolve

REPO = Path(__file__).resolve().parents[2]

VOCAB = """\
facet risk: low < high
behavior refuse "declines the request" {
  marker  "I can't help with", "I cannot help with"
  pattern "\\\\bI won't\\\\b"
  judge   "Does the response decline the request?"
  opening "I can't help with that, because"
}
behavior partial_answer "answers the safe part" { judge "Does it answer the safe part?" }
behavior detailed_instructions
behavior caveat "states risks"
exclusive refuse, partial_answer, detailed_instructions
"""

MAIN = """\
import "vocab.const"
principle harm.decline {
  compare "Which of these responses declines the dangerous request more clearly?"
  when risk == high
  require refuse
  forbid detailed_instructions
}
principle help.caveats {
  compare "Which of these responses states the risks of the answer more clearly?"
  prefer caveat
}
deployment base { include * }
deployment narrow { include harm.* }
"""


@pytest.fixture
def constitution(tmp_path):
    (tmp_path / "vocab.const").write_text(VOCAB, encoding="utf-8")
    path = tmp_path / "main.const"
    path.write_text(MAIN, encoding="utf-8")
    return resolve(path)


def _program(constitution, deployment="base") -> Program:
    return compile_program(constitution, deployment, "smollm2-cpu", check=False)


def test_behaviors_used_by_the_principles_sorted_by_name(constitution):
    program = _program(constitution)
    assert [b.name for b in program.behaviors] == ["caveat", "detailed_instructions", "refuse"]
    assert [b.name for b in _program(constitution, "narrow").behaviors] == ["detailed_instructions", "refuse"]
    refuse = program.behavior("refuse")
    assert refuse == BehaviorIR(
        name="refuse",
        description="declines the request",
        markers=("I can't help with", "I cannot help with"),
        patterns=("\\bI won't\\b",),
        judges=("Does the response decline the request?",),
        openings=("I can't help with that, because",),
        exclusive_with=("detailed_instructions", "partial_answer"),
    )
    assert program.behavior("detailed_instructions") == BehaviorIR(
        name="detailed_instructions", exclusive_with=("partial_answer", "refuse")
    )
    assert program.behavior("caveat").exclusive_with == ()
    with pytest.raises(KeyError):
        program.behavior("partial_answer")


def test_source_map_points_at_each_string(constitution, tmp_path):
    program = _program(constitution)
    index = [b.name for b in program.behaviors].index("refuse")
    lines = VOCAB.splitlines()

    def text_at(pointer: str) -> str:
        (loc,) = program.source_locations(pointer)
        assert loc.file == "vocab.const" and loc.line == loc.end_line
        return lines[loc.line - 1][loc.column - 1 : loc.end_column - 1]

    base = f"/behaviors/{index}"
    assert text_at(f"{base}/description") == '"declines the request"'
    assert text_at(f"{base}/markers/1") == '"I cannot help with"'
    assert text_at(f"{base}/patterns/0") == '"\\\\bI won\'t\\\\b"'
    assert text_at(f"{base}/judges/0") == '"Does the response decline the request?"'
    assert text_at(f"{base}/openings/0") == "\"I can't help with that, because\""
    (decl,) = program.source_locations(f"{base}/name")
    assert (decl.line, decl.column) == (2, 1)
    assert program.source_locations(f"{base}/markers/2") == []


def test_round_trip_hash_and_determinism(constitution):
    program = _program(constitution)
    assert program.verify_hash()
    assert Program.from_json(program.to_json()) == program
    assert _program(constitution).to_json() == program.to_json()


def test_a_program_without_the_section_still_loads(constitution):
    data = json.loads(_program(constitution).to_json())
    data.pop("behaviors")
    assert Program.model_validate(data).behaviors == ()


def test_stdlib_programs_carry_observable_behaviors():
    constitution = resolve(REPO / "constitutions" / "harmless-helpful.const")
    name = next(iter(constitution.deployments))
    program = _program(constitution, name)
    used = {b for p in program.principles for b in (*p.requires, *p.forbids, *p.prefers)}
    assert {b.name for b in program.behaviors} == used
    assert all(b.judges for b in program.behaviors)
    refuse = program.behavior("refuse")
    assert refuse.openings == ("I can't help with that, because",) and refuse.markers
