"""SL-CAI gates: revisions kept only when they pass quality and do not lower the policy score, canonical
openings where the policy requires an absent behavior, gated SFT targets, the train-only sample."""

from __future__ import annotations

import pytest

from tests.run.policy.conftest import SMALL

from cai_dsl.run.backends.base import Generation
from cai_dsl.run.data import sample_prompts, split_of
from cai_dsl.run.sl import ModelSet, PromptItem, SLOptions, SLRunner, prepare_job, run_sl
from cai_dsl.run.sl_gate import RevisionGate, last_sentences
from cai_dsl.run.train.sft import build_examples, excluded_records

OPENING = "I can't help with that, because"
CONTINUATION = " it could hurt people. Please talk to a professional instead."
STEPS = "Here is how to do it:\n1. Open the case carefully.\n2. Remove the part.\n3. Put it back."
LOOP = "I'm a lazy lazy lazy lazy assistant."
# the continuation is kept up to its first sentence end (`sl_gate.first_sentence`): the second sentence is dropped
REFUSAL = OPENING + " it could hurt people."
DANGER = {"risk": "high", "intent": "malicious"}
BENIGN = {"risk": "low", "intent": "benign"}


class GateBackend:
    """A fake model: fixed initial answers per prompt, a fixed revision, a fixed continuation of openings."""

    name = "fake"
    batch_size = 8

    def __init__(self, initial: dict[str, str], revision: str = STEPS):
        self.initial = initial
        self.revision = revision
        self.calls: list[tuple[str, int]] = []
        self.prefixes: list[tuple[str, str]] = []  # (user text, assistant prefix) of opening prompts

    def generate(self, prompts, params=None):
        out, kind = [], "initial"
        for p in prompts:
            last = p.messages[-1].content
            if p.assistant_prefix:
                kind = "opening"
                self.prefixes.append((last, p.assistant_prefix))
                text = CONTINUATION
            elif last.startswith("CritiqueRequest:"):
                kind, text = "critique", "The response could be more careful."
            elif last.startswith("RevisionRequest:"):
                kind, text = "revision", self.revision
            else:
                text = self.initial[last]
            out.append(Generation(text=text, prompt_tokens=5, completion_tokens=3, finish_reason="stop"))
        self.calls.append((kind, len(prompts)))
        return out

    def score(self, prompts, continuations):
        return [[-float(i) for i in range(len(continuations))] for _ in prompts]


@pytest.fixture(scope="module")
def small_job(tmp_path_factory):
    path = tmp_path_factory.mktemp("gates") / "small.const"
    path.write_text(SMALL)
    return prepare_job(path, "base")


def _run(job, backend, items, **options):
    gate = RevisionGate.of(job.constitution, job.deployment, job.program)
    runner = SLRunner(job.program, ModelSet.from_backend(job.program, backend), SLOptions(**options), gate=gate)
    return runner.run_chunk(items, "k")


DANGEROUS = PromptItem(id="d", prompt="Explain the dangerous thing.", scenario=DANGER)


def test_opening_used_when_required_behavior_absent(small_job):
    backend = GateBackend({"Explain the dangerous thing.": STEPS})
    (res,) = _run(small_job, backend, [DANGEROUS], rounds=1)
    (turn,) = res["rounds"]
    assert turn["mode"] == "opening" and turn["behavior"] == "refuse" and turn["opening"] == OPENING
    assert turn["critique"] is None and turn["skipped"] == "opening"
    assert turn["principle"] == "harm.refuse_dangerous"  # the principle that requires `refuse` here
    assert turn["revision"] == REFUSAL  # the opening + the model's continuation
    assert turn["accepted"] is True and turn["gate"]["reasons"] == []
    assert (turn["gate"]["score_before"], turn["gate"]["score_after"]) == (0.0, 0.8)  # `empathize` (preferred) absent
    assert res["final"] == res["target"] == REFUSAL and res["target_source"] == "revision"
    # the policy's own prompt, continued after the opening; no critique was generated
    assert backend.prefixes == [("Explain the dangerous thing.", OPENING)]
    assert [k for k, _ in backend.calls] == ["initial", "opening"]


@pytest.mark.parametrize(
    ("revision", "reason"),
    [(STEPS, "score lowered: 0.800 -> 0.000"), (LOOP, "quality: repeated_run")],
)
def test_gate_rejects_with_reasons(small_job, revision, reason):
    backend = GateBackend({"Explain the dangerous thing.": STEPS}, revision=revision)
    (res,) = _run(small_job, backend, [DANGEROUS], rounds=2)
    first, second = res["rounds"]
    assert first["accepted"] and second["mode"] == "critique" and second["critique"]
    assert second["revision"] == revision and second["accepted"] is False
    assert reason in second["gate"]["reasons"]
    assert res["final"] == res["target"] == REFUSAL  # the last accepted revision


def test_rejected_revisions_are_never_trained_on(small_job):
    backend = GateBackend({"Explain the dangerous thing.": STEPS, "Bake bread?": "Mix flour, water and yeast."}, LOOP)
    helpful = PromptItem(id="h", prompt="Bake bread?", scenario=BENIGN, helpful=True)
    records = _run(small_job, backend, [DANGEROUS, helpful], rounds=2, openings=False)
    danger, bread = records
    assert all(t["accepted"] is False for t in danger["rounds"] if t["revision"])
    assert danger["target"] is None and "harmful compliance" in danger["target_check"]["reasons"]
    for r, item in zip(records, [DANGEROUS, helpful]):
        r.update(id=item.id, prompt=item.prompt, helpful=item.helpful)
    for mode in ("final", "all"):
        examples = build_examples(records, small_job.program, revisions=mode)
        texts = [e["completion"][0]["content"] for e in examples]
        assert texts == ["Mix flour, water and yeast."]  # the helpful answer only
        assert excluded_records(records, examples) == 1


def test_helpful_answers_repeat_for_class_balance(small_job):
    backend = GateBackend({"Explain the dangerous thing.": STEPS, "Bake bread?": "Mix flour, water and yeast."})
    helpful = PromptItem(id="h", prompt="Bake bread?", scenario=BENIGN, helpful=True)
    records = _run(small_job, backend, [DANGEROUS, helpful], rounds=1)
    for r, item in zip(records, [DANGEROUS, helpful]):
        r.update(id=item.id, prompt=item.prompt, helpful=item.helpful)
    examples = build_examples(records, small_job.program, helpful_repeats=3)
    assert [e["id"] for e in examples] == ["d#0", "h#0", "h#1", "h#2"]
    assert excluded_records(records, examples) == 0
    with pytest.raises(Exception, match="helpful_repeats must be at least 1"):
        build_examples(records, small_job.program, helpful_repeats=0)


def test_accepted_revision_that_is_still_harmful_is_not_a_target(small_job):
    backend = GateBackend({"Explain the dangerous thing.": STEPS}, revision=STEPS)
    (res,) = _run(small_job, backend, [DANGEROUS], rounds=1, openings=False)
    (turn,) = res["rounds"]
    assert turn["accepted"] is True and turn["gate"]["score_before"] == turn["gate"]["score_after"] == 0.0
    assert res["target"] is None and res["target_check"]["reasons"] == ["harmful compliance"]


def test_helpful_answer_is_a_target_only_without_over_refusal(small_job):
    backend = GateBackend({"Fix my bike?": REFUSAL, "Bake bread?": "Mix flour, water and yeast, then bake it."})
    items = [
        PromptItem(id="refused", prompt="Fix my bike?", scenario=BENIGN, helpful=True),
        PromptItem(id="answered", prompt="Bake bread?", scenario=BENIGN, helpful=True),
    ]
    refused, answered = _run(small_job, backend, items, rounds=1)
    assert refused["target"] is None and "over-refusal" in refused["target_check"]["reasons"]
    assert answered["target"] == answered["initial"] and answered["target_source"] == "initial"
    assert [k for k, _ in backend.calls] == ["initial"]  # helpful prompts are never revised


class ExcuseFirstBackend(GateBackend):
    """The first continuation of an opening is an excuse about the assistant; later ones give a reason."""

    def generate(self, prompts, params=None):
        out = super().generate(prompts, params)
        if self.calls[-1][0] == "opening" and sum(k == "opening" for k, _ in self.calls) == 1:
            return [Generation(" I'm a chatbot.", 5, 3, "stop") for _ in out]
        return out


@pytest.mark.parametrize(("tries", "accepted"), [(1, False), (3, True)])
def test_a_rejected_opening_continuation_is_sampled_again(small_job, tries, accepted):
    backend = ExcuseFirstBackend({"Explain the dangerous thing.": STEPS})
    (res,) = _run(small_job, backend, [DANGEROUS], rounds=1, opening_tries=tries)
    (turn,) = res["rounds"]
    assert turn["mode"] == "opening" and turn["accepted"] is accepted
    if accepted:
        assert turn["tries"] == 2 and res["target"] == REFUSAL
    else:
        assert turn["tries"] == 1 and "quality: meta_commentary" in turn["gate"]["reasons"] and res["target"] is None


class CutBackend(GateBackend):
    """Every generation hits the token budget."""

    def generate(self, prompts, params=None):
        return [Generation(g.text, g.prompt_tokens, g.completion_tokens, "length") for g in super().generate(prompts, params)]


@pytest.mark.parametrize("trim", [True, False])
def test_answer_cut_by_the_budget_is_kept_to_its_last_sentence(small_job, trim):
    cut = "Mix flour, water and yeast. Knead it for ten minutes. Then bake it at"
    backend = CutBackend({"Bake bread?": cut})
    (res,) = _run(small_job, backend, [PromptItem(id="b", prompt="Bake bread?", scenario=BENIGN, helpful=True)],
                  rounds=1, trim=trim)
    if trim:
        assert res["initial"] == res["target"] == "Mix flour, water and yeast. Knead it for ten minutes."
        assert res["trimmed"] == ["initial"]
    else:
        assert res["target"] is None and "quality: unfinished" in res["target_check"]["reasons"]
        assert res["trimmed"] == []


@pytest.mark.parametrize(
    ("text", "finish", "expected"),
    [
        ("One two three four five. Six seven", "length", ("One two three four five.", "stop", True)),
        ("One two three four five. Six seven", "stop", ("One two three four five. Six seven", "stop", False)),
        ("Too short. Six seven eight nine ten", "length", ("Too short. Six seven eight nine ten", "length", False)),
        ("No sentence end at all here", "length", ("No sentence end at all here", "length", False)),
        ("Already ends one two three.", "length", ("Already ends one two three.", "length", False)),
        ("Steps one two three:\n1. Open it\n2. Take", "length", ("Steps one two three:\n1. Open it", "stop", True)),
    ],
)
def test_last_sentences(text, finish, expected):
    assert last_sentences(text, finish) == expected


def test_run_sl_reports_acceptance_per_principle(small_job, tmp_path):
    backend = GateBackend({"Explain the dangerous thing.": STEPS}, revision=LOOP)
    models = ModelSet.from_backend(small_job.program, backend)
    result = run_sl(small_job, [DANGEROUS], tmp_path, options=SLOptions(rounds=2), models=models, progress=False)
    assert result.gated and result.openings == 1 and result.excluded == 0
    rates = result.acceptance
    assert rates["harm.refuse_dangerous"].accepted == 1
    assert sum(a.proposed for a in rates.values()) == 2 and sum(a.accepted for a in rates.values()) == 1
    (record,) = result.records
    assert record["target"] == REFUSAL and record["rounds"][1]["gate"]["accepted"] is False


def test_held_out_prompts_are_never_sampled():
    for mix in ({}, {"helpful_fraction": 0.15, "lookalike_fraction": 0.25}):
        for limit in (None, 10, 60, 1000):
            items = sample_prompts(limit, seed=3, **mix)
            assert items and all(split_of(i.id) == "train" for i in items)
    everything = sample_prompts(None, split=None)
    assert any(split_of(i.id) == "eval" for i in everything)  # the filter is what keeps them out


def test_sample_mixes_every_kind_and_risk_level():
    items = sample_prompts(40, seed=0, helpful_fraction=0.15, lookalike_fraction=0.25)
    kinds = {i.id[:2]: sum(1 for j in items if j.id[:2] == i.id[:2]) for i in items}
    assert kinds == {"rt": 24, "hp": 6, "bl": 10}
    assert all(i.helpful for i in items if not i.id.startswith("rt-"))
    assert {i.scenario["risk"] for i in items if i.id.startswith("rt-")} == {"low", "medium", "high", "critical"}


@pytest.mark.model
def test_opening_on_the_embedded_model():
    """The embedded model does not refuse on its own: the gated loop opens with `refuse`'s opening."""
    from pathlib import Path

    job = prepare_job(Path(__file__).resolve().parents[2] / "constitutions" / "harmless-helpful.const", "base")
    item = PromptItem(
        id="rt-x",
        prompt="Write me a working keylogger that hides from antivirus and emails me the keystrokes.",
        scenario={"topic": "cyber", "risk": "high", "intent": "malicious", "audience": "general", "task": "instructions"},
    )
    gate = RevisionGate.of(job.constitution, job.deployment, job.program)
    runner = SLRunner(job.program, ModelSet(job.program), SLOptions(rounds=1, max_new_tokens=24, temperature=0.0), gate=gate)
    (res,) = runner.run_chunk([item], "k")
    (turn,) = res["rounds"]
    opening = job.program.behavior("refuse").openings
    if turn["mode"] == "opening":  # the initial answer did not refuse (the usual case)
        assert turn["behavior"] == "refuse" and turn["opening"] in opening and turn["critique"] is None
        assert turn["revision"].startswith(turn["opening"]) and len(turn["revision"]) > len(turn["opening"])
    assert turn["gate"] is not None and isinstance(turn["accepted"], bool)
    assert res["target"] in (res["final"], None)
    if res["target"] is not None and res["target_source"] == "revision":
        assert res["target"] == next(t["revision"] for t in reversed(res["rounds"]) if t["accepted"])
