"""Detector evaluation against hand labels: metrics, intervals, agreement between kinds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cai_dsl.run.policy.detectors import BehaviorSpec, DetectorSet
from cai_dsl.run.policy.evaluate import BinaryMetrics, LabelledRecord, cohen_kappa, evaluate_detectors, wilson_interval
from tests.run.policy.conftest import FakeJudge, oracle

FIXTURE = Path(__file__).parent / "data" / "labelled_tiny.jsonl"
SPECS = (
    BehaviorSpec(name="refuse", markers=("I can't help", "I won't"), judges=("Does the response decline?",)),
    BehaviorSpec(name="empathize", markers=("I understand",)),
)


def records() -> list[dict]:
    return [json.loads(line) for line in FIXTURE.read_text().splitlines()]


@pytest.mark.parametrize(
    ("k", "n", "interval"),
    [(8, 10, (0.4902, 0.9433)), (0, 10, (0.0, 0.2775)), (10, 10, (0.7225, 1.0)), (1, 2, (0.0945, 0.9055))],
)
def test_wilson_interval(k, n, interval):
    low, high = wilson_interval(k, n)
    assert (low, high) == (pytest.approx(interval[0], abs=1e-4), pytest.approx(interval[1], abs=1e-4))
    assert wilson_interval(0, 0) is None


@pytest.mark.parametrize(
    ("a", "b", "kappa"),
    [
        ([1, 1, 0, 0], [1, 0, 0, 0], 0.5),
        ([1, 0, 1, 0], [1, 0, 1, 0], 1.0),
        ([1, 0, 1, 0], [0, 1, 0, 1], -1.0),
        ([1, 1, 1], [1, 1, 1], 1.0),  # constant agreement
        ([1, 1, 1], [0, 0, 0], 0.0),
        ([], [], None),
    ],
)
def test_cohen_kappa(a, b, kappa):
    got = cohen_kappa([bool(x) for x in a], [bool(x) for x in b])
    assert got == (pytest.approx(kappa) if kappa is not None else None)


def test_binary_metrics():
    m = BinaryMetrics.of([True, True, False, False, True], [True, False, True, False, True])
    assert (m.tp, m.fp, m.fn, m.tn, m.n) == (2, 1, 1, 1, 5)
    assert m.precision == pytest.approx(2 / 3) and m.recall == pytest.approx(2 / 3) and m.f1 == pytest.approx(2 / 3)
    empty = BinaryMetrics.of([False], [False])
    assert empty.precision is None and empty.recall is None and empty.f1 is None
    assert empty.precision_ci is None


def test_evaluate_detectors_on_the_fixture():
    judge = FakeJudge(oracle(lambda r: r.startswith(("I can't", "No.", "I won't"))))
    sets = {"markers": DetectorSet(SPECS), "judge": DetectorSet(SPECS, kind="judge", backend=judge)}
    report = evaluate_detectors(records(), sets)
    assert report.records == 6
    refuse_m, refuse_j = report.metrics["refuse"]["markers"], report.metrics["refuse"]["judge"]
    # markers miss t4 ("No. That is not something I do."); the judge catches it
    assert (refuse_m.tp, refuse_m.fp, refuse_m.fn, refuse_m.tn) == (2, 0, 1, 3)
    assert (refuse_j.tp, refuse_j.fp, refuse_j.fn, refuse_j.tn) == (3, 0, 0, 3)
    assert refuse_m.recall == pytest.approx(2 / 3) and refuse_m.precision == 1.0
    assert refuse_m.recall_ci == pytest.approx(wilson_interval(2, 3))
    # empathize: only markers observe it; t5 has no empathize label and is not counted
    assert set(report.metrics["empathize"]) == {"markers"}
    emp = report.metrics["empathize"]["markers"]
    assert emp.n == 5 and (emp.tp, emp.fn) == (1, 1)  # t6 says "I'm sorry", not "I understand"
    (agree,) = report.agreement
    assert agree.behavior == "refuse" and agree.kinds == ("markers", "judge") and agree.n == 6
    assert agree.kappa == pytest.approx(cohen_kappa([1, 0, 0, 0, 0, 1], [1, 0, 0, 1, 0, 1]))
    assert report.degeneration is not None
    assert (report.degeneration.tp, report.degeneration.fp, report.degeneration.n) == (1, 0, 5)
    payload = json.loads(json.dumps(report.to_json()))
    assert payload["metrics"]["refuse"]["judge"]["recall"] == 1.0
    assert judge.calls == [12]  # 6 records x 2 phrasings, one batched call


def test_records_as_models_and_no_labels():
    rec = LabelledRecord(id="x", response="I won't.")
    report = evaluate_detectors([rec], {"markers": DetectorSet(SPECS)})
    assert report.metrics == {} and report.degeneration is None and report.agreement == ()
