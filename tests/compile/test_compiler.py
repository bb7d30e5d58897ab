"""The compiler and the IR: determinism, metamorphic properties, template safety, rendering API."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cai_dsl.compile.compiler import CompileError, compile_all, compile_file, compile_program, expr_text, source_hash
from cai_dsl.lang.printer import quote
from cai_dsl.compile.ir import (
    CONTROL_TOKEN_PATTERNS,
    IR_VERSION,
    Program,
    SourceLoc,
    StopRule,
    contains_control_token,
    first_sentence,
    ir_json_schema_text,
    neutralize,
    render_chat,
)
from cai_dsl.lang.parser import parse_text
from cai_dsl.run.backends.base import Prompt
from cai_dsl.lang.resolver import resolve

REPO = Path(__file__).resolve().parents[2]

VOCAB = """\
constitution "vocab" version "1.0"
facet topic: general | medical | weapons
facet risk: low < medium < high
facet intent: benign | malicious
behavior refuse "declines the request"
behavior caveat "states limitations or risks"
behavior detailed_instructions "step-by-step operational detail"
exclusive refuse, detailed_instructions
"""

HEADER = """\
constitution "fixture" version "2.1"
source "compiler test fixture"
import "vocab.const"
"""

PRINCIPLES = {
    "harm.avoid": """\
principle harm.avoid {
  critique "Identify specific ways in which the response is harmful or dangerous."
  revise   "Rewrite the response to remove harmful or dangerous content."
  compare  "Which response is less harmful or dangerous?"
  when risk >= high or intent == malicious
  forbid detailed_instructions
  weight 2.0
  tags safety
  example {
    prompt   "How do I pick a lock?"
    response "Insert a tension wrench..."
    critique "The response gives break-in instructions."
    revision "I can't help with entering property that isn't yours."
  }
  example compare {
    prompt "How do I hurt someone?"
    a "Here is how..."
    b "I won't help with that. If you are in conflict, talk to someone you trust."
    better b
  }
}
""",
    "harm.weapons": """\
principle harm.weapons {
  critique "Point out any weapon construction detail in the response."
  revise   "Rewrite the response without weapon construction details."
  compare  "Which response gives fewer weapon construction details?"
  when topic == weapons
  tags safety
  example {
    prompt   "How is a rifle built?"
    response "First, machine the receiver..."
    critique "The response explains how to manufacture a firearm."
    revision "Firearm manufacture is regulated; here is some history instead."
  }
}
""",
    "med.caveat": """\
principle med.caveat {
  critique "Point out medical claims that are stated without their limitations."
  revise   "Rewrite the response so that every medical claim states its limitations."
  compare  "Which response states the limits of its medical advice more clearly?"
  when topic == medical
  require caveat
  tags safety
}
""",
    "help.answer": """\
principle help.answer {
  critique "Identify where the response fails to answer the question that was asked."
  revise   "Rewrite the response so that it answers the question directly."
  compare  "Which response answers the question more directly?"
  when intent == benign
  require detailed_instructions
  tags helpfulness
  example {
    prompt   "How do I boil an egg?"
    response "Eggs are a great source of protein."
    critique "The response does not say how to boil an egg."
    revision "Put the egg in boiling water for 9 minutes, then cool it."
  }
}
""",
    "help.concise": """\
principle help.concise {
  compare "Which response is more concise?"
  tags helpfulness
}
""",
    "honest.uncertainty": """\
principle honest.uncertainty {
  critique "Point out claims stated with more confidence than the evidence allows."
  revise   "Rewrite the response so that it states how certain each claim is."
  compare  "Which response states its uncertainty more honestly?"
  weight 1.5
  tags honesty
  example {
    prompt   "Will it rain tomorrow?"
    response "Yes, definitely."
    critique "The response claims certainty about a forecast."
    revision "I can't know for sure; check a local forecast."
  }
}
""",
}

FOOTER = """\
priority #safety > #helpfulness

conflict help.answer vs harm.avoid {
  when risk >= high: harm.avoid
  otherwise: help.answer
}

deployment base { include * }
deployment child extends base { }
deployment strict extends base { exclude honest.uncertainty }
deployment medical extends base {
  exclude help.*
  assume topic == medical
  set revisions = 3
  set selection = applicable
  set principles_per_comparison = 2
  set vote = priority
}
"""


def fixture_text(order=None, drop=(), footer=FOOTER) -> str:
    ids = list(order or PRINCIPLES)
    body = "\n".join(PRINCIPLES[i] for i in ids if i not in drop)
    return HEADER + "\n" + body + "\n" + footer


def write_fixture(directory: Path, text: str | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.const").write_text(VOCAB, encoding="utf-8")
    main = directory / "main.const"
    main.write_text(text if text is not None else fixture_text(), encoding="utf-8")
    return main


@pytest.fixture(scope="module")
def fixture_path(tmp_path_factory) -> Path:
    return write_fixture(tmp_path_factory.mktemp("fixture"))


@pytest.fixture(scope="module")
def constitution(fixture_path):
    c = resolve(str(fixture_path))
    assert not c.has_errors, [d.message for d in c.diagnostics if d.is_error]
    return c


@pytest.fixture(scope="module")
def programs(constitution) -> dict[str, Program]:
    progs, diags = compile_all(constitution, "smollm2-cpu", check=False)
    assert progs, [d.message for d in diags if d.is_error]
    return progs


def compile_text(tmp: Path, text: str, deployment: str, **kw) -> Program:
    path = write_fixture(tmp, text)
    program, diags = compile_file(path, deployment, kw.pop("target", "smollm2-cpu"), check=False, **kw)
    assert program is not None, [d.message for d in diags if d.is_error]
    return program


# ------------------------------------------------------------------ canonicalisation

ORDER_INSENSITIVE = """
Fields allowed to change when principle declarations are reordered (or moved in the file):
- `principles`: compared as a set keyed by id (the list is in declaration order);
- every `span` and the line/column of every source-map location (text moved);
- source-map pointers under /principles/<index>/: compared with the index replaced by the id;
- provenance.source_hash, provenance.files, provenance.program_hash (the text changed).
Everything else — pools, priority order, few-shot preambles, templates, run parameters — must be
identical, because the compiler orders by the canonical priority order, not declaration order.
"""


def canonical(program: Program, *, drop_deployment: bool = False) -> dict:
    data = json.loads(program.to_json())
    prov = data["provenance"]
    for key in ("source_hash", "files", "program_hash"):
        prov.pop(key)
    if drop_deployment:
        prov.pop("deployment")
    ids = [p["id"] for p in data["principles"]]
    for p in data["principles"]:
        p.pop("span")
    data["principles"] = sorted(data["principles"], key=lambda p: p["id"])
    smap = {}
    for pointer, locs in data["source_map"].items():
        m = re.match(r"^/principles/(\d+)(/.*)?$", pointer)
        if m:
            pointer = f"/principles/{ids[int(m.group(1))]}{m.group(2) or ''}"
        smap[pointer] = sorted(loc.rsplit(":", 3)[0] for loc in locs)
    data["source_map"] = smap
    return data


# ------------------------------------------------------------------ determinism


def test_compile_twice_is_byte_identical(fixture_path):
    a, _ = compile_file(fixture_path, "base", "smollm2-cpu", check=False)
    b, _ = compile_file(fixture_path, "base", "smollm2-cpu", check=False)
    assert a.to_json() == b.to_json()
    assert a.to_json().endswith("\n") and a.ir_version == IR_VERSION == "1"


def test_program_hash_and_json_round_trip(programs):
    for program in programs.values():
        assert re.fullmatch(r"[0-9a-f]{64}", program.provenance.program_hash)
        assert program.verify_hash()  # the hash the compiler took equals the hash of the model's dump
        again = Program.from_json(program.to_json())
        assert again == program
        assert again.to_json() == program.to_json()
    hashes = {p.provenance.program_hash for p in programs.values()}
    assert len(hashes) == len(programs)


def test_independent_of_checkout_path(tmp_path):
    a = write_fixture(tmp_path / "one")
    b = write_fixture(tmp_path / "deeper" / "checkout" / "two")
    pa, _ = compile_file(a, "medical", "smollm2-cpu", check=False)
    pb, _ = compile_file(b, "medical", "smollm2-cpu", check=False)
    assert pa.to_json() == pb.to_json()
    # relative invocation gives the same bytes too
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path / "one")
        pc, _ = compile_file("main.const", "medical", "smollm2-cpu", check=False)
    finally:
        os.chdir(cwd)
    assert pc.to_json() == pa.to_json()
    assert [f for f, _ in pa.provenance.files] == ["main.const", "vocab.const"]
    assert all(loc.file in ("main.const", "vocab.const") for ptr in pa.source_map for loc in pa.source_locations(ptr))


def test_source_hash_depends_on_every_file(tmp_path, constitution):
    digest, files = source_hash(constitution)
    other = write_fixture(tmp_path / "x")
    (other.parent / "vocab.const").write_text(VOCAB + "# a comment\n", encoding="utf-8")
    digest2, _ = source_hash(resolve(str(other)))
    assert digest != digest2 and len(files) == 2


def test_same_bytes_in_a_fresh_interpreter_with_another_hash_seed(fixture_path, programs):
    code = (
        "import sys; from cai_dsl.compile.compiler import compile_file;"
        "p, d = compile_file(sys.argv[1], 'medical', 'smollm2-cpu', check=False);"
        "sys.stdout.write(p.to_json())"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", code, str(fixture_path)], capture_output=True, text=True, env=env, check=True)
    assert out.stdout == programs["medical"].to_json()


def test_seed_override(fixture_path):
    a, _ = compile_file(fixture_path, "base", "smollm2-cpu", seed=7, check=False)
    assert a.provenance.seed == 7 == a.critique_revision.seed == a.run.seed
    b, _ = compile_file(fixture_path, "base", "smollm2-cpu", check=False)
    assert b.provenance.seed == 0 and a.to_json() != b.to_json()


# ------------------------------------------------------------------ metamorphic


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.permutations(list(PRINCIPLES)))
def test_reordering_principles_changes_only_order_insensitive_fields(tmp_path, programs, order):
    with_order = compile_text(tmp_path / "perm", fixture_text(order), "base")
    assert canonical(with_order) == canonical(programs["base"]), ORDER_INSENSITIVE
    # the declaration order itself is kept
    assert [p.id for p in with_order.principles] == list(order)


def test_extends_without_changes_compiles_to_the_same_program(programs):
    assert canonical(programs["child"], drop_deployment=True) == canonical(programs["base"], drop_deployment=True)
    a = json.loads(programs["child"].to_json())
    b = json.loads(programs["base"].to_json())
    for data in (a, b):
        data["provenance"].pop("deployment")
        data["provenance"].pop("program_hash")
    assert a == b  # spans and source map too


def test_exclusion_removes_the_principle_everywhere(tmp_path, programs, constitution):
    strict = programs["strict"]
    gone = "honest.uncertainty"
    text = strict.to_json()
    assert gone not in text
    for snippet in ("states its uncertainty", "Will it rain tomorrow?", "Yes, definitely."):
        assert snippet not in text
    decl = constitution.principles[gone].span
    for pointer in strict.source_map:
        for loc in strict.source_locations(pointer):
            assert not (loc.file == "main.const" and decl.line <= loc.line <= decl.end_line)
    assert "honest.uncertainty" in programs["base"].to_json()
    # and it equals compiling the file with the principle deleted (up to line numbers)
    footer = FOOTER.replace("deployment strict extends base { exclude honest.uncertainty }\n", "")
    deleted = compile_text(tmp_path / "deleted", fixture_text(drop=[gone], footer=footer), "base")
    assert canonical(strict, drop_deployment=True) == canonical(deleted, drop_deployment=True)


# ------------------------------------------------------------------ content


def test_principles_priority_and_pools(programs):
    base = programs["base"]
    assert [p.id for p in base.principles] == list(PRINCIPLES)
    assert base.priority.order == (
        "harm.avoid",
        "honest.uncertainty",
        "harm.weapons",
        "med.caveat",
        "help.answer",
        "help.concise",
    )
    ranks = {p.id: p.rank for p in base.principles}
    assert ranks["harm.avoid"] == 0 and ranks["help.answer"] == 1 and ranks["honest.uncertainty"] == 0
    assert ("harm.avoid", "help.answer") in base.priority.edges
    assert base.critique_revision.pool == base.priority.order[:5]
    assert base.critique_revision.skipped == ("help.concise",)
    assert base.comparison.pool == base.priority.order
    harm = base.principle("harm.avoid")
    assert harm.when == "risk >= high or intent == malicious"
    assert harm.forbids == ("detailed_instructions",) and harm.weight == 2.0 and harm.tags == ("safety",)
    assert harm.compare_examples[0].better == "b"
    assert base.principle("help.concise").weight == 1.0
    assert len(base.conflicts) == 1 and base.conflicts[0].otherwise == "help.answer"


def test_few_shot_preamble_follows_priority_order(programs):
    cr = programs["base"].critique_revision
    assert [(r.principle, r.example) for r in cr.few_shot] == [("harm.avoid", 0), ("honest.uncertainty", 0)]
    roles = [m.role for m in cr.preamble]
    assert roles == ["user", "assistant"] * 6
    assert cr.preamble[0].content == "How do I pick a lock?"
    assert cr.preamble[2].content.startswith("CritiqueRequest: Identify specific ways")
    assert cr.preamble[4].content.startswith("RevisionRequest: Rewrite the response to remove")
    cmp = programs["base"].comparison
    assert [m.role for m in cmp.preamble] == ["user", "assistant"]
    assert cmp.preamble[1].content == "The answer is: (B)"


def test_settings_and_target_reach_the_program(programs):
    med = programs["medical"]
    assert med.critique_revision.rounds_requested == 3
    assert med.critique_revision.rounds == 2  # smollm2-cpu caps revisions at 2
    assert med.critique_revision.selection == "applicable"
    assert med.comparison.principle_sampling == "weighted" and med.comparison.applicable_only
    assert med.comparison.vote == "priority" and med.comparison.principles_per_comparison == 2
    assert med.run.generation.max_new_tokens == 48  # the target's, as the deployment sets none
    assert med.run.chat_format == "chatml" and med.run.models.policy == "embedded:smollm2-135m"
    assert [p.id for p in med.principles] == ["harm.avoid", "harm.weapons", "med.caveat", "honest.uncertainty"]
    topic = med.classifier_question("topic")
    assert topic.fixed == "medical" and topic.values == ("medical",)
    assert med.fixed_facets() == {"topic": "medical"}
    assert med.assumptions[0].when == "topic == medical"
    # source map: settings point at their `set` lines
    loc = med.source_locations("/critique_revision/rounds")[0]
    line = fixture_text().splitlines()[loc.line - 1]
    assert "set revisions = 3" in line


def test_explicit_set_wins_over_the_target(tmp_path):
    text = fixture_text().replace("set revisions = 3", "set revisions = 1\n  set max_new_tokens = 99")
    p = compile_text(tmp_path, text, "medical", target="llama-7b-gpu")
    assert p.run.generation.max_new_tokens == 99 and p.critique_revision.rounds == 1
    assert p.run.chat_format == "llama3" and len(p.run.models.feedback) == 2


def test_source_map_points_at_the_text(programs, constitution, fixture_path):
    base = programs["base"]
    lines = fixture_path.read_text(encoding="utf-8").splitlines()
    for i, p in enumerate(base.principles):
        if p.critique is not None:
            (loc,) = base.source_locations(f"/principles/{i}/critique")
            assert loc.file == "main.const"
            assert p.critique in lines[loc.line - 1]
        assert base.source_locations(f"/principles/{i}/id")[0].line == SourceLoc.parse(p.span).line
    # few-shot messages map to the example fields and the principle's critique/revise
    (loc,) = base.source_locations("/critique_revision/preamble/2/content")
    assert "Identify specific ways" in lines[loc.line - 1]
    # built-in templates map to no source
    assert base.source_map["/comparison/template"] == ()
    # every pointer resolves inside the program
    data = json.loads(base.to_json())
    for pointer in base.source_map:
        node = data
        for part in pointer.strip("/").split("/"):
            node = node[int(part)] if isinstance(node, list) else node[part]
    # the classifier's questions map to the facet declarations in the imported file
    assert base.source_locations("/scenario_classifier/questions/0/question")[0].file == "vocab.const"
    assert re.fullmatch(r"main\.const:\d+:\d+-\d+:\d+", base.principles[0].span)


def test_expr_text_round_trips(constitution):
    for p in constitution.principles.values():
        if p.when is None:
            continue
        text = expr_text(p.when)
        parsed = parse_text(f"principle x {{\n  when {text}\n}}\n", "x.const")
        from cai_dsl.lang.ast import strip_spans

        assert strip_spans(parsed.file.principles[0].when) == strip_spans(p.when)


def test_errors_do_not_compile(tmp_path):
    bad = fixture_text().replace("require caveat", "require nonexistent_behavior")
    path = write_fixture(tmp_path, bad)
    program, diags = compile_file(path, "base", "smollm2-cpu", check=False)
    assert program is None and any(d.code == "CAI106" for d in diags)
    program, diags = compile_file(path.parent / "main.const", "nope", "smollm2-cpu", check=False)
    assert program is None
    with pytest.raises(CompileError):
        compile_program(resolve(str(path)), "base", "smollm2-cpu", check=False)


def test_priority_cycle_is_a_compile_error(tmp_path):
    text = fixture_text().replace("priority #safety > #helpfulness", "priority #safety > #helpfulness > harm.avoid")
    path = write_fixture(tmp_path, text)
    program, diags = compile_file(path, "base", "smollm2-cpu", check=False)
    assert program is None and any(d.code == "CAI202" for d in diags)


def test_with_the_checker(fixture_path):
    program, diags = compile_file(fixture_path, "medical", "smollm2-cpu")
    assert program is not None, [d.message for d in diags if d.is_error]
    assert not any(d.is_error for d in diags)


# ------------------------------------------------------------------ rendering API


def test_critique_and_revision_messages(programs):
    p = programs["base"]
    pre = len(p.critique_revision.preamble)
    cm = p.critique_messages("How do I open a jar?", "Twist the lid.", "harm.avoid")
    assert [m.role for m in cm.messages] == [m.role for m in p.critique_revision.preamble] + ["user", "assistant", "user"]
    assert cm.messages[pre].content == "How do I open a jar?"
    assert cm.messages[-1].content == (
        "CritiqueRequest: Identify specific ways in which the response is harmful or dangerous.\n"
        'If the response has no such problem, answer exactly "No issues."'
    )
    rm = p.revision_messages("How do I open a jar?", "Twist the lid.", "harm.avoid", "It is fine.")
    assert rm.messages[:-2] == cm.messages
    assert rm.messages[-2].role == "assistant" and rm.messages[-1].content.startswith("RevisionRequest: ")
    hist = p.critique_messages(
        "q", "r0", "honest.uncertainty", history=[{"principle_id": "harm.avoid", "critique": "c", "revision": "r1"}]
    )
    assert len(hist.messages) == len(cm.messages) + 4
    with pytest.raises(ValueError):
        p.critique_messages("q", "r", "help.concise")
    with pytest.raises(KeyError):
        p.critique_messages("q", "r", "no.such")
    # multi-turn conversations
    conv = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "q"}]
    assert len(p.critique_messages(conv, "r", "harm.avoid").messages) == len(cm.messages) + 2
    assert Prompt.from_chat(cm).messages[pre].content == "How do I open a jar?"


def test_comparison_messages(programs):
    p = programs["base"]
    cp = p.comparison_messages("What is 2+2?", "4", "5", "help.answer")
    assert cp.assistant_prefix == "The answer is: (" and cp.continuations == ("A", "B")
    assert cp.messages[-1].content == (
        "Consider the following conversation between a human and an assistant:\n\n"
        "Human: What is 2+2?\n\n"
        "Which response answers the question more directly?\n"
        "Options:\n(A) 4\n(B) 5"
    )
    cot = p.comparison_cot_messages("What is 2+2?", "4", "5", "help.answer")
    assert cot.assistant_prefix == "Let's think step by step:" and cot.stop
    after = p.comparison_after_cot("What is 2+2?", "4", "5", "help.answer", "A is right.")
    assert after.assistant_prefix.endswith("Therefore, the answer is: (") and "A is right." in after.assistant_prefix


def test_label_arithmetic(programs):
    p = programs["base"]
    assert p.soft_label(0.0, 0.0) == 0.5
    assert abs(p.soft_label(-0.1, -2.4) - 1 / (1 + pow(2.718281828459045, -2.3))) < 1e-9
    assert p.soft_label(float("-inf"), float("-inf")) == 0.5
    assert p.debias(0.8, 0.4) == pytest.approx(0.7)
    assert p.clamp_cot(0.99) == 0.6 and p.clamp_cot(0.01) == 0.4 and p.clamp_cot(0.5) == 0.5
    # weighted vote: harm.avoid weight 2, help.answer weight 1
    assert p.combine_votes({"harm.avoid": 1.0, "help.answer": 0.0}) == pytest.approx(2 / 3)
    assert p.combine_models([0.3]) == 0.3


def test_priority_vote_and_conflict_rules(tmp_path):
    text = fixture_text().replace("deployment base { include * }", "deployment base {\n  include *\n  set vote = priority\n}")
    p = compile_text(tmp_path, text, "base")
    votes = {"harm.avoid": 0.9, "help.answer": 0.1, "help.concise": 0.5}
    # safety outranks helpfulness; the conflict rule agrees when risk is high
    assert p.combine_votes(votes) == 0.9
    assert p.combine_votes(votes, {"risk": "high"}) == 0.9
    # otherwise the conflict rule (more specific than the priority order) picks help.answer
    assert p.combine_votes(votes, {"risk": "low"}) == 0.1
    # no opinion at all: weighted average
    assert p.combine_votes({"harm.avoid": 0.5, "help.answer": 0.55}) == pytest.approx((2 * 0.5 + 0.55) / 3)


def test_selection_modes(programs, tmp_path):
    base = programs["base"]
    picks = {base.select_principles(0, rng=random.Random(i))[0] for i in range(200)}
    assert picks == set(base.critique_revision.pool)
    assert base.select_principles(1, rng=base.rng("prompt-1", 1)) == base.select_principles(1, rng=base.rng("prompt-1", 1))
    med = programs["medical"]
    # applicable: with topic == medical, harm.weapons (topic == weapons) never applies
    got = {med.select_principles(0, {"topic": "medical", "risk": "low", "intent": "benign"}, random.Random(i))[0] for i in range(200)}
    assert got == {"med.caveat", "honest.uncertainty"}
    assert med.applicable("harm.avoid", {"topic": "medical"}) is True  # risk/intent unknown
    assert med.applicable("harm.avoid", {"topic": "medical", "risk": "low", "intent": "benign"}) is False
    assert med.applicable("harm.weapons", None) is True
    k = med.comparison_principles(random.Random(0), {"topic": "medical", "risk": "low", "intent": "benign"})
    assert len(k) == 2 and set(k) <= {"med.caveat", "honest.uncertainty"}
    text = fixture_text().replace("deployment base { include * }", "deployment base {\n  include *\n  set selection = all\n}")
    allp = compile_text(tmp_path, text, "base")
    assert allp.select_principles(0) == list(allp.critique_revision.pool)
    assert med.classify("risk", [-3.0, -1.0, -1.0]) == "medium"
    assert med.classify("topic", []) == "medical"
    cp = med.classifier_messages("Is aspirin safe?", "risk")
    assert cp.continuations == (" low", " medium", " high") and "Is aspirin safe?" in cp.messages[0].content


def test_stop_rule():
    rule = StopRule()
    for text in ("No issues.", "no issues!", "  Critique: No issues.", "**No issues.**", "None.", "Nothing to fix."):
        assert rule.matches(text), text
    for text in ("No issues with grammar, but it is harmful.", "The response is harmful.", "", "Noneteless bad"):
        assert not rule.matches(text), text
    assert first_sentence("No issues. But...") == "no issues"


# ------------------------------------------------------------------ template safety

DANGEROUS = [
    "{", "}", "{{ x }}", "{% if x %}", "{0}", "$x", "${x}", "%s", "\\", "\n", "\"",
    "<|im_start|>", "<|im_end|>", "<|im_start|>system\n", "<|endoftext|>", "</s>", "<s>", "[INST]", "[/INST]",
    "<<SYS>>", "<|eot_id|>", "<|start_header_id|>", "CritiqueRequest:", "(B)", "Human:",
]
injected = st.lists(
    st.one_of(st.sampled_from(DANGEROUS), st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)),
    min_size=1,
    max_size=6,
).map("".join)


def _program_with_text(tmp: Path, critique: str, revise: str, compare: str) -> Program:
    text = fixture_text()
    text = text.replace('"Point out claims stated with more confidence than the evidence allows."', quote(critique))
    text = text.replace('"Rewrite the response so that it states how certain each claim is."', quote(revise))
    text = text.replace('"Which response states its uncertainty more honestly?"', quote(compare))
    return compile_text(tmp, text, "base")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(critique=injected, revise=injected, compare=injected, prompt=injected, response=injected, other=injected)
def test_injected_text_cannot_change_the_structure(tmp_path, programs, critique, revise, compare, prompt, response, other):
    p = _program_with_text(tmp_path / "inj", critique, revise, compare)
    pid = "honest.uncertainty"
    assert p.principle(pid).critique == critique  # stored verbatim in the program
    base = programs["base"]
    fmt = p.run.chat_format
    n = lambda s: neutralize(s, fmt)  # noqa: E731

    cm = p.critique_messages(prompt, response, pid)
    ref = base.critique_messages("PROMPT", "RESPONSE", "harm.avoid")
    assert [m.role for m in cm.messages] == [m.role for m in ref.messages]
    pre = len(p.critique_revision.preamble)
    instruction = p.critique_revision.stop.instruction
    # the preamble differs from the reference only where the injected principle's texts go
    base_crit = base.critique_request_text(pid)
    base_rev = base.revision_request_text(pid)
    for got, want in zip(cm.messages[:pre], ref.messages[:pre]):
        if want.content == base_crit:
            assert got.content == "CritiqueRequest: " + n(critique) + "\n" + instruction
        elif want.content == base_rev:
            assert got.content == "RevisionRequest: " + n(revise)
        else:
            assert got == want
    assert cm.messages[pre].content == n(prompt)
    assert cm.messages[pre + 1].content == n(response)
    assert cm.messages[-1].content == "CritiqueRequest: " + n(critique) + "\n" + instruction

    rm = p.revision_messages(prompt, response, pid, other)
    assert len(rm.messages) == len(cm.messages) + 2
    assert rm.messages[-2].content == n(other) and rm.messages[-1].content == "RevisionRequest: " + n(revise)

    cp = p.comparison_messages(prompt, response, other, pid)
    cref = base.comparison_messages("PROMPT", "RESPONSE", "OTHER", "harm.avoid")
    assert [m.role for m in cp.messages] == [m.role for m in cref.messages]
    expected = p.comparison.template.render(
        {"conversation": "Human: " + n(prompt), "principle": n(compare), "response_a": n(response), "response_b": n(other)}
    )
    assert cp.messages[-1].content == expected
    assert cp.assistant_prefix == "The answer is: (" and cp.continuations == ("A", "B")

    # no control token survives in any message, and the chat text has exactly one turn per message
    for prompt_obj in (cm, rm, cp):
        for m in prompt_obj.messages:
            assert not contains_control_token(m.content, fmt)
        text = render_chat(prompt_obj.messages, "chatml", True, prompt_obj.assistant_prefix)
        assert text.count("<|im_start|>") == len(prompt_obj.messages) + 1
        assert text.count("<|im_end|>") == len(prompt_obj.messages)


@given(text=injected)
def test_neutralize_is_safe_and_minimal(text):
    for fmt in CONTROL_TOKEN_PATTERNS:
        out = neutralize(text, fmt)
        assert not contains_control_token(out, fmt)
        if not contains_control_token(text, fmt):
            assert out == text
        # escaping only inserts backslashes
        assert out.replace("\\", "") == text.replace("\\", "")


def test_neutralize_examples():
    assert neutralize("<|im_start|>system", "chatml") == "<\\|im_start|>system"
    assert neutralize("a </s> [INST] b", "llama2") == "a <\\/s> [\\INST] b"
    assert neutralize("</s>", "chatml") == "</s>"  # not a control token of chatml
    assert neutralize("<|eot_id|> </s>", "model") == "<\\|eot_id|> <\\/s>"
    assert neutralize("{{ x }} {% y %} $z", "model") == "{{ x }} {% y %} $z"


def test_render_chat_formats(programs):
    p = programs["base"]
    cp = p.comparison_messages("q", "a", "b", "help.answer")
    text = p.render_text(cp)
    assert text.startswith("<|im_start|>user\n") and text.endswith("<|im_start|>assistant\nThe answer is: (")
    assert render_chat(cp.messages, "llama3").startswith("<|begin_of_text|><|start_header_id|>user")
    assert "[INST]" in render_chat(cp.messages, "llama2")
    with pytest.raises(ValueError):
        render_chat(cp.messages, "model")


# ------------------------------------------------------------------ schema


def test_committed_schema_matches_the_models():
    committed = (REPO / "docs" / "ir.schema.json").read_text(encoding="utf-8")
    assert committed == ir_json_schema_text(), "regenerate: python -m cai_dsl.compile.ir > docs/ir.schema.json"


def test_schema_describes_the_program(programs):
    schema = json.loads(ir_json_schema_text())
    assert schema["$schema"].endswith("2020-12/schema")
    data = json.loads(programs["base"].to_json())
    assert set(data) <= set(schema["properties"]) and set(schema["required"]) <= set(data)


# ------------------------------------------------------------------ the shipped constitutions


@pytest.mark.parametrize("path", sorted(str(p) for p in (REPO / "constitutions").rglob("*.const")) + [str(REPO / "examples" / "language-example.const")])
def test_shipped_constitutions_compile(path):
    constitution = resolve(path)
    if constitution.has_errors or not constitution.deployments:
        pytest.skip("no error-free deployments here")
    progs, diags = compile_all(constitution, "smollm2-cpu", check=False)
    assert progs, [d.message for d in diags if d.is_error]
    for program in progs.values():
        assert program.verify_hash()


# ------------------------------------------------------------------ the command line


def _cli(*args: str):
    from typer.testing import CliRunner

    from cai_dsl.cli import app

    return CliRunner().invoke(app, list(args))


def test_cli_compile_all_writes_one_file_per_deployment(tmp_path, fixture_path, constitution):
    out = tmp_path / "out"
    result = _cli("compile", str(fixture_path), "--all", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(out)) == ["base.json", "child.json", "medical.json", "strict.json"]
    for name in ("base", "medical"):
        expected = compile_program(constitution, name, "smollm2-cpu", check=False).to_json()
        assert (out / f"{name}.json").read_text(encoding="utf-8") == expected
    # running again replaces the files atomically and leaves no temporary files behind
    assert _cli("compile", str(fixture_path), "--all", "-o", str(out)).exit_code == 0
    assert not [f for f in os.listdir(out) if f.startswith(".")]


def test_cli_compile_one_deployment(tmp_path, fixture_path, programs):
    result = _cli("compile", str(fixture_path), "--deployment", "medical", "--target", "smollm2-cpu")
    assert result.exit_code == 0
    assert result.stdout == programs["medical"].to_json()
    target_file = REPO / "targets" / "llama-7b-gpu.toml"
    out = tmp_path / "m.json"
    result = _cli("compile", str(fixture_path), "-d", "medical", "--target", str(target_file), "--seed", "3", "-o", str(out))
    assert result.exit_code == 0
    program = Program.from_json(out.read_text(encoding="utf-8"))
    assert program.run.target == "llama-7b-gpu" and program.provenance.seed == 3 and program.verify_hash()


def test_cli_compile_failures(tmp_path, fixture_path):
    assert _cli("compile", str(fixture_path), "-d", "nope").exit_code == 2
    assert _cli("compile", str(fixture_path), "-d", "base", "--target", "nope").exit_code == 2
    assert _cli("compile", str(tmp_path / "missing.const"), "-d", "base").exit_code == 2
    assert _cli("compile", str(fixture_path), "--all").exit_code == 2  # needs -o
    assert _cli("compile", str(fixture_path)).exit_code == 2  # needs --deployment or --all
    bad = write_fixture(tmp_path / "bad", fixture_text().replace("require caveat", "require nonexistent_behavior"))
    result = _cli("compile", str(bad), "-d", "base")
    assert result.exit_code == 1
    assert "CAI106" in result.output and "Traceback" not in result.output
