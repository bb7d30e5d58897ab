"""Multi-turn, shared and explained examples in the IR and the few-shot preambles."""

from __future__ import annotations

import json

from cai_dsl.compile.compiler import compile_program
from cai_dsl.compile.ir import Program
from cai_dsl.lang.resolver import resolve

SOURCE = """\
constitution "ex"
example {
  turn user      "hi"
  turn assistant "hello"
  prompt   "p0"
  response "r0"
  critique "c0"
  revision "v0"
}
example compare {
  prompt "q0"
  a "x"
  b "y"
  better b
  request compare "Which is kinder?"
}
principle a.first {
  critique "Crit A."
  revise   "Rev A."
  compare  "Which is better for A?"
  example {
    prompt "p1"
    response "r1"
    request critique "Own crit."
    critique "c1"
    revision "v1"
  }
  example compare {
    turn user      "u"
    turn assistant "w"
    prompt "q1"
    a "A"
    b "B"
    better a
    rationale "A is right."
  }
}
principle b.second {
  critique "Crit B."
  revise   "Rev B."
}
deployment d {
  include *
  set few_shot = 3
}
"""


def _compile(tmp_path, text: str = SOURCE) -> Program:
    path = tmp_path / "ex.const"
    path.write_text(text, encoding="utf-8")
    constitution = resolve(str(path))
    assert not constitution.has_errors, [d.message for d in constitution.diagnostics if d.is_error]
    return compile_program(constitution, "d", "smollm2-cpu")


def test_shared_examples_come_first_with_their_dialogue(tmp_path):
    program = _compile(tmp_path)
    cr = program.critique_revision
    assert [(r.principle, r.example) for r in cr.few_shot] == [(None, 0), ("a.first", 0)]
    contents = [m.content for m in cr.preamble]
    assert [m.role for m in cr.preamble[:3]] == ["user", "assistant", "user"]
    assert contents[:3] == ["hi", "hello", "p0"]
    assert "Crit A." in contents[4] and "Rev A." in contents[6]  # a shared example: the pool's first principle
    assert "Own crit." in contents[10] and "Rev A." in contents[12]  # its own request, then its principle's
    assert len(contents) == 14
    assert program.examples[0].turns[1].content == "hello" and program.examples[0].critique_request is None
    assert program.principles[0].examples[0].critique_request == "Own crit."
    assert program.source_map["/examples/0/turns/0/content"] and program.source_map["/critique_revision/preamble/0/content"]


def test_comparison_turns_requests_and_rationale(tmp_path):
    program = _compile(tmp_path)
    cmp = program.comparison
    assert [(r.principle, r.example) for r in cmp.few_shot] == [(None, 0), ("a.first", 0)]
    shared_q, shared_a, own_q, own_a = (m.content for m in cmp.preamble)
    assert "Which is kinder?" in shared_q and shared_a == "The answer is: (B)"
    assert "Human: u\n\nAssistant: w\n\nHuman: q1" in own_q and "Which is better for A?" in own_q
    assert own_a == "Let's think step by step: A is right.\nTherefore, the answer is: (A)"
    (ex,) = program.principles[0].compare_examples
    assert ex.rationale == "A is right." and [t.role for t in ex.turns] == ["user", "assistant"]
    assert program.compare_examples[0].compare_request == "Which is kinder?"


def test_the_new_fields_serialise_only_when_used(tmp_path):
    program = _compile(tmp_path)
    data = json.loads(program.to_json())
    assert "turns" in data["examples"][0] and "critique_request" not in data["examples"][0]
    own = data["principles"][0]["examples"][0]
    assert "turns" not in own and own["critique_request"] == "Own crit." and "revision_request" not in own
    assert Program.from_json(program.to_json()) == program
    plain = _compile(tmp_path, 'principle a { critique "c" revise "r" }\ndeployment d { include * }\n')
    data = json.loads(plain.to_json())
    assert "examples" not in data and "compare_examples" not in data
