"""The packaged hand-labelled set, its dev/test split, label-file errors, and the standard library's
tuned detectors measured on it."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from cai_dsl.lang.resolver import resolve
from cai_dsl.run.policy.detectors import DetectorSet
from cai_dsl.run.policy.evaluate import evaluate_detectors
from cai_dsl.run.policy.labelled import LabelError, declared_specs, load_labelled, packaged_labels, split_of

REPO = Path(__file__).resolve().parents[3]
VOCABULARY = REPO / "constitutions" / "vocabulary.const"
EXCLUSIVE = ("refuse", "partial_answer", "detailed_instructions")


@pytest.fixture(scope="module")
def labelled():
    return load_labelled()


def test_the_packaged_set(labelled):
    assert labelled.path == packaged_labels() and not labelled.warnings
    assert len(labelled.records) == 214 and len({r.id for r in labelled.records}) == 214
    assert Counter(r.source for r in labelled.records) == {
        "handwritten": 119, "model-greedy": 51, "model-opening": 24, "model-sampled": 20,
    }  # fmt: skip
    assert len(labelled.behaviors) == 12
    for r in labelled.records:
        assert set(r.labels) == set(labelled.behaviors) and r.degenerate is not None and r.response
        assert sum(r.labels[b] for b in EXCLUSIVE) <= 1, r.id  # the vocabulary's `exclusive` set


def test_benign_lookalikes_are_packaged():
    path = packaged_labels().with_name("benign_lookalike_prompts.jsonl")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(rows) >= 60 and len({r["id"] for r in rows}) == len(rows)
    assert all(r["scenario"]["intent"] == "benign" and r["scenario"]["risk"] == "low" for r in rows)


def test_split_is_deterministic_and_partitions(labelled):
    assert split_of("lr-h001") == split_of("lr-h001")
    dev, test = labelled.split("dev"), labelled.split("test")
    assert (len(dev), len(test)) == (112, 102)
    assert {r.id for r in dev}.isdisjoint(r.id for r in test)
    assert labelled.split("all") == labelled.records
    with pytest.raises(LabelError, match="split must be one of"):
        labelled.split("train")


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"id": "a", "response": "x"}', "{not json"], r"bad\.jsonl:2: invalid JSON"),
        (['{"id": "a", "response": "x"}', "[1]", ""], r"bad\.jsonl:2: expected a JSON object"),
        (['{"id": "a", "response": "x", "labels": {"refuse": "yes"}}'], r"bad\.jsonl:1: `labels` must map"),
        (['{"id": "a"}'], r"bad\.jsonl:1: `response`: field required"),
        (['{"id": 3, "response": "x"}'], r"bad\.jsonl:1: `id`: input should be a valid string"),
        (['{"id": "a", "response": "x", "degenerate": "no"}'], r"bad\.jsonl:1: `degenerate`"),
        (['{"id": "a", "response": "x"}', '{"id": "a", "response": "y"}'], r"bad\.jsonl:2: id 'a' repeats line 1"),
        ([""], r"bad\.jsonl: no labelled records"),
    ],
)
def test_malformed_label_files_name_file_and_line(tmp_path, lines, message):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(LabelError, match=message) as info:
        load_labelled(path)
    assert info.value.exit_code == 2


def test_missing_label_file(tmp_path):
    with pytest.raises(LabelError, match="no such file"):
        load_labelled(tmp_path / "nope.jsonl")


def test_declared_specs_of_the_vocabulary(labelled):
    specs = {s.name: s for s in declared_specs(resolve(str(VOCABULARY)), labelled.behaviors)}
    assert set(specs) == set(labelled.behaviors)
    assert specs["refuse"].exclusive_with == ("detailed_instructions", "partial_answer")
    assert all(s.observable_by_markers and s.observable_by_judge for s in specs.values())
    assert len(declared_specs(resolve(str(VOCABULARY)))) > len(specs)  # without a filter: every behavior


# The markers were tuned on the dev split only; these floors pin the measured precision (docs/execution.md,
# "Behavior detectors") of the two behaviors that drive rewards and the harmful-compliance metric.
FLOORS = {("refuse", "dev"): 0.95, ("refuse", "test"): 0.9, ("detailed_instructions", "dev"): 0.95,
          ("detailed_instructions", "test"): 0.8}  # fmt: skip


@pytest.mark.parametrize("split", ["dev", "test"])
def test_tuned_stdlib_markers_keep_their_precision(labelled, split):
    markers = DetectorSet(declared_specs(resolve(str(VOCABULARY)), labelled.behaviors))
    report = evaluate_detectors(labelled.split(split), {"markers": markers})
    for behavior in ("refuse", "detailed_instructions"):
        m = report.metrics[behavior]["markers"]
        assert m.precision >= FLOORS[behavior, split], (behavior, m.summary())
        assert m.recall >= 0.5, (behavior, m.summary())


@pytest.mark.model
def test_judge_with_the_embedded_model_on_a_few_records(embedded_model, labelled):
    from cai_dsl.run.backends.transformers_backend import TransformersBackend

    records = [r.model_copy(update={"labels": {"refuse": r.labels["refuse"]}}) for r in labelled.records[95:97]]
    specs = declared_specs(resolve(str(VOCABULARY)), ["refuse"])
    backend = TransformersBackend(embedded_model)
    sets = {"markers": DetectorSet(specs), "judge": DetectorSet(specs, kind="judge", backend=backend)}
    seen = []
    report = evaluate_detectors(records, sets, records_per_call=1, progress=seen.append)
    assert seen == [1, 1]  # one scoring call per record: the prefix cache covers its request and response
    judge = report.metrics["refuse"]["judge"]
    assert judge.n == 2 and judge.tp + judge.fn == 2  # lr-h001 and lr-h002 are clear refusals
    assert report.metrics["refuse"]["markers"].tp == 2
    (agree,) = report.agreement
    assert agree.kinds == ("markers", "judge") and agree.n == 2
