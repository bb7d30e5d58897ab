"""How well the detectors agree with hand labels (`cai eval detectors`).

Per behavior and detector kind: the confusion counts against the labels, precision, recall and F1
with 95% Wilson intervals; per behavior and pair of kinds: Cohen's kappa between their answers;
and the quality checks' ``degenerate`` verdict against the records' ``degenerate`` label.

A labelled record is ``{"id", "prompt", "response", "source", "labels": {behavior: bool}, "degenerate": bool}``;
a behavior missing from ``labels`` is unlabelled in that record and not counted.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from cai_dsl.run.policy.detectors import DetectorSet
from cai_dsl.run.policy.quality import check_quality

__all__ = [
    "Agreement",
    "BinaryMetrics",
    "DetectorReport",
    "LabelledRecord",
    "cohen_kappa",
    "evaluate_detectors",
    "wilson_interval",
]


class LabelledRecord(BaseModel):
    """One hand-labelled response."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    prompt: str = ""
    response: str
    source: str = ""
    labels: dict[str, bool] = {}
    degenerate: bool | None = None


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float] | None:
    """The Wilson score interval of a binomial proportion (None when ``n == 0``)."""
    if n == 0:
        return None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def cohen_kappa(a: Sequence[bool], b: Sequence[bool]) -> float | None:
    """Cohen's kappa of two binary raters (None with no items; 1.0 when both agree on one constant answer)."""
    n = len(a)
    if n == 0 or n != len(b):
        return None
    observed = sum(x == y for x, y in zip(a, b)) / n
    pa, pb = sum(a) / n, sum(b) / n
    expected = pa * pb + (1 - pa) * (1 - pb)
    if expected == 1.0:
        return 1.0 if observed == 1.0 else 0.0
    return (observed - expected) / (1 - expected)


class BinaryMetrics(BaseModel):
    """Detector answers against labels: counts, precision, recall, F1 (None when undefined) and intervals."""

    model_config = ConfigDict(frozen=True)

    tp: int
    fp: int
    fn: int
    tn: int

    @classmethod
    def of(cls, predicted: Sequence[bool], actual: Sequence[bool]) -> BinaryMetrics:
        pairs = list(zip(predicted, actual))
        return cls(
            tp=sum(p and a for p, a in pairs),
            fp=sum(p and not a for p, a in pairs),
            fn=sum(a and not p for p, a in pairs),
            tn=sum(not p and not a for p, a in pairs),
        )

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def f1(self) -> float | None:
        p, r = self.precision, self.recall
        if p is None or r is None:
            return None
        return 0.0 if p + r == 0 else 2 * p * r / (p + r)

    @property
    def precision_ci(self) -> tuple[float, float] | None:
        return wilson_interval(self.tp, self.tp + self.fp)

    @property
    def recall_ci(self) -> tuple[float, float] | None:
        return wilson_interval(self.tp, self.tp + self.fn)

    def summary(self) -> dict[str, Any]:
        """A JSON-ready dict of the counts and derived figures."""
        return {
            "n": self.n, "tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn,
            "precision": self.precision, "precision_ci": self.precision_ci,
            "recall": self.recall, "recall_ci": self.recall_ci, "f1": self.f1,
        }  # fmt: skip


class Agreement(BaseModel):
    """Cohen's kappa between two detector kinds on one behavior, over ``n`` records."""

    model_config = ConfigDict(frozen=True)

    behavior: str
    kinds: tuple[str, str]
    n: int
    kappa: float | None


class DetectorReport(BaseModel):
    """Per (behavior, kind) metrics, agreement between kinds, and the degeneration check's metrics."""

    model_config = ConfigDict(frozen=True)

    records: int
    metrics: dict[str, dict[str, BinaryMetrics]]  # behavior -> kind -> metrics
    agreement: tuple[Agreement, ...]
    degeneration: BinaryMetrics | None

    def to_json(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "metrics": {b: {k: m.summary() for k, m in kinds.items()} for b, kinds in self.metrics.items()},
            "agreement": [a.model_dump() for a in self.agreement],
            "degeneration": self.degeneration.summary() if self.degeneration else None,
        }


def _answers(
    ds: DetectorSet,
    responses: list[str],
    prompts: list[str | None],
    per_call: int | None,
    progress: Callable[[int], None] | None,
) -> list[dict[str, Any]]:
    """A set's detections, ``per_call`` records per ``detect_batch`` call when it has judge questions."""
    if not ds.judges or per_call is None:
        return ds.detect_batch(responses, prompts)
    rows = []
    for start in range(0, len(responses), per_call):
        rows.extend(ds.detect_batch(responses[start : start + per_call], prompts[start : start + per_call]))
        if progress is not None:
            progress(len(responses[start : start + per_call]))
    return rows


def evaluate_detectors(
    labelled_records: Iterable[LabelledRecord | Mapping[str, Any]],
    detector_sets: Mapping[str, DetectorSet],
    *,
    records_per_call: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> DetectorReport:
    """Score each detector set (named by kind, e.g. ``{"markers": ..., "judge": ...}``) on the records.

    A set with judge questions scores all records in one backend call, or ``records_per_call`` at a time
    (1 lets a transformers backend's shared-prefix cache cover each record's request and response under
    all its questions), calling ``progress(n)`` as they finish."""
    records = [r if isinstance(r, LabelledRecord) else LabelledRecord.model_validate(r) for r in labelled_records]
    responses, prompts = [r.response for r in records], [r.prompt or None for r in records]
    answers = {kind: _answers(ds, responses, prompts, records_per_call, progress) for kind, ds in detector_sets.items()}
    behaviors = sorted({b for r in records for b in r.labels})
    metrics: dict[str, dict[str, BinaryMetrics]] = {}
    for beh in behaviors:
        for kind, rows in answers.items():
            pairs = [
                (row[beh].present, r.labels[beh]) for r, row in zip(records, rows) if beh in r.labels and beh in row
            ]
            if pairs:
                metrics.setdefault(beh, {})[kind] = BinaryMetrics.of(*zip(*pairs))
    agreement = []
    for beh in sorted({b for rows in answers.values() for row in rows for b in row}):
        for k1, k2 in itertools.combinations(answers, 2):
            both = [
                (r1[beh].present, r2[beh].present)
                for r1, r2 in zip(answers[k1], answers[k2])
                if beh in r1 and beh in r2
            ]
            if both:
                a, b = zip(*both)
                agreement.append(Agreement(behavior=beh, kinds=(k1, k2), n=len(both), kappa=cohen_kappa(a, b)))
    labelled = [r for r in records if r.degenerate is not None]
    flagged = [check_quality(r.response).degenerate for r in labelled]
    degeneration = BinaryMetrics.of(flagged, [bool(r.degenerate) for r in labelled]) if labelled else None
    return DetectorReport(records=len(records), metrics=metrics, agreement=tuple(agreement), degeneration=degeneration)
