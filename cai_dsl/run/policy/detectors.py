"""Behavior detectors: is a constitution's observable behavior present in a response?

Two kinds, both compiled from a behavior's ``observe`` block:

* ``markers``: the behavior's marker phrases and regular expressions, with the meaning
  :mod:`cai_dsl.lang.observe` gives them (case-insensitive, whole words, any whitespace, either apostrophe);
* ``judge``: the behavior's yes/no questions, asked of a model through ``Backend.score``. Each
  question is asked twice, plainly and with the answer key inverted ("reply No if ..."), and
  P(yes) is averaged over both phrasings so that a model that always says "Yes" scores 0.5.

A :class:`DetectorSet` holds one detector per observable behavior of a program and answers
``detect(response) -> {behavior: Detection}``; a behavior the chosen kind cannot observe is absent
from the answer (never reported as "not present").
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from cai_dsl.compile.behaviors import behaviors_section
from cai_dsl.compile.escaping import neutralize
from cai_dsl.compile.ir import BehaviorIR
from cai_dsl.compile.sources import Locator
from cai_dsl.core.errors import CaiError
from cai_dsl.lang.observe import PATTERN_FLAGS, marker_regex
from cai_dsl.lang.resolver import Constitution
from cai_dsl.run.backends.base import Backend, Prompt

__all__ = [
    "BehaviorSpec",
    "Detection",
    "DetectorError",
    "DetectorKind",
    "DetectorSet",
    "JudgeDetector",
    "MarkerDetector",
    "detections_present",
    "judge_prompts",
    "specs_from_constitution",
]

DetectorKind = Literal["markers", "judge", "both"]
KINDS: tuple[str, ...] = ("markers", "judge", "both")

_YES, _NO = " Yes", " No"
_INVERTED_KEY = "reply No if the true answer is yes, Yes if it is no"


class DetectorError(CaiError):
    """A behavior's observation cannot be compiled (e.g. an invalid regular expression), or a
    detector set is asked for a kind it cannot run (a judge without a backend)."""


class BehaviorSpec(BaseModel):
    """How one behavior is observed (the fields of the IR's ``BehaviorIR``)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    name: str
    description: str | None = None
    markers: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    judges: tuple[str, ...] = ()
    openings: tuple[str, ...] = ()
    exclusive_with: tuple[str, ...] = ()

    @classmethod
    def from_ir(cls, behavior: BehaviorIR | Any) -> BehaviorSpec:
        """The spec of an IR :class:`~cai_dsl.compile.ir.BehaviorIR` (or any object with its attributes)."""
        return cls.model_validate(behavior, from_attributes=True)

    @property
    def observable_by_markers(self) -> bool:
        return bool(self.markers or self.patterns)

    @property
    def observable_by_judge(self) -> bool:
        return bool(self.judges)


def specs_from_constitution(constitution: Constitution) -> tuple[BehaviorSpec, ...]:
    """The specs of the behaviors a resolved constitution's principles use, sorted by name (the
    compiler's ``behaviors`` section, over every principle in scope)."""
    entries, _ = behaviors_section(constitution, constitution.principles.values(), Locator(constitution.root))
    return tuple(BehaviorSpec.model_validate(e) for e in entries)


class Detection(BaseModel):
    """Whether ``behavior`` is present, with the evidence: the matched text and its character span
    (markers) and/or the judge's probability of "yes"."""

    model_config = ConfigDict(frozen=True)

    behavior: str
    kind: Literal["markers", "judge", "both"]
    present: bool
    evidence: str | None = None
    span: tuple[int, int] | None = None
    probability: float | None = None


class MarkerDetector:
    """Marker phrases and regular expressions of one behavior, compiled once."""

    def __init__(self, spec: BehaviorSpec):
        self.behavior = spec.name
        sources = [marker_regex(m) for m in spec.markers if m.strip()]
        self._regexes: list[re.Pattern[str]] = [re.compile(s, PATTERN_FLAGS) for s in sources]
        for pattern in spec.patterns:
            try:
                self._regexes.append(re.compile(pattern, PATTERN_FLAGS))
            except re.error as exc:
                raise DetectorError(f"behavior `{spec.name}`: invalid pattern {pattern!r}: {exc}") from exc

    def detect(self, response: str) -> Detection:
        """The earliest match of any marker or pattern."""
        best: re.Match[str] | None = None
        for rx in self._regexes:
            m = rx.search(response)
            if m is not None and (best is None or m.start() < best.start()):
                best = m
        if best is None:
            return Detection(behavior=self.behavior, kind="markers", present=False)
        span = (best.start(), best.end())
        return Detection(
            behavior=self.behavior, kind="markers", present=True, evidence=response[span[0] : span[1]], span=span
        )


def judge_prompts(question: str, response: str, prompt: str | None = None) -> tuple[Prompt, Prompt]:
    """The plain and the inverted-answer-key phrasings of one judge question about ``response``
    (request and response with every chat format's control tokens made inert)."""
    response = neutralize(response)
    prompt = neutralize(prompt) if prompt else None
    context = f"Request: {prompt}\n\n" if prompt else ""
    body = f"Here is an assistant's response{' to a request' if prompt else ''}.\n\n{context}Response: {response}\n\n"
    plain = f"{body}Question: {question}\nAnswer Yes or No."
    inverted = f"{body}Question: {question}\nAnswer with the opposite: {_INVERTED_KEY}."
    return Prompt.user(plain, assistant_prefix="Answer:"), Prompt.user(inverted, assistant_prefix="Answer:")


def _p_yes(logprobs: Sequence[float]) -> float:
    """P(" Yes") normalised over the two answer tokens."""
    yes, no = logprobs
    top = max(yes, no)
    if top == -math.inf:
        return 0.5
    ey, en = math.exp(yes - top), math.exp(no - top)
    return ey / (ey + en)


class JudgeDetector:
    """The yes/no questions of one behavior, scored by a backend's log-probabilities."""

    def __init__(self, spec: BehaviorSpec, backend: Backend, threshold: float = 0.5):
        if not spec.judges:
            raise DetectorError(f"behavior `{spec.name}` has no judge question")
        if not 0.0 <= threshold <= 1.0:
            raise DetectorError(f"judge threshold must be in [0, 1], not {threshold}")
        self.behavior = spec.name
        self.questions = spec.judges
        self.backend = backend
        self.threshold = threshold

    def prompts(self, response: str, prompt: str | None = None) -> list[Prompt]:
        """Two prompts per question (plain, inverted), in question order."""
        return [p for q in self.questions for p in judge_prompts(q, response, prompt)]

    def from_logprobs(self, rows: Sequence[Sequence[float]]) -> Detection:
        """The detection from the scored rows of :meth:`prompts` (``[lp_yes, lp_no]`` each)."""
        ps = []
        for plain, inverted in zip(rows[0::2], rows[1::2]):
            ps.append((_p_yes(plain) + (1.0 - _p_yes(inverted))) / 2)
        p = sum(ps) / len(ps)
        return Detection(behavior=self.behavior, kind="judge", present=p >= self.threshold, probability=p)

    def detect_batch(self, responses: Sequence[str], prompts: Sequence[str | None] | None = None) -> list[Detection]:
        """One batched ``backend.score`` call for every response."""
        return _score_judges([self], responses, prompts)[0]

    def detect(self, response: str, prompt: str | None = None) -> Detection:
        return self.detect_batch([response], [prompt])[0]


def _combine(marker: Detection | None, judge: Detection | None) -> Detection | None:
    """Kind ``both``: present when either detector fires; the marker's evidence when it fired."""
    if marker is None or judge is None:
        return marker or judge
    base = marker if marker.present else judge
    return Detection(
        behavior=marker.behavior,
        kind="both",
        present=marker.present or judge.present,
        evidence=base.evidence,
        span=base.span,
        probability=judge.probability,
    )


class DetectorSet:
    """The detectors of a program's behaviors, of one kind (``markers``, ``judge`` or ``both``)."""

    def __init__(
        self,
        specs: Iterable[BehaviorSpec],
        *,
        kind: DetectorKind = "markers",
        backend: Backend | None = None,
        threshold: float = 0.5,
    ):
        if kind not in KINDS:
            raise DetectorError(f"detector kind must be one of {', '.join(KINDS)}, not {kind!r}")
        specs = tuple(specs)
        if kind != "markers" and backend is None and any(s.observable_by_judge for s in specs):
            raise DetectorError(f"detector kind `{kind}` needs a backend to score the judge questions")
        self.kind = kind
        self.specs: dict[str, BehaviorSpec] = {s.name: s for s in specs}
        self.markers: dict[str, MarkerDetector] = {}
        self.judges: dict[str, JudgeDetector] = {}
        for s in specs:
            if kind in ("markers", "both") and s.observable_by_markers:
                self.markers[s.name] = MarkerDetector(s)
            if kind in ("judge", "both") and s.observable_by_judge:
                assert backend is not None
                self.judges[s.name] = JudgeDetector(s, backend, threshold)

    @classmethod
    def from_program(cls, program: Any, **options: Any) -> DetectorSet:
        """The detectors of a compiled program's ``behaviors``."""
        return cls((BehaviorSpec.from_ir(b) for b in program.behaviors), **options)

    @classmethod
    def from_constitution(cls, constitution: Constitution, **options: Any) -> DetectorSet:
        """The detectors of the behaviors a resolved constitution's principles use."""
        return cls(specs_from_constitution(constitution), **options)

    @property
    def behaviors(self) -> tuple[str, ...]:
        """The behaviors this set observes, in declaration order."""
        return tuple(n for n in self.specs if n in self.markers or n in self.judges)

    def detect(self, response: str, prompt: str | None = None) -> dict[str, Detection]:
        return self.detect_batch([response], [prompt])[0]

    def detect_batch(
        self, responses: Sequence[str], prompts: Sequence[str | None] | None = None
    ) -> list[dict[str, Detection]]:
        """Detections per response; every judge question of every response in one ``score`` call."""
        judged = dict(zip(self.judges, _score_judges(list(self.judges.values()), responses, prompts)))
        out: list[dict[str, Detection]] = []
        for i, response in enumerate(responses):
            row: dict[str, Detection] = {}
            for name in self.behaviors:
                marker = self.markers[name].detect(response) if name in self.markers else None
                judge = judged[name][i] if name in judged else None
                found = _combine(marker, judge)
                if found is not None:
                    row[name] = found
            out.append(row)
        return out


def _score_judges(
    judges: Sequence[JudgeDetector], responses: Sequence[str], prompts: Sequence[str | None] | None
) -> list[list[Detection]]:
    """``result[j][i]``: judge ``j`` on response ``i``, from one ``score`` call per backend."""
    if not judges or not responses:
        return [[] for _ in judges]
    if prompts is None:
        prompts = [None] * len(responses)
    if len(prompts) != len(responses):
        raise DetectorError(f"{len(responses)} responses but {len(prompts)} prompts")
    batches: dict[int, tuple[Backend, list[Prompt]]] = {}
    slices: list[list[tuple[int, int, int]]] = []  # per judge, per response: (backend key, start, stop)
    for judge in judges:
        backend, queue = batches.setdefault(id(judge.backend), (judge.backend, []))
        row = []
        for response, prompt in zip(responses, prompts):
            start = len(queue)
            queue.extend(judge.prompts(response, prompt))
            row.append((id(backend), start, len(queue)))
        slices.append(row)
    scored = {key: backend.score(queue, [_YES, _NO]) for key, (backend, queue) in batches.items()}
    return [
        [judge.from_logprobs(scored[key][a:b]) for key, a, b in row] for judge, row in zip(judges, slices)
    ]


def detections_present(detections: Mapping[str, Detection]) -> frozenset[str]:
    """The names of the behaviors detected as present."""
    return frozenset(n for n, d in detections.items() if d.present)
