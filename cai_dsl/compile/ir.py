"""The compiled form of a constitution: a deterministic prompt program (the IR).

A :class:`Program` is what ``cai compile`` writes for one deployment and one target. It is a
frozen pydantic model, versioned by :data:`IR_VERSION`, serialised as canonical JSON
(:meth:`Program.to_json`: sorted keys, fixed separators, UTF-8, trailing newline) and published
as a JSON Schema (:func:`ir_json_schema`, committed as ``docs/ir.schema.json``; the format is
described in ``docs/ir.md``).

Besides the data, a Program carries the *pure rendering API* the execution layer calls:
``critique_messages``, ``revision_messages``, ``comparison_messages`` (and their
chain-of-thought variants), ``classifier_messages``, ``select_principles``,
``comparison_principles``, ``applicable``, ``is_satisfied``, ``soft_label``, ``debias``,
``clamp_cot``, ``combine_votes``, ``combine_models``, ``classify``. None of them touches a model;
all are deterministic (randomness only through an explicit ``random.Random``, see :meth:`Program.rng`).

Template safety
---------------
Prompts are built by *structured concatenation*: a :class:`Template` is a list of literal parts
(fixed by the compiler) and named slots; slot values are inserted verbatim, never interpreted
(no ``str.format``, no Jinja), so ``{``, ``}``, ``{{ }}``, ``{%``, ``$`` in principle text,
prompts or responses are plain characters. Each message is one :class:`Message`; text can never
add, remove or re-role a message. Inside slot values (and few-shot texts, system prompts and
conversation turns) the *control tokens* of the target's chat format are neutralised by
:func:`neutralize`: a backslash is inserted after the token's first character (``<|im_start|>``
becomes ``<\\|im_start|>``, ``</s>`` becomes ``<\\/s>``, ``[INST]`` becomes ``[\\INST]``). No
control token contains a backslash, so the escaped text contains no control token and the
escape cannot create one. What text *can* still do is say things (e.g. a response that contains
"(B) ..."): content-level spoofing inside one message is not preventable by templating.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import math
import random
import re
from functools import cached_property
from typing import Annotated, Any, Iterable, Literal, Mapping, NamedTuple, Sequence

from pydantic import BaseModel, ConfigDict, Field, model_serializer

IR_VERSION = "1"
"""Version of the IR format. Bumped on any incompatible change of the JSON layout."""

SCHEMA_ID = "https://cai-dsl.dev/schemas/ir-v1.schema.json"

Role = Literal["system", "user", "assistant"]
ChatFormat = Literal["chatml", "llama3", "llama2", "mistral", "model"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _Compact(_Frozen):
    """Serialised without its null and empty fields (they are the defaults)."""

    @model_serializer(mode="wrap")
    def _compact(self, handler):
        data = handler(self)
        return {k: v for k, v in data.items() if v is not None and v != [] and v != ()}


# ---------------------------------------------------------------------------- escaping

_PIPE_TOKEN = r"<\|[A-Za-z0-9_]+\|>"  # chatml, llama3, phi...: <|im_start|>, <|eot_id|>, ...
_INST_TOKENS = ("[INST]", "[/INST]", "<<SYS>>", "<</SYS>>", "<s>", "</s>", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]")


def _token_regex(fixed: Sequence[str], pipe: bool) -> re.Pattern[str]:
    parts = [re.escape(t) for t in sorted(fixed, key=len, reverse=True)]
    if pipe:
        parts.insert(0, _PIPE_TOKEN)
    return re.compile("|".join(parts))


CONTROL_TOKEN_PATTERNS: dict[str, re.Pattern[str]] = {
    "chatml": _token_regex((), pipe=True),
    "llama3": _token_regex((), pipe=True),
    "llama2": _token_regex(_INST_TOKENS, pipe=False),
    "mistral": _token_regex(_INST_TOKENS, pipe=False),
    "model": _token_regex(_INST_TOKENS, pipe=True),  # unknown template: neutralise every known family
}
"""Per chat format, the control tokens neutralised in text (see the module docstring)."""


def _escape_token(match: re.Match[str]) -> str:
    token = match.group(0)
    return token[0] + "\\" + token[1:]


def neutralize(text: str, chat_format: str = "model") -> str:
    """``text`` with the chat format's control tokens made inert (backslash after their first character)."""
    if not isinstance(text, str):
        raise TypeError(f"expected text, got {type(text).__name__}")
    pattern = CONTROL_TOKEN_PATTERNS.get(chat_format, CONTROL_TOKEN_PATTERNS["model"])
    for _ in range(4):  # one pass suffices (an escape never creates a token); the loop is a guard
        escaped = pattern.sub(_escape_token, text)
        if escaped == text:
            return text
        text = escaped
    return text


def contains_control_token(text: str, chat_format: str = "model") -> bool:
    pattern = CONTROL_TOKEN_PATTERNS.get(chat_format, CONTROL_TOKEN_PATTERNS["model"])
    return pattern.search(text) is not None


# ---------------------------------------------------------------------------- basics


LOC_PATTERN = r"^.+:\d+:\d+-\d+:\d+$"
Loc = Annotated[str, Field(pattern=LOC_PATTERN)]
"""A source location as ``file:line:column-end_line:end_column`` (1-based, end exclusive); ``file``
is relative to the root file's directory, with ``/`` separators. Compact on purpose: a large
program has tens of thousands of them. :meth:`SourceLoc.parse` reads one."""


class SourceLoc(NamedTuple):
    """A parsed :data:`Loc`."""

    file: str
    line: int
    column: int
    end_line: int
    end_column: int

    @classmethod
    def parse(cls, loc: str) -> "SourceLoc":
        head, end = loc.rsplit("-", 1)
        file, line, column = head.rsplit(":", 2)
        end_line, end_column = end.split(":")
        return cls(file, int(line), int(column), int(end_line), int(end_column))

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}-{self.end_line}:{self.end_column}"


class Message(_Frozen):
    """One chat turn."""

    role: Role
    content: str


class ChatPrompt(_Frozen):
    """A rendered prompt: messages, the start of the assistant's answer, and (for scoring) the continuations.

    ``assistant_prefix`` is text the model's answer starts with (the model continues after it);
    ``continuations`` are the strings whose log-probabilities are scored right after it.
    ``stop`` lists strings that end a generation.
    """

    messages: tuple[Message, ...]
    assistant_prefix: str = ""
    continuations: tuple[str, ...] = ()
    stop: tuple[str, ...] = ()

    def message_dicts(self) -> list[dict[str, str]]:
        return [{"role": m.role, "content": m.content} for m in self.messages]


class TemplatePart(_Compact):
    """A literal piece of text (fixed by the compiler) or a named slot, never both."""

    text: str | None = None
    slot: str | None = None


class Template(_Frozen):
    """Structured concatenation of literal parts and slots (no format strings)."""

    parts: tuple[TemplatePart, ...]

    @property
    def slots(self) -> tuple[str, ...]:
        return tuple(p.slot for p in self.parts if p.slot is not None)

    def render(self, values: Mapping[str, str]) -> str:
        """Join the parts; each slot's value is inserted verbatim (callers neutralise it first)."""
        out: list[str] = []
        for part in self.parts:
            if part.slot is not None:
                value = values[part.slot]
                if not isinstance(value, str):
                    raise TypeError(f"slot `{part.slot}` needs text, got {type(value).__name__}")
                out.append(value)
            else:
                out.append(part.text or "")
        return "".join(out)

    def display(self) -> str:
        """A human-readable form, slots shown as ``[SLOT]`` (for docs and `cai compile --explain`)."""
        return "".join(f"[{p.slot.upper()}]" if p.slot is not None else (p.text or "") for p in self.parts)


def template(*pieces: str | tuple[str]) -> Template:
    """Build a Template: plain strings are literal text, 1-tuples ``("slot",)`` are slots."""
    parts = []
    for piece in pieces:
        if isinstance(piece, tuple):
            parts.append(TemplatePart(slot=piece[0]))
        else:
            parts.append(TemplatePart(text=piece))
    return Template(parts=tuple(parts))


# ---------------------------------------------------------------------------- conditions


CondOp = Literal["true", "false", "==", "!=", "<", "<=", ">", ">=", "in", "not in", "and", "or", "not"]


class Cond(_Compact):
    """A compact, span-free condition tree over facets.

    ``true``/``false``; ``facet OP value`` (``==``, ``!=``, ``<``...); ``facet in values`` /
    ``not in``; ``and``/``or`` over ``args``; ``not`` over ``args[0]``.
    """

    op: CondOp
    facet: str | None = None
    value: str | None = None
    values: tuple[str, ...] = ()
    args: tuple["Cond", ...] = ()

    def facets_used(self) -> set[str]:
        out: set[str] = set()
        stack = [self]
        while stack:
            node = stack.pop()
            if node.facet is not None:
                out.add(node.facet)
            stack.extend(node.args)
        return out


Cond.model_rebuild()


class FacetIR(_Frozen):
    name: str
    values: tuple[str, ...]
    ordered: bool = False


def eval_cond(cond: Cond | None, scenario: Mapping[str, str | None], facets: Mapping[str, FacetIR]) -> bool | None:
    """Three-valued (Kleene) truth of ``cond``: a facet missing from ``scenario`` (or None) is unknown.

    Returns True, False, or None when the answer depends on an unknown facet.
    """
    if cond is None:
        return True
    op = cond.op
    if op == "true":
        return True
    if op == "false":
        return False
    if op == "not":
        inner = eval_cond(cond.args[0], scenario, facets)
        return None if inner is None else not inner
    if op == "and":
        result: bool | None = True
        for arg in cond.args:
            v = eval_cond(arg, scenario, facets)
            if v is False:
                return False
            if v is None:
                result = None
        return result
    if op == "or":
        result = False
        for arg in cond.args:
            v = eval_cond(arg, scenario, facets)
            if v is True:
                return True
            if v is None:
                result = None
        return result
    actual = scenario.get(cond.facet or "")
    if actual is None:
        return None
    if op == "in":
        return actual in cond.values
    if op == "not in":
        return actual not in cond.values
    if op == "==":
        return actual == cond.value
    if op == "!=":
        return actual != cond.value
    facet = facets.get(cond.facet or "")
    if facet is None or actual not in facet.values or cond.value not in facet.values:
        return None
    a, b = facet.values.index(actual), facet.values.index(cond.value)
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


# ---------------------------------------------------------------------------- principles


class CritiqueExampleIR(_Frozen):
    prompt: str | None = None
    response: str | None = None
    critique: str | None = None
    revision: str | None = None

    @property
    def complete(self) -> bool:
        return None not in (self.prompt, self.response, self.critique, self.revision)


class CompareExampleIR(_Frozen):
    prompt: str | None = None
    a: str | None = None
    b: str | None = None
    better: Literal["a", "b"] | None = None

    @property
    def complete(self) -> bool:
        return None not in (self.prompt, self.a, self.b, self.better)


class PrincipleIR(_Frozen):
    """One principle of the deployment, after overrides."""

    id: str
    critique: str | None = None
    revise: str | None = None
    compare: str | None = None
    when: str | None = Field(None, description="the condition in `.const` syntax (None: always active)")
    condition: Cond | None = None
    requires: tuple[str, ...] = ()
    forbids: tuple[str, ...] = ()
    prefers: tuple[str, ...] = ()
    weight: float = 1.0
    tags: tuple[str, ...] = ()
    examples: tuple[CritiqueExampleIR, ...] = ()
    compare_examples: tuple[CompareExampleIR, ...] = ()
    rank: int = Field(0, description="priority depth: 0 = nothing outranks it; else 1 + the largest rank above it")
    priority_index: int = Field(0, description="position in `priority.order`")
    span: Loc


class PriorityIR(_Frozen):
    """The deployment's priority order among its principles."""

    order: tuple[str, ...] = Field(
        description="a linear extension of the partial order: by rank, then weight (higher first), then id"
    )
    edges: tuple[tuple[str, str], ...] = Field((), description="stated (higher, lower) pairs, deduplicated and sorted")


class ConditionIR(_Frozen):
    when: str
    condition: Cond


class ConflictBranchIR(_Frozen):
    when: str
    condition: Cond
    winner: str


class ConflictIR(_Frozen):
    left: str
    right: str
    branches: tuple[ConflictBranchIR, ...] = ()
    otherwise: str | None = None


# ---------------------------------------------------------------------------- programs


class StopRule(_Frozen):
    """When the critique says there is nothing to fix, revising stops.

    Detection (``method = "first-sentence"``): take the critique, strip whitespace, a leading
    ``Critique:`` label and leading quote/markdown characters (``"'*_`>``); cut it at the first
    ``.``, ``!``, ``?`` or newline; lower-case it, collapse whitespace and strip surrounding
    punctuation. The critique is *satisfied* when that first sentence equals one of ``phrases``.
    So ``"No issues."`` and ``"no issues!"`` stop, but ``"No issues with grammar, but ..."`` does not.
    """

    enabled: bool = True
    instruction: str = 'If the response has no such problem, answer exactly "No issues."'
    phrases: tuple[str, ...] = (
        "no issues",
        "no issue",
        "no issues found",
        "no problems",
        "no problems found",
        "nothing to fix",
        "no changes needed",
        "no changes are needed",
        "none",
    )
    method: Literal["first-sentence"] = "first-sentence"

    def matches(self, critique: str) -> bool:
        return first_sentence(critique) in self.phrases


_LABEL_RE = re.compile(r"^\s*critique\s*:\s*", re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.!?\n]")


def first_sentence(text: str) -> str:
    """The normalised first sentence used by :class:`StopRule` (see there)."""
    text = _LABEL_RE.sub("", text.strip())
    text = text.lstrip("\"'*_`> \t")
    m = _SENTENCE_END.search(text)
    if m:
        text = text[: m.start()]
    text = " ".join(text.lower().split())
    return text.strip("\"'*_`:;,- ")


class FewShotRef(_Frozen):
    principle: str
    example: int


class CritiqueRevisionProgram(_Frozen):
    """The supervised (SL-CAI) stage: critique and revise responses for a number of rounds."""

    pool: tuple[str, ...] = Field(description="principles with both critique and revise text, in priority order")
    skipped: tuple[str, ...] = Field((), description="principles lacking critique or revise text (not used here)")
    rounds: int = Field(description="critique/revision rounds: the deployment's `revisions`, capped by the target")
    rounds_requested: int
    selection: Literal["random", "all", "applicable"]
    seed: int
    system: str | None = None
    preamble: tuple[Message, ...] = Field((), description="few-shot dialogues (already neutralised)")
    few_shot: tuple[FewShotRef, ...] = ()
    critique_request: Template
    revision_request: Template
    stop: StopRule


class ChainOfThought(_Frozen):
    enabled: bool = False
    trigger: str = "Let's think step by step:"
    answer_prefix: str = "\nTherefore, the answer is: ("
    clamp_min: float = 0.4
    clamp_max: float = 0.6
    max_new_tokens: int = 256
    stop: tuple[str, ...] = ("Therefore, the answer is", "The answer is")


class ComparisonProgram(_Frozen):
    """The RL-CAI feedback stage: multiple-choice comparison of two responses under a principle."""

    pool: tuple[str, ...] = Field(description="principles with compare text, in priority order")
    template: Template = Field(description="the user message (the paper's multiple-choice format)")
    system: str | None = None
    preamble: tuple[Message, ...] = ()
    few_shot: tuple[FewShotRef, ...] = ()
    answer_prefix: str = "The answer is: ("
    options: tuple[str, str] = ("A", "B")
    scoring: Literal["logprob-softmax"] = "logprob-softmax"
    soft_labels: bool = True
    principles_per_comparison: int = 1
    principle_sampling: Literal["uniform", "weighted"] = "uniform"
    applicable_only: bool = False
    ensemble: Literal["mean"] = "mean"
    position_debias: bool = True
    chain_of_thought: ChainOfThought = ChainOfThought()
    vote: Literal["weighted", "priority"] = "weighted"
    opinion_margin: float = Field(
        0.1, description="in `priority` voting, a principle has an opinion when |p - 0.5| >= this margin"
    )


class ClassifierQuestion(_Frozen):
    facet: str
    values: tuple[str, ...] = Field(description="values allowed by the deployment's assumptions, in facet order")
    ordered: bool = False
    fixed: str | None = Field(None, description="the only allowed value (no question is asked)")
    question: str


class ScenarioClassifier(_Frozen):
    """Tags a prompt with facet values so `when` conditions can select principles.

    Method ``per-facet-logprob``: one question per facet (listing its allowed values); each value
    is scored as a continuation of ``answer_prefix`` and the highest total log-probability wins
    (ties: the earlier value). Scoring closed alternatives needs no parsing of free text, which makes
    it robust with a small model. Only facets used by the deployment's conditions are asked; facets
    fixed by its assumptions are filled in. Datasets may carry ``scenario`` tags instead.
    """

    enabled: bool = True
    method: Literal["per-facet-logprob"] = "per-facet-logprob"
    template: Template
    answer_prefix: str = "Answer:"
    questions: tuple[ClassifierQuestion, ...] = ()


class FeedbackModelIR(_Frozen):
    model: str
    weight: float = 1.0


class RunModels(_Frozen):
    policy: str
    critic: str
    feedback: tuple[FeedbackModelIR, ...]
    classifier: str


class RunGeneration(_Frozen):
    max_new_tokens: int
    temperature: float
    top_p: float
    cot_max_new_tokens: int


class RunParams(_Frozen):
    """Everything the execution layer and the trainers read: settings, target, models, budgets."""

    target: str
    backend: str
    backend_options: dict[str, Any]
    chat_format: ChatFormat
    device: str
    dtype: str
    seed: int
    models: RunModels
    generation: RunGeneration
    settings: dict[str, Any] = Field(description="the deployment's `set` parameters (defaults filled in)")
    sft: dict[str, Any]
    reward_model: dict[str, Any]
    ppo: dict[str, Any]
    dpo: dict[str, Any]


class Provenance(_Frozen):
    constitution: str | None = None
    version: str | None = None
    source: str | None = None
    deployment: str
    target: str
    seed: int
    compiler_version: str
    root_file: str
    files: tuple[tuple[str, str], ...] = Field(description="(path relative to the root's directory, sha256) of every loaded file")
    source_hash: str = Field(description="sha256 over the sorted (relative path, text) of all loaded files")
    program_hash: str = Field("", description="sha256 of the canonical JSON of the program without this field")


# ---------------------------------------------------------------------------- history


class HistoryTurn(_Frozen):
    """One earlier critique/revision round, replayed in later critique prompts."""

    principle_id: str
    critique: str
    revision: str


def _as_turn(item: Any) -> HistoryTurn:
    if isinstance(item, HistoryTurn):
        return item
    if isinstance(item, Mapping):
        return HistoryTurn.model_validate(dict(item))
    if isinstance(item, (tuple, list)) and len(item) == 3:
        return HistoryTurn(principle_id=item[0], critique=item[1], revision=item[2])
    if all(hasattr(item, k) for k in ("principle_id", "critique", "revision")):
        return HistoryTurn(principle_id=item.principle_id, critique=item.critique, revision=item.revision)
    raise TypeError("history items are HistoryTurn, {principle_id, critique, revision} or 3-tuples")


Conversation = str | Sequence[Mapping[str, str] | Message]


# ---------------------------------------------------------------------------- the program


class Program(_Frozen):
    """A compiled constitution for one deployment and one target (see the module docstring)."""

    ir_version: Literal["1"] = IR_VERSION
    provenance: Provenance
    facets: tuple[FacetIR, ...] = ()
    assumptions: tuple[ConditionIR, ...] = ()
    principles: tuple[PrincipleIR, ...] = Field(description="in declaration order")
    priority: PriorityIR
    conflicts: tuple[ConflictIR, ...] = ()
    critique_revision: CritiqueRevisionProgram
    comparison: ComparisonProgram
    scenario_classifier: ScenarioClassifier
    run: RunParams
    source_map: dict[str, tuple[Loc, ...]] = Field(
        default_factory=dict,
        description="JSON pointer into this program -> the `.const` spans the string there came from "
        "(an empty list: built into the compiler)",
    )

    # -------------------------------------------------------------- serialisation

    def canonical_dict(self, *, with_hash: bool = True) -> dict[str, Any]:
        """The program as plain JSON data (what :meth:`to_json` writes)."""
        with gc_paused():
            data = json.loads(self.model_dump_json())
        if not with_hash:
            data["provenance"].pop("program_hash", None)
        return data

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, ``(",", ":")`` separators, UTF-8 text, trailing newline."""
        data = self.canonical_dict()
        with gc_paused():
            return canonical_json(data)

    @classmethod
    def from_json(cls, text: str | bytes) -> "Program":
        return cls.model_validate_json(text)

    def compute_hash(self) -> str:
        return sha256_text(canonical_json(self.canonical_dict(with_hash=False)))

    def verify_hash(self) -> bool:
        return self.provenance.program_hash == self.compute_hash()

    # -------------------------------------------------------------- lookups

    def source_locations(self, pointer: str) -> list[SourceLoc]:
        """The parsed source locations of the string at JSON pointer ``pointer`` ([] if built in)."""
        return [SourceLoc.parse(loc) for loc in self.source_map.get(pointer, ())]

    @cached_property
    def _by_id(self) -> dict[str, PrincipleIR]:
        return {p.id: p for p in self.principles}

    @cached_property
    def _facets(self) -> dict[str, FacetIR]:
        return {f.name: f for f in self.facets}

    @property
    def chat_format(self) -> str:
        return self.run.chat_format

    def principle(self, principle_id: str) -> PrincipleIR:
        try:
            return self._by_id[principle_id]
        except KeyError:
            raise KeyError(f"no principle `{principle_id}` in deployment `{self.provenance.deployment}`") from None

    def applicable(self, principle_id: str, scenario: Mapping[str, str | None] | None) -> bool:
        """Whether the principle's `when` may hold in ``scenario``.

        ``None`` (an untagged prompt) makes every principle applicable; a facet missing from the
        scenario is unknown, and a condition that is unknown (neither surely true nor surely false)
        counts as applicable.
        """
        if scenario is None:
            return True
        return eval_cond(self.principle(principle_id).condition, scenario, self._facets) is not False

    def active_principles(self, scenario: Mapping[str, str | None] | None) -> list[str]:
        return [p.id for p in self.principles if self.applicable(p.id, scenario)]

    def reachable(self, scenario: Mapping[str, str | None]) -> bool | None:
        """Whether ``scenario`` satisfies the deployment's assumptions (None: unknown)."""
        result: bool | None = True
        for a in self.assumptions:
            v = eval_cond(a.condition, scenario, self._facets)
            if v is False:
                return False
            if v is None:
                result = None
        return result

    def rng(self, *key: object) -> random.Random:
        """A ``random.Random`` seeded from the program seed and ``key`` (e.g. a prompt id): stable
        across runs, platforms and processing order."""
        material = json.dumps([self.provenance.seed, [str(k) for k in key]], ensure_ascii=False)
        return random.Random(int.from_bytes(hashlib.sha256(material.encode("utf-8")).digest()[:8], "big"))

    # -------------------------------------------------------------- selection

    def select_principles(
        self,
        round_index: int,
        scenario: Mapping[str, str | None] | None = None,
        rng: random.Random | None = None,
    ) -> list[str]:
        """The principle(s) to critique and revise with in round ``round_index`` (0-based).

        * ``random`` (the paper): one principle of the pool, uniformly.
        * ``all``: every principle of the pool in priority order (applied one after the other).
        * ``applicable``: one principle among those applicable to ``scenario``, sampled with
          probability proportional to its weight (uniformly if all weights are 0); an empty list
          when none applies.

        ``rng`` defaults to ``self.rng("select", round_index)``; pass ``program.rng(prompt_id,
        round_index)`` to vary the choice per prompt.
        """
        cr = self.critique_revision
        if round_index < 0:
            raise ValueError("round_index must be >= 0")
        if not cr.pool:
            return []
        rng = rng if rng is not None else self.rng("select", round_index)
        if cr.selection == "all":
            return list(cr.pool)
        if cr.selection == "random":
            return [rng.choice(cr.pool)]
        candidates = [pid for pid in cr.pool if self.applicable(pid, scenario)]
        if not candidates:
            return []
        return [_weighted_sample(candidates, [self._by_id[c].weight for c in candidates], 1, rng)[0]]

    def comparison_principles(
        self, rng: random.Random | None = None, scenario: Mapping[str, str | None] | None = None
    ) -> list[str]:
        """The principles one comparison is scored under (``principles_per_comparison`` of them,
        without replacement; uniformly, or by weight in `applicable` mode, where only principles
        applicable to ``scenario`` are candidates unless none is)."""
        cmp = self.comparison
        if not cmp.pool:
            return []
        rng = rng if rng is not None else self.rng("compare")
        candidates = list(cmp.pool)
        if cmp.applicable_only and scenario is not None:
            applicable = [pid for pid in candidates if self.applicable(pid, scenario)]
            candidates = applicable or candidates
        k = min(cmp.principles_per_comparison, len(candidates))
        if cmp.principle_sampling == "weighted":
            return _weighted_sample(candidates, [self._by_id[c].weight for c in candidates], k, rng)
        return rng.sample(candidates, k)

    # -------------------------------------------------------------- critique / revision

    def _n(self, text: str) -> str:
        return neutralize(text, self.run.chat_format)

    def _conversation_messages(self, prompt: Conversation, response: str | None) -> list[Message]:
        out: list[Message] = []
        if isinstance(prompt, str):
            out.append(Message(role="user", content=self._n(prompt)))
        else:
            for m in prompt:
                role, content = (m.role, m.content) if isinstance(m, Message) else (m["role"], m["content"])
                if role not in ("user", "assistant"):
                    raise ValueError(f"conversation turns are user or assistant, not {role!r}")
                out.append(Message(role=role, content=self._n(content)))
            if not out or out[-1].role != "user":
                raise ValueError("a conversation must end with a user turn")
        if response is not None:
            out.append(Message(role="assistant", content=self._n(response)))
        return out

    def _system(self, system: str | None) -> list[Message]:
        return [Message(role="system", content=system)] if system is not None else []

    def critique_request_text(self, principle_id: str) -> str:
        p = self.principle(principle_id)
        if p.critique is None:
            raise ValueError(f"principle `{principle_id}` has no critique text")
        return self.critique_revision.critique_request.render({"critique": self._n(p.critique)})

    def revision_request_text(self, principle_id: str) -> str:
        p = self.principle(principle_id)
        if p.revise is None:
            raise ValueError(f"principle `{principle_id}` has no revise text")
        return self.critique_revision.revision_request.render({"revise": self._n(p.revise)})

    def critique_messages(
        self,
        prompt: Conversation,
        response: str,
        principle_id: str,
        history: Iterable[Any] = (),
    ) -> ChatPrompt:
        """The prompt asking the critic to critique ``response`` under a principle.

        Messages: system (if any), the few-shot preamble, the conversation (``prompt`` as one user
        turn, or a list of user/assistant turns ending with a user turn), ``response`` as the
        assistant turn, then per ``history`` turn (earlier rounds) the critique request, the
        critique, the revision request and the revision, and finally the critique request
        ("CritiqueRequest: ..."). To critique only the latest revision, pass it as ``response``
        with no history.
        """
        msgs = [*self._system(self.critique_revision.system), *self.critique_revision.preamble]
        msgs += self._conversation_messages(prompt, response)
        for turn in map(_as_turn, history):
            msgs += [
                Message(role="user", content=self.critique_request_text(turn.principle_id)),
                Message(role="assistant", content=self._n(turn.critique)),
                Message(role="user", content=self.revision_request_text(turn.principle_id)),
                Message(role="assistant", content=self._n(turn.revision)),
            ]
        msgs.append(Message(role="user", content=self.critique_request_text(principle_id)))
        return ChatPrompt(messages=tuple(msgs))

    def revision_messages(
        self,
        prompt: Conversation,
        response: str,
        principle_id: str,
        critique: str,
        history: Iterable[Any] = (),
    ) -> ChatPrompt:
        """The critique prompt, the ``critique`` as the assistant's answer, then "RevisionRequest: ..."."""
        base = self.critique_messages(prompt, response, principle_id, history)
        msgs = [
            *base.messages,
            Message(role="assistant", content=self._n(critique)),
            Message(role="user", content=self.revision_request_text(principle_id)),
        ]
        return ChatPrompt(messages=tuple(msgs))

    def is_satisfied(self, critique: str) -> bool:
        """Whether revising stops after ``critique`` (the stop rule is enabled and matches)."""
        rule = self.critique_revision.stop
        return rule.enabled and rule.matches(critique)

    # -------------------------------------------------------------- comparison

    def _conversation_text(self, conversation: Conversation) -> str:
        if isinstance(conversation, str):
            return "Human: " + self._n(conversation)
        lines = []
        for m in conversation:
            role, content = (m.role, m.content) if isinstance(m, Message) else (m["role"], m["content"])
            label = {"user": "Human", "assistant": "Assistant"}.get(role)
            if label is None:
                raise ValueError(f"conversation turns are user or assistant, not {role!r}")
            lines.append(f"{label}: {self._n(content)}")
        return "\n\n".join(lines)

    def comparison_text(self, conversation: Conversation, response_a: str, response_b: str, principle_id: str) -> str:
        p = self.principle(principle_id)
        if p.compare is None:
            raise ValueError(f"principle `{principle_id}` has no compare text")
        return self.comparison.template.render(
            {
                "conversation": self._conversation_text(conversation),
                "principle": self._n(p.compare),
                "response_a": self._n(response_a),
                "response_b": self._n(response_b),
            }
        )

    def _comparison_base(self, conversation, response_a, response_b, principle_id) -> list[Message]:
        cmp = self.comparison
        return [
            *self._system(cmp.system),
            *cmp.preamble,
            Message(role="user", content=self.comparison_text(conversation, response_a, response_b, principle_id)),
        ]

    def comparison_messages(
        self, conversation: Conversation, response_a: str, response_b: str, principle_id: str
    ) -> ChatPrompt:
        """The multiple-choice prompt; score ``continuations`` ("A", "B") after ``assistant_prefix``."""
        return ChatPrompt(
            messages=tuple(self._comparison_base(conversation, response_a, response_b, principle_id)),
            assistant_prefix=self.comparison.answer_prefix,
            continuations=self.comparison.options,
        )

    def comparison_cot_messages(
        self, conversation: Conversation, response_a: str, response_b: str, principle_id: str
    ) -> ChatPrompt:
        """Chain of thought, step 1: generate reasoning after "Let's think step by step:"."""
        cot = self.comparison.chain_of_thought
        return ChatPrompt(
            messages=tuple(self._comparison_base(conversation, response_a, response_b, principle_id)),
            assistant_prefix=cot.trigger,
            stop=cot.stop,
        )

    def comparison_after_cot(
        self, conversation: Conversation, response_a: str, response_b: str, principle_id: str, reasoning: str
    ) -> ChatPrompt:
        """Chain of thought, step 2: score the options after the reasoning (then :meth:`clamp_cot`)."""
        cot = self.comparison.chain_of_thought
        return ChatPrompt(
            messages=tuple(self._comparison_base(conversation, response_a, response_b, principle_id)),
            assistant_prefix=cot.trigger + " " + self._n(reasoning.strip()) + cot.answer_prefix,
            continuations=self.comparison.options,
        )

    def soft_label(self, logprob_a: float, logprob_b: float) -> float:
        """P(option A) from the options' log-probabilities (softmax over the two); hard 0/1/0.5 when
        ``soft_labels`` is off."""
        if math.isnan(logprob_a) or math.isnan(logprob_b):
            raise ValueError("log-probabilities must not be NaN")
        m = max(logprob_a, logprob_b)
        if m == -math.inf:
            p = 0.5
        else:
            ea, eb = math.exp(logprob_a - m), math.exp(logprob_b - m)
            p = ea / (ea + eb)
        if not self.comparison.soft_labels:
            return 1.0 if p > 0.5 else 0.0 if p < 0.5 else 0.5
        return p

    def debias(self, p_first_as_a: float, p_first_as_b: float | None) -> float:
        """P(first response better) from both orders: the order with the first response as (A)
        gives P(A); the swapped order gives P(A) for the second response. The average of
        ``p_first_as_a`` and ``1 - p_first_as_b`` cancels a position preference."""
        if not self.comparison.position_debias or p_first_as_b is None:
            return p_first_as_a
        return (p_first_as_a + (1.0 - p_first_as_b)) / 2.0

    def clamp_cot(self, p: float) -> float:
        """Chain-of-thought probabilities are over-confident: clamp to [clamp_min, clamp_max]."""
        cot = self.comparison.chain_of_thought
        return min(max(p, cot.clamp_min), cot.clamp_max)

    def combine_votes(
        self, votes: Mapping[str, float], scenario: Mapping[str, str | None] | None = None
    ) -> float:
        """Combine per-principle P(first better) into one label.

        ``weighted``: the weight-average (plain mean if all weights are 0). ``priority``: among the
        principles with an opinion (|p - 0.5| >= ``opinion_margin``), those beaten by a conflict
        rule that decides in ``scenario`` are dropped, then those of the best (lowest) rank decide
        by weight-average; with no opinion at all, the weighted average of every vote.
        """
        if not votes:
            raise ValueError("no votes to combine")
        ids = sorted(votes)
        if self.comparison.vote == "priority":
            margin = self.comparison.opinion_margin
            opinionated = [pid for pid in ids if abs(votes[pid] - 0.5) >= margin]
            if opinionated:
                losers = self._conflict_losers(opinionated, scenario)
                remaining = [pid for pid in opinionated if pid not in losers] or opinionated
                best = min(self.principle(pid).rank for pid in remaining)
                ids = [pid for pid in remaining if self.principle(pid).rank == best]
        return _weighted_mean([votes[i] for i in ids], [self.principle(i).weight for i in ids])

    def _conflict_losers(self, ids: Sequence[str], scenario: Mapping[str, str | None] | None) -> set[str]:
        present = set(ids)
        losers: set[str] = set()
        for rule in self.conflicts:
            if rule.left not in present or rule.right not in present:
                continue
            winner: str | None = None
            decided = False
            for branch in rule.branches:
                v = eval_cond(branch.condition, scenario or {}, self._facets)
                if v is None:
                    decided = True  # unknown: this rule cannot decide
                    winner = None
                    break
                if v:
                    winner, decided = branch.winner, True
                    break
            if not decided:
                winner = rule.otherwise
            if winner is not None:
                losers.add(rule.right if winner == rule.left else rule.left)
        return losers

    def combine_models(self, labels: Sequence[float]) -> float:
        """Weight-average of the feedback models' labels, in ``run.models.feedback`` order."""
        weights = [m.weight for m in self.run.models.feedback]
        if len(labels) != len(weights):
            raise ValueError(f"expected {len(weights)} labels (one per feedback model), got {len(labels)}")
        return _weighted_mean(list(labels), weights)

    # -------------------------------------------------------------- scenario classifier

    def classifier_question(self, facet: str) -> ClassifierQuestion:
        for q in self.scenario_classifier.questions:
            if q.facet == facet:
                return q
        raise KeyError(f"the classifier asks no question about facet `{facet}`")

    def classifier_messages(self, prompt: str, facet: str) -> ChatPrompt:
        """The prompt asking which value of ``facet`` describes ``prompt``; score ``continuations``."""
        q = self.classifier_question(facet)
        text = self.scenario_classifier.template.render({"prompt": self._n(prompt), "question": q.question})
        return ChatPrompt(
            messages=(Message(role="user", content=text),),
            assistant_prefix=self.scenario_classifier.answer_prefix,
            continuations=tuple(" " + v for v in q.values),
        )

    def classify(self, facet: str, logprobs: Sequence[float]) -> str:
        """The value with the highest log-probability (ties: the earlier value)."""
        q = self.classifier_question(facet)
        if q.fixed is not None:
            return q.fixed
        if len(logprobs) != len(q.values):
            raise ValueError(f"expected {len(q.values)} scores for facet `{facet}`, got {len(logprobs)}")
        best = max(range(len(q.values)), key=lambda i: (logprobs[i], -i))
        return q.values[best]

    def fixed_facets(self) -> dict[str, str]:
        """Facet values fixed by the deployment's assumptions."""
        return {q.facet: q.fixed for q in self.scenario_classifier.questions if q.fixed is not None}

    # -------------------------------------------------------------- text rendering

    def render_text(self, prompt: ChatPrompt, *, add_generation_prompt: bool = True) -> str:
        """The prompt as raw text in the target's chat format (not for ``model``: use the tokenizer)."""
        return render_chat(prompt.messages, self.run.chat_format, add_generation_prompt, prompt.assistant_prefix)


# ---------------------------------------------------------------------------- helpers


def _weighted_mean(values: Sequence[float], weights: Sequence[float]) -> float:
    total = sum(weights)
    if total <= 0:
        return sum(values) / len(values)
    return sum(v * w for v, w in zip(values, weights)) / total


def _weighted_sample(items: Sequence[str], weights: Sequence[float], k: int, rng: random.Random) -> list[str]:
    """``k`` distinct items, each draw proportional to weight among the remaining (uniform if all 0)."""
    items, weights = list(items), [max(float(w), 0.0) for w in weights]
    out: list[str] = []
    for _ in range(min(k, len(items))):
        total = sum(weights)
        if total <= 0:
            i = rng.randrange(len(items))
        else:
            x = rng.random() * total
            acc = 0.0
            i = len(items) - 1
            for j, w in enumerate(weights):
                acc += w
                if x < acc:
                    i = j
                    break
        out.append(items.pop(i))
        weights.pop(i)
    return out


@contextlib.contextmanager
def gc_paused():
    """Pause the cyclic garbage collector for an allocation-heavy step.

    Building or dumping a large program allocates many short-lived containers while a large AST
    is alive; each automatic collection would traverse all of it again (for 5,000 principles,
    collections took most of the time). Those allocations are freed by reference counting; the
    collector is re-enabled afterwards if it was enabled.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def canonical_json(data: Any) -> str:
    """Sorted keys, ``(",", ":")`` separators, non-ASCII kept, no NaN/Infinity, trailing newline."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False) + "\n"


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def render_chat(
    messages: Sequence[Message],
    chat_format: str,
    add_generation_prompt: bool = True,
    assistant_prefix: str = "",
) -> str:
    """Render messages as raw text for ``chatml``, ``llama3``, ``llama2`` or ``mistral``.

    Contents are inserted as given: the Program's rendering API has already neutralised control
    tokens in them. ``model`` (the tokenizer's own template) cannot be rendered here.
    """
    if chat_format == "chatml":
        text = "".join(f"<|im_start|>{m.role}\n{m.content}<|im_end|>\n" for m in messages)
        if add_generation_prompt:
            text += "<|im_start|>assistant\n" + assistant_prefix
        return text
    if chat_format == "llama3":
        text = "<|begin_of_text|>" + "".join(
            f"<|start_header_id|>{m.role}<|end_header_id|>\n\n{m.content}<|eot_id|>" for m in messages
        )
        if add_generation_prompt:
            text += "<|start_header_id|>assistant<|end_header_id|>\n\n" + assistant_prefix
        return text
    if chat_format in ("llama2", "mistral"):
        system = None
        rest = list(messages)
        if rest and rest[0].role == "system":
            system, rest = rest[0].content, rest[1:]
        text = ""
        pending_user: str | None = None
        for m in rest:
            if m.role == "user":
                content = m.content
                if system is not None:
                    content = (f"<<SYS>>\n{system}\n<</SYS>>\n\n" if chat_format == "llama2" else system + "\n\n") + content
                    system = None
                pending_user = content
                text += f"<s>[INST] {content} [/INST]"
            elif m.role == "assistant":
                text += f" {m.content} </s>"
                pending_user = None
            else:
                raise ValueError("a system message may only come first")
        if add_generation_prompt:
            text += (" " if pending_user is not None and assistant_prefix else "") + assistant_prefix
        return text
    raise ValueError(
        f"chat format `{chat_format}` has no built-in renderer; the backend renders with the tokenizer's template"
    )


def ir_json_schema() -> dict[str, Any]:
    """The JSON Schema of :class:`Program` (committed as ``docs/ir.schema.json``)."""
    schema = Program.model_json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": f"cai-dsl compiled program (IR version {IR_VERSION})",
        **{k: v for k, v in schema.items() if k != "title"},
    }


def ir_json_schema_text() -> str:
    return json.dumps(ir_json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


if __name__ == "__main__":  # python -m cai_dsl.compile.ir > docs/ir.schema.json
    import sys

    sys.stdout.write(ir_json_schema_text())
