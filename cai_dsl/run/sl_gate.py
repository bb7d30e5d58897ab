"""SL-CAI's gates: which revisions are kept, where a revision starts from a canonical opening, and
which response (if any) is a record's SFT target.

* **Revision gate.** A revision is accepted only if it passes the quality checks
  (:mod:`cai_dsl.run.policy.quality`) and its policy score (:class:`~cai_dsl.run.policy.score.PolicyScorer`
  in the record's scenario, markers detectors) is not lower than that of the response it revises.
* **Canonical opening.** Where the resolved policy requires a behavior that the current response does
  not exhibit (detected absent by markers) and the constitution gives that behavior ``openings``, the
  revision is started from one of them as the assistant prefix and continued by the policy model.
* **Target check.** A record's last kept response (its last accepted revision, else its initial
  response; a helpful prompt's answer) is its SFT target only if it passes the quality checks, is not
  harmful compliance and is not an over-refusal (:mod:`cai_dsl.run.policy.metrics`); else the record
  is excluded from SFT. (A revision that does not lower the score may still be harmful compliance.)
"""

from __future__ import annotations

import re

import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from cai_dsl.compile.ir import Program
from cai_dsl.run.policy.detectors import Detection, DetectorSet
from cai_dsl.run.policy.metrics import harmful_compliance, over_refusal
from cai_dsl.run.policy.quality import words
from cai_dsl.run.policy.score import PolicyScore, PolicyScorer

__all__ = [
    "Acceptance",
    "GateVerdict",
    "Opening",
    "RevisionGate",
    "Scored",
    "TargetCheck",
    "acceptance_rates",
    "continue_opening",
    "last_sentences",
]


class Scored(BaseModel):
    """A response's policy score with the detections it was computed from."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    score: PolicyScore
    detections: dict[str, Detection]


class GateVerdict(BaseModel):
    """Why a revision was accepted or rejected (``reasons`` empty when accepted)."""

    model_config = ConfigDict(frozen=True)

    accepted: bool
    reasons: tuple[str, ...]
    quality: tuple[str, ...]
    score_before: float | None
    score_after: float | None
    violations: tuple[str, ...]


class TargetCheck(BaseModel):
    """Whether an unrevised response may be trained on, and why not."""

    model_config = ConfigDict(frozen=True)

    ok: bool
    reasons: tuple[str, ...]
    score: float | None
    violations: tuple[str, ...]


class Opening(BaseModel):
    """The canonical opening a revision starts from: the required behavior, its deciding principle."""

    model_config = ConfigDict(frozen=True)

    behavior: str
    principle: str
    text: str


class Acceptance(BaseModel):
    """Proposed and accepted revisions of one principle."""

    model_config = ConfigDict(frozen=True)

    principle: str
    proposed: int
    accepted: int

    @property
    def rate(self) -> float | None:
        return self.accepted / self.proposed if self.proposed else None


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 6)


class RevisionGate:
    """Scores responses against a deployment's resolved policy and judges revisions."""

    def __init__(self, scorer: PolicyScorer, detectors: DetectorSet, openings: Mapping[str, Sequence[str]]):
        self.scorer = scorer
        self.detectors = detectors
        self.openings = {k: tuple(v) for k, v in openings.items() if v}

    @classmethod
    def of(cls, constitution: Any, deployment: str, program: Program) -> "RevisionGate":
        """The gate of a compiled deployment: markers detectors and openings of the program's behaviors."""
        return cls(
            PolicyScorer(constitution, deployment),
            DetectorSet.from_program(program, kind="markers"),
            {b.name: b.openings for b in program.behaviors},
        )

    def score(
        self,
        responses: Sequence[str],
        prompts: Sequence[str],
        scenarios: Sequence[Mapping[str, str] | None],
        finish_reasons: Sequence[str | None] | None = None,
    ) -> list[Scored]:
        """The policy score of each response in its scenario."""
        finish = finish_reasons or [None] * len(responses)
        found = self.detectors.detect_batch(list(responses), list(prompts))
        return [
            Scored(score=self.scorer.score(r, s, d, prompt=p, finish_reason=f), detections=d)
            for r, p, s, d, f in zip(responses, prompts, scenarios, found, finish, strict=True)
        ]

    def judge(self, before: Scored, after: Scored) -> GateVerdict:
        """Accept ``after`` if it passes the quality checks and does not lower the policy score."""
        a, b = after.score, before.score
        reasons = [f"quality: {f}" for f in a.quality.failures]
        if a.quality.ok and a.score is not None and b.score is not None and a.score < b.score:
            reasons.append(f"score lowered: {b.score:.3f} -> {a.score:.3f}")
        return GateVerdict(
            accepted=not reasons,
            reasons=tuple(reasons),
            quality=a.quality.failures,
            score_before=_round(b.score),
            score_after=_round(a.score),
            violations=a.violations,
        )

    def check_target(self, scored: Scored) -> TargetCheck:
        """May this response be trained on? (quality, no harmful compliance, no over-refusal)"""
        s = scored.score
        reasons = [f"quality: {f}" for f in s.quality.failures]
        if harmful_compliance(s, self.scorer.refusal_behaviors):
            reasons.append("harmful compliance")
        if over_refusal(s, scored.detections, self.scorer.refusal_behaviors):
            reasons.append("over-refusal")
        return TargetCheck(ok=not reasons, reasons=tuple(reasons), score=_round(s.score), violations=s.violations)

    def opening(self, scored: Scored, rng: random.Random) -> Opening | None:
        """The opening of the weightiest required behavior detected absent that has openings (None: none)."""
        missing = [
            r
            for r in scored.score.per_behavior
            if r.decision == "required" and r.present is False and r.behavior in self.openings
        ]
        if not missing:
            return None
        row = max(missing, key=lambda r: r.weight)  # max keeps the first of equal weights (policy order)
        texts = self.openings[row.behavior]
        return Opening(behavior=row.behavior, principle=row.principle, text=texts[rng.randrange(len(texts))])


_SENTENCE_END = re.compile(r"[.!?](?=[\s\"')\]]|$)|\n")


def first_sentence(continuation: str) -> tuple[str, bool]:
    """The continuation of a canonical opening up to the end of its first sentence, and whether it was cut.

    An opening such as "I can't help with that, because" asks the model for one thing: the reason. A 135M model
    tends to give it and then go on to help anyway, so the continuation is kept only up to its first sentence
    end; without one it is returned whole (and the quality gate judges it unfinished)."""
    m = _SENTENCE_END.search(continuation)
    if m is None or not continuation[: m.start()].strip():
        return continuation, False
    return continuation[: m.end()].rstrip(), True


_LAST_END = re.compile(r"(?<!\d)[.!?]+[\"')\]]*(?=\s|$)|\n")
"""A sentence end for :func:`last_sentences`: not a list number ("1."), or a line break."""


def last_sentences(text: str, finish_reason: str | None, min_words: int = 5) -> tuple[str, str | None, bool]:
    """A generation cut by the token budget (``finish_reason == "length"``) up to the end of its last complete
    sentence, when at least ``min_words`` words remain: ``(text, finish_reason, trimmed)``; a trimmed text ends
    a sentence, so its finish reason becomes ``"stop"``. Otherwise the text is returned unchanged (and the
    quality gate judges it unfinished)."""
    if finish_reason != "length":
        return text, finish_reason, False
    stripped = text.rstrip()
    ends = [m.end() for m in _LAST_END.finditer(stripped)]
    if not ends or ends[-1] >= len(stripped):
        return text, finish_reason, False
    cut = stripped[: ends[-1]].rstrip()
    if len(words(cut)) < min_words:
        return text, finish_reason, False
    return cut, "stop", True


def continue_opening(opening: str, continuation: str) -> str:
    """The opening followed by the model's continuation (a space between them where needed)."""
    cont = continuation.rstrip()
    if not cont.strip():
        return opening.strip()
    sep = "" if cont[0].isspace() or cont[0] in ",.;:!?)'\"" or opening[-1:].isspace() else " "
    return (opening + sep + cont).strip()


def acceptance_rates(records: Iterable[Mapping[str, Any]]) -> dict[str, Acceptance]:
    """Proposed/accepted revisions per principle over SL records (rounds with a gate verdict), sorted."""
    counts: dict[str, list[int]] = {}
    for record in records:
        for turn in record.get("rounds") or ():
            gate = turn.get("gate")
            if not gate:
                continue
            c = counts.setdefault(str(turn.get("principle")), [0, 0])
            c[0] += 1
            c[1] += bool(gate.get("accepted"))
    return {p: Acceptance(principle=p, proposed=n, accepted=k) for p, (n, k) in sorted(counts.items())}
