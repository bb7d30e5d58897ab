"""The compiled form of a constitution: a deterministic prompt program (the IR).

A :class:`Program` is what ``cai compile`` writes for one deployment and one target. It is a
frozen pydantic model, versioned by :data:`IR_VERSION`, serialised as canonical JSON
(:meth:`Program.to_json`: sorted keys, fixed separators, UTF-8, trailing newline) and published
as a JSON Schema (:func:`ir_json_schema`, committed as ``docs/ir.schema.json``; the format is
described in ``docs/ir.md``).

Besides the data, a Program carries the *pure rendering API* the execution layer calls
(implemented by the mixins :class:`~cai_dsl.compile.prompts.PromptBuilder` and
:class:`~cai_dsl.compile.voting.Voting`):
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

import hashlib
import json
import random
import re
from functools import cached_property
from typing import Any, ClassVar, Literal, Mapping

from pydantic import Field, model_serializer

from cai_dsl.compile.targets import BackendOptions, DPOParams, PPOParams, RewardModelParams, SFTParams
from cai_dsl.compile.base import Frozen, Loc, SourceLoc, canonical_json, gc_paused, sha256_text
from cai_dsl.compile.chat import ChatFormat, ChatPrompt, Message, Role, render_chat
from cai_dsl.compile.conditions import Cond, CondOp, FacetIR, eval_cond
from cai_dsl.compile.escaping import CONTROL_TOKEN_PATTERNS, contains_control_token, neutralize
from cai_dsl.compile.prompts import Conversation, HistoryTurn, PromptBuilder
from cai_dsl.compile.templates import Template, TemplatePart, template
from cai_dsl.compile.voting import Voting

__all__ = [
    "CONTROL_TOKEN_PATTERNS",
    "IR_VERSION",
    "SCHEMA_ID",
    "BehaviorIR",
    "ChainOfThought",
    "ChatFormat",
    "ChatPrompt",
    "ClassifierQuestion",
    "CompareExampleIR",
    "ComparisonProgram",
    "Cond",
    "CondOp",
    "ConditionIR",
    "ConflictBranchIR",
    "ConflictIR",
    "Conversation",
    "CritiqueExampleIR",
    "CritiqueRevisionProgram",
    "FacetIR",
    "FeedbackModelIR",
    "FewShotRef",
    "HistoryTurn",
    "Loc",
    "Message",
    "PrincipleIR",
    "PriorityIR",
    "Program",
    "Provenance",
    "Role",
    "RunGeneration",
    "RunModels",
    "RunParams",
    "ScenarioClassifier",
    "SourceLoc",
    "StopRule",
    "Template",
    "TemplatePart",
    "canonical_json",
    "contains_control_token",
    "eval_cond",
    "first_sentence",
    "gc_paused",
    "ir_json_schema",
    "ir_json_schema_text",
    "neutralize",
    "render_chat",
    "sha256_text",
    "template",
]

IR_VERSION = "1"
"""Version of the IR format. Bumped on any incompatible change of the JSON layout."""

SCHEMA_ID = "https://cai-dsl.dev/schemas/ir-v1.schema.json"


# ---------------------------------------------------------------------------- principles


class _OmitsEmpty(Frozen):
    """Serialised without the fields in ``_omit_empty`` while they are empty (the fields added
    after IR version 1 shipped: a program that uses none of them keeps its bytes and hash)."""

    _omit_empty: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _omit(self, handler):
        data = handler(self)
        for key in self._omit_empty:
            if data.get(key) in (None, [], ()):
                data.pop(key, None)
        return data


class CritiqueExampleIR(_OmitsEmpty):
    """A critique/revision few-shot: the dialogue ``turns``, then prompt, response, critique,
    revision; ``critique_request``/``revision_request`` replace the principle's texts for it."""

    _omit_empty = ("turns", "critique_request", "revision_request")
    turns: tuple[Message, ...] = Field((), description="the dialogue before `prompt`, in order")
    prompt: str | None = None
    response: str | None = None
    critique_request: str | None = None
    critique: str | None = None
    revision_request: str | None = None
    revision: str | None = None

    @property
    def complete(self) -> bool:
        return None not in (self.prompt, self.response, self.critique, self.revision)


class CompareExampleIR(_OmitsEmpty):
    """A labelled comparison after the dialogue ``turns``; ``compare_request`` replaces the
    principle's ``compare`` text for it; ``rationale`` says why ``better`` is better."""

    _omit_empty = ("turns", "compare_request", "rationale")
    turns: tuple[Message, ...] = Field((), description="the dialogue before `prompt`, in order")
    prompt: str | None = None
    compare_request: str | None = None
    a: str | None = None
    b: str | None = None
    better: Literal["a", "b"] | None = None
    rationale: str | None = None

    @property
    def complete(self) -> bool:
        return None not in (self.prompt, self.a, self.b, self.better)


class PrincipleIR(Frozen):
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
    authority: str | None = Field(None, description="the lowest authority level allowed to change it (None: the highest)")
    authority_rank: int = Field(
        0, description="its level's position among the declared levels, 0 the highest; a lower one wins a clash first"
    )
    final: bool = Field(False, description="no deployment may exclude, override or outrank it")
    span: Loc


class BehaviorIR(Frozen):
    """A behavior the deployment's principles use, and how it is observed in a response."""

    name: str
    description: str | None = None
    markers: tuple[str, ...] = Field(
        (), description="phrases matched case-insensitively on word boundaries (cai_dsl.lang.observe.marker_regex)"
    )
    patterns: tuple[str, ...] = Field((), description="Python regular expressions, searched case-insensitively")
    judges: tuple[str, ...] = Field((), description="yes/no questions for a judge model")
    openings: tuple[str, ...] = Field((), description="canonical openings of a response that exhibits it")
    exclusive_with: tuple[str, ...] = Field(
        (), description="the other members of its `exclusive` sets, sorted (at most one of them holds)"
    )


class PriorityIR(Frozen):
    """The deployment's priority order among its principles."""

    order: tuple[str, ...] = Field(
        description="a linear extension of the partial order: by authority rank, then rank, then weight "
        "(higher first), then id"
    )
    edges: tuple[tuple[str, str], ...] = Field((), description="stated (higher, lower) pairs, deduplicated and sorted")


class ConditionIR(Frozen):
    when: str
    condition: Cond


class ConflictBranchIR(Frozen):
    when: str
    condition: Cond
    winner: str


class ConflictIR(Frozen):
    left: str
    right: str
    branches: tuple[ConflictBranchIR, ...] = ()
    otherwise: str | None = None


# ---------------------------------------------------------------------------- programs


class StopRule(Frozen):
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


class FewShotRef(Frozen):
    principle: str | None = Field(
        description="the principle whose example it is (None: a shared example, `example` indexes the program's)"
    )
    example: int


class CritiqueRevisionProgram(Frozen):
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


class ChainOfThought(Frozen):
    enabled: bool = False
    trigger: str = "Let's think step by step:"
    answer_prefix: str = "\nTherefore, the answer is: ("
    clamp_min: float = 0.4
    clamp_max: float = 0.6
    max_new_tokens: int = 256
    stop: tuple[str, ...] = ("Therefore, the answer is", "The answer is")


class ComparisonProgram(Frozen):
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


class ClassifierQuestion(Frozen):
    facet: str
    values: tuple[str, ...] = Field(description="values allowed by the deployment's assumptions, in facet order")
    ordered: bool = False
    fixed: str | None = Field(None, description="the only allowed value (no question is asked)")
    question: str


class ScenarioClassifier(Frozen):
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


class FeedbackModelIR(Frozen):
    model: str
    weight: float = 1.0


class RunModels(Frozen):
    policy: str
    critic: str
    feedback: tuple[FeedbackModelIR, ...]
    classifier: str


class RunGeneration(Frozen):
    max_new_tokens: int
    temperature: float
    top_p: float
    cot_max_new_tokens: int


class RunParams(Frozen):
    """Everything the execution layer and the trainers read: settings, target, models, budgets."""

    target: str
    backend: str
    backend_options: BackendOptions
    chat_format: ChatFormat
    device: str
    dtype: str
    seed: int
    models: RunModels
    generation: RunGeneration
    settings: dict[str, Any] = Field(description="the deployment's `set` parameters (defaults filled in)")
    sft: SFTParams = Field(description="the target's `[sft]` table, as typed there")
    reward_model: RewardModelParams = Field(description="the target's `[reward_model]` table")
    ppo: PPOParams = Field(description="the target's `[ppo]` table")
    dpo: DPOParams = Field(description="the target's `[dpo]` table")


class Provenance(Frozen):
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


# ---------------------------------------------------------------------------- the program


class Program(PromptBuilder, Voting, _OmitsEmpty):
    """A compiled constitution for one deployment and one target (see the module docstring)."""

    _omit_empty = ("examples", "compare_examples")

    ir_version: Literal["1"] = IR_VERSION
    provenance: Provenance
    facets: tuple[FacetIR, ...] = ()
    assumptions: tuple[ConditionIR, ...] = ()
    principles: tuple[PrincipleIR, ...] = Field(description="in declaration order")
    examples: tuple[CritiqueExampleIR, ...] = Field((), description="the shared (top-level) critique examples, in order")
    compare_examples: tuple[CompareExampleIR, ...] = Field(
        (), description="the shared (top-level) comparison examples, in order"
    )
    behaviors: tuple[BehaviorIR, ...] = Field((), description="the behaviors the principles use, sorted by name")
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

    @cached_property
    def _behaviors(self) -> dict[str, BehaviorIR]:
        return {b.name: b for b in self.behaviors}

    def behavior(self, name: str) -> BehaviorIR:
        try:
            return self._behaviors[name]
        except KeyError:
            raise KeyError(f"no behavior `{name}` used in deployment `{self.provenance.deployment}`") from None

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
