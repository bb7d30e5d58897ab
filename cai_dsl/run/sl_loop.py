"""The SL-CAI loop: initial responses, scenario tags, then critique -> revision rounds, batched per stage.

:class:`SLRunner` runs a compiled program over a chunk of prompts (one batched call per stage) with the
backends of a :class:`ModelSet`; :class:`SLOptions` are its knobs (``None``: the program's value).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from cai_dsl.compile.ir import ChatPrompt, HistoryTurn, Program
from cai_dsl.run.backends.base import BackendError, GenerationParams, Prompt
from cai_dsl.run.context import ExecutionContext
from cai_dsl.run.data import PromptItem
from cai_dsl.run.errors import SLError
from cai_dsl.run.generation import BatchedGenerator, mix_seed
from cai_dsl.run.policy.score import PolicyError
from cai_dsl.run.prompts import policy_prompt
from cai_dsl.run.sl_gate import Opening, RevisionGate, continue_opening, first_sentence, last_sentences

__all__ = ["STOP_STRINGS", "ModelSet", "NoProgress", "SLOptions", "SLRunner", "last_user_text"]

STOP_STRINGS = ("CritiqueRequest:", "RevisionRequest:")
"""Generated critiques and revisions are cut where the model starts writing the next request itself."""


def last_user_text(prompt: str | Sequence[Mapping[str, str]]) -> str:
    """The text of a conversation's last user turn (the prompt itself for a plain string)."""
    if isinstance(prompt, str):
        return prompt
    for m in reversed(list(prompt)):
        if m.get("role") == "user":
            return m.get("content", "")
    return ""


class ModelSet:
    """The job's backends by role (policy, critic, classifier), loading each distinct model once through
    the program's :class:`~cai_dsl.run.context.ExecutionContext`.

    Models are loaded lazily (the classifier only when a prompt has no scenario tags).
    """

    def __init__(self, program: Program, *, batch_size: int | None = None, prefix_cache: bool = True):
        self.program = program
        self.context = ExecutionContext.of(program)
        self.batch_size = batch_size or program.run.backend_options.batch_size
        self.prefix_cache = prefix_cache
        self._loaded: dict[str, Any] = {}
        self._generators: dict[str, BatchedGenerator] = {}

    def _backend(self, spec: str) -> Any:
        if spec in self._loaded:
            return self._loaded[spec]
        from cai_dsl.run.loading import ModelError

        try:
            backend = self.context.backend(spec, batch_size=self.batch_size)
        except (ModelError, BackendError) as exc:
            raise SLError(str(exc)) from None
        self._loaded[spec] = backend
        return backend

    def generator(self, role: str) -> BatchedGenerator:
        """The batched generator of ``role`` (``policy`` or ``critic``); same model -> same generator."""
        spec = self.spec(role)
        if spec not in self._generators:
            self._generators[spec] = BatchedGenerator(
                self._backend(spec), batch_size=self.batch_size, prefix_cache=self.prefix_cache
            )
        return self._generators[spec]

    def backend(self, role: str) -> Any:
        return self._backend(self.spec(role))

    def spec(self, role: str) -> str:
        models = self.program.run.models
        return {"policy": models.policy, "critic": models.critic, "classifier": models.classifier}[role]

    @classmethod
    def from_backend(cls, program: Program, backend: Any, *, batch_size: int | None = None) -> "ModelSet":
        """Every role played by one existing backend (``cai serve``, tests)."""
        models = cls(program, batch_size=batch_size or getattr(backend, "batch_size", None))
        for role in ("policy", "critic", "classifier"):
            models._loaded[models.spec(role)] = backend
        return models


@dataclass(frozen=True)
class SLOptions:
    """Knobs of the SL-CAI pipeline; ``None`` means: the program's value.

    ``history``: critique later rounds with the earlier rounds in context (the paper), else critique
    only the latest revision. ``chunk_size``: prompts processed together (and the unit of resumption);
    default four batches. ``gate``: gate revisions by quality and policy score (:mod:`cai_dsl.run.sl_gate`;
    needs the constitution, so :func:`~cai_dsl.run.sl.run_sl` builds it). ``openings``: under the gate,
    start a revision from a canonical opening where the policy requires an absent behavior. ``trim``: a
    generated response or revision cut by the token budget is kept up to its last complete sentence
    (:func:`~cai_dsl.run.sl_gate.last_sentences`; the record lists what was trimmed under ``trimmed``).
    ``opening_tries``: continuations of a canonical opening sampled until the gate would accept one.
    """

    rounds: int | None = None
    max_new_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    batch_size: int | None = None
    chunk_size: int | None = None
    history: bool = True
    prefix_cache: bool = True
    gate: bool = True
    openings: bool = True
    trim: bool = True
    opening_tries: int = 5

    def resolved(self, program: Program) -> "SLOptions":
        gen = program.run.generation
        batch = self.batch_size or program.run.backend_options.batch_size
        return SLOptions(
            rounds=program.critique_revision.rounds if self.rounds is None else self.rounds,
            max_new_tokens=gen.max_new_tokens if self.max_new_tokens is None else self.max_new_tokens,
            temperature=gen.temperature if self.temperature is None else self.temperature,
            top_p=gen.top_p if self.top_p is None else self.top_p,
            batch_size=batch,
            chunk_size=self.chunk_size or 4 * batch,
            history=self.history,
            prefix_cache=self.prefix_cache,
            gate=self.gate,
            openings=self.openings,
            trim=self.trim,
            opening_tries=self.opening_tries,
        )


class NoProgress:
    """The progress interface of :meth:`SLRunner.run_chunk`, doing nothing."""

    def stage(self, name: str, total: int) -> Callable[[int, int], None]:
        return lambda rows, tokens: None

    def done_stage(self) -> None:
        pass

    def records(self, n: int) -> None:
        pass


class SLRunner:
    """Runs the critique/revision program over chunks of prompts (one batched call per stage).

    With a ``gate`` (:class:`~cai_dsl.run.sl_gate.RevisionGate`) revisions are kept only when they pass
    it, canonical openings apply, and each result's SFT ``target`` is gated; without one every
    non-empty revision is kept (``cai revise``, ``cai serve``).
    """

    def __init__(
        self, program: Program, models: ModelSet, options: SLOptions | None = None, *, gate: RevisionGate | None = None
    ):
        self.program = program
        self.models = models
        self.options = (options or SLOptions()).resolved(program)
        self.gate = gate
        if self.options.rounds and not program.critique_revision.pool:
            skipped = ", ".join(program.critique_revision.skipped[:5]) or "none"
            raise SLError(
                f"deployment `{program.provenance.deployment}` has no principle with both critique and revise "
                f"text, which SL-CAI needs (principles without them: {skipped}); use a deployment with critique "
                "principles, or --rounds 0"
            )

    # -- scenario tags ------------------------------------------------------------------------------------

    def _classifier_facets(self) -> list[str]:
        sc = self.program.scenario_classifier
        if not sc.enabled or not self.program.run.settings.get("classify_scenarios", True):
            return []
        return [q.facet for q in sc.questions if q.fixed is None]

    def tag(self, items: Sequence[PromptItem]) -> list[tuple[dict[str, str] | None, str]]:
        """(scenario, source) per item: ``data`` tags, else ``classifier`` tags, else ``none``.

        Facets fixed by the deployment's assumptions are filled in where missing.
        """
        fixed = self.program.fixed_facets()
        out: list[tuple[dict[str, str] | None, str]] = []
        todo: list[int] = []
        for i, item in enumerate(items):
            if item.scenario is not None:
                out.append(({**fixed, **item.scenario}, "data"))
            else:
                out.append((dict(fixed) if fixed else None, "none"))
                todo.append(i)
        facets = self._classifier_facets()
        if not todo or not facets:
            return out
        backend = self.models.backend("classifier")
        tags: dict[int, dict[str, str]] = {i: dict(fixed) for i in todo}
        for facet in facets:
            chats = [self.program.classifier_messages(last_user_text(items[i].prompt), facet) for i in todo]
            continuations = list(chats[0].continuations)
            try:
                scores = backend.score([Prompt.from_chat(c) for c in chats], continuations)
            except NotImplementedError:
                return out
            for i, s in zip(todo, scores, strict=True):
                tags[i][facet] = self.program.classify(facet, s)
        for i in todo:
            out[i] = (tags[i], "classifier")
        return out

    # -- generation helpers -------------------------------------------------------------------------------

    def _params(self, *key: object) -> GenerationParams:
        o = self.options
        return GenerationParams(
            max_new_tokens=int(o.max_new_tokens or 0),
            temperature=float(o.temperature or 0.0),
            top_p=float(o.top_p or 1.0),
            seed=mix_seed(self.program.provenance.seed, *key),
        )

    def initial_prompt(self, item: PromptItem) -> Prompt:
        """The policy's prompt for ``item`` (the one rendering of :mod:`cai_dsl.run.prompts`)."""
        return policy_prompt(self.program, item.prompt)

    def _conversation(self, item: PromptItem) -> Any:
        return item.prompt if isinstance(item.prompt, str) else [dict(m) for m in item.prompt]

    # -- one chunk ----------------------------------------------------------------------------------------

    def run_chunk(
        self,
        items: Sequence[PromptItem],
        key: str,
        *,
        initial: Sequence[str | None] | None = None,
        progress: Any = None,
        on_step: Callable[[str, int, dict], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Run the whole pipeline on ``items`` (one batched call per stage); return one result per item.

        ``key`` seeds the chunk's generation calls. ``initial`` gives known responses (None: generate).
        ``on_step(kind, index, data)`` is called after each step of each item (``initial``,
        ``critique``, ``revision``), e.g. to print the loop as it runs.
        """
        c = _Chunk(items=list(items), key=key, progress=progress or NoProgress(), on_step=on_step)
        tags = self.tag(items)
        c.results = [
            {
                "scenario": tags[i][0],
                "scenario_source": tags[i][1],
                "initial": None,
                "rounds": [],
                "final": None,
                "stopped": None,
                "tokens": {"initial": 0, "critique": 0, "revision": 0},
                "trimmed": [],
            }
            for i in range(len(items))
        ]
        self._initial(c, initial)
        active = []
        for i, item in enumerate(items):
            if item.helpful:
                c.results[i]["stopped"] = "helpful"
            else:
                active.append(i)
        for r in range(int(self.options.rounds or 0)):
            active = self._round(c, r, active)
        for i, res in enumerate(c.results):
            if res["stopped"] is None:
                res["stopped"] = "rounds"
            res.update(self._target(c, i))
        return c.results

    def _initial(self, c: "_Chunk", initial: Sequence[str | None] | None) -> None:
        """Initial responses (generated where not given), and their policy scores under the gate."""
        n = len(c.items)
        need = [i for i in range(n) if initial is None or initial[i] is None]
        finish: list[str | None] = [None] * n
        for i in range(n):
            if i not in need:
                c.results[i]["initial"] = initial[i]  # type: ignore[index]
        if need:
            gens = self.models.generator("policy").generate(
                [self.initial_prompt(c.items[i]) for i in need],
                self._params(c.key, "initial"),
                on_batch=c.progress.stage("initial responses", len(need)),
            )
            c.progress.done_stage()
            for i, g in zip(need, gens, strict=True):
                c.results[i]["initial"], finish[i] = self._trim(c, i, "initial", g.text.strip(), g.finish_reason)
                c.results[i]["tokens"]["initial"] = g.completion_tokens
        for i in range(n):
            c.results[i]["final"] = c.current[i] = c.base[i] = c.results[i]["initial"]
            c.history[i] = []
            if c.on_step:
                c.on_step("initial", i, {"response": c.results[i]["initial"]})
        if self.gate is not None:
            scored = self._score(c, list(range(n)), [c.current[i] for i in range(n)], finish)
            c.scored = dict(enumerate(scored))

    def _score(self, c: "_Chunk", rows: list[int], texts: list[str], finish: Sequence[str | None]) -> list[Any]:
        assert self.gate is not None
        try:
            return self.gate.score(
                texts,
                [last_user_text(c.items[i].prompt) for i in rows],
                [c.results[i]["scenario"] for i in rows],
                finish,
            )
        except PolicyError as exc:
            raise SLError(f"cannot score responses against the policy: {exc}") from None

    def _round(self, c: "_Chunk", r: int, active: list[int]) -> list[int]:
        """One round: canonical openings where the policy requires an absent behavior, else
        critique -> revision with the program's principles; returns the prompts still active."""
        program = self.program
        openings = {}
        if self.gate is not None and self.options.openings:
            for i in active:
                o = self.gate.opening(c.scored[i], program.rng(c.items[i].id, "opening", r))
                if o is not None:
                    openings[i] = o
        plan: dict[int, list[str]] = {}
        for i in active:
            if i in openings:
                continue
            pids = program.select_principles(r, c.results[i]["scenario"], program.rng(c.items[i].id, r))
            if pids:
                plan[i] = pids
            else:
                c.results[i]["stopped"] = "no_principle"
        active = [i for i in active if i in plan or i in openings]
        if openings:
            self._opening_step(c, r, openings)
        steps = max((len(v) for v in plan.values()), default=0)
        for s in range(steps):
            rows = [i for i in active if i in plan and s < len(plan[i])]
            if not rows:
                break
            self._critique_step(c, r, s, steps, rows, plan)
            active = [i for i in active if c.results[i]["stopped"] is None]
        return active

    def _opening_step(self, c: "_Chunk", r: int, openings: Mapping[int, Opening]) -> None:
        """Revisions started from a canonical opening (the critique is skipped: nothing to critique). A
        continuation the gate would reject is sampled again, up to ``options.opening_tries`` times; the
        record keeps the last one and the number of tries."""
        rows = list(openings)
        found: dict[int, tuple[str, str | None, int]] = {}
        todo = rows
        tries = max(1, int(self.options.opening_tries or 1))
        for attempt in range(tries):
            prompts = [replace(self.initial_prompt(c.items[i]), assistant_prefix=openings[i].text) for i in todo]
            key = (c.key, "opening", r) if attempt == 0 else (c.key, "opening", r, attempt)
            gens = self.models.generator("policy").generate(
                prompts, self._params(*key), on_batch=c.progress.stage(f"openings round {r + 1}", len(todo))
            )
            c.progress.done_stage()
            texts, finish = [], []
            for i, g in zip(todo, gens, strict=True):
                cont, cut = first_sentence(g.text)
                texts.append(continue_opening(openings[i].text, cont))
                finish.append("stop" if cut else g.finish_reason)
                c.results[i]["tokens"]["revision"] += g.completion_tokens
                found[i] = (texts[-1], finish[-1], attempt + 1)
            if self.gate is None or attempt + 1 == tries:
                break
            after = self._score(c, todo, texts, finish)
            todo = [i for i, a in zip(todo, after, strict=True) if not self.gate.judge(c.scored[i], a).accepted]
            if not todo:
                break
        for i in rows:
            o = openings[i]
            turn = _turn(r, o.principle, None, "opening", revision=found[i][0], behavior=o.behavior, opening=o.text)
            turn["tries"] = found[i][2]
            c.results[i]["rounds"].append(turn)
        self._apply(c, rows, [found[i][0] for i in rows], [found[i][1] for i in rows], opening=True)

    def _critique_step(self, c: "_Chunk", r: int, s: int, steps: int, rows: list[int], plan: Mapping[int, list[str]]) -> None:
        program, progress = self.program, c.progress
        critic = self.models.generator("critic")
        label = f"round {r + 1}" + (f".{s + 1}" if steps > 1 else "")
        crit_prompts = [
            self._critique_prompt(c.items[i], c.base[i], c.current[i], plan[i][s], c.history[i]) for i in rows
        ]
        crit = critic.generate(
            [Prompt.from_chat(p) for p in crit_prompts],
            replace(self._params(c.key, "critique", r, s), stop=STOP_STRINGS),
            on_batch=progress.stage(f"critiques {label}", len(rows)),
        )
        progress.done_stage()
        revise_rows = []
        for i, g in zip(rows, crit, strict=True):
            critique = g.text.strip()
            c.results[i]["tokens"]["critique"] += g.completion_tokens
            turn = _turn(r, plan[i][s], critique, "critique")
            c.results[i]["rounds"].append(turn)
            if program.is_satisfied(critique):
                turn["satisfied"] = True
                c.results[i]["stopped"] = "satisfied"
            else:
                revise_rows.append(i)
            if c.on_step:
                c.on_step("critique", i, dict(turn))
        if not revise_rows:
            return
        rev_prompts = [
            self._revision_prompt(
                c.items[i], c.base[i], c.current[i], plan[i][s], c.results[i]["rounds"][-1]["critique"], c.history[i]
            )
            for i in revise_rows
        ]
        revs = critic.generate(
            [Prompt.from_chat(p) for p in rev_prompts],
            replace(self._params(c.key, "revision", r, s), stop=STOP_STRINGS),
            on_batch=progress.stage(f"revisions {label}", len(revise_rows)),
        )
        progress.done_stage()
        texts, finish = [], []
        for i, g in zip(revise_rows, revs, strict=True):
            text, reason = self._trim(c, i, f"revision {r + 1}.{s + 1}", g.text.strip(), g.finish_reason)
            texts.append(text)
            finish.append(reason)
            c.results[i]["rounds"][-1]["revision"] = text
            c.results[i]["tokens"]["revision"] += g.completion_tokens
        self._apply(c, revise_rows, texts, finish, opening=False)

    def _trim(self, c: "_Chunk", i: int, what: str, text: str, finish: str | None) -> tuple[str, str | None]:
        """``text`` up to its last complete sentence when the token budget cut it (``options.trim``)."""
        if not self.options.trim:
            return text, finish
        text, finish, trimmed = last_sentences(text, finish)
        if trimmed:
            c.results[i]["trimmed"].append(what)
        return text, finish

    def _apply(self, c: "_Chunk", rows: list[int], texts: list[str], finish: list[str | None], *, opening: bool) -> None:
        """Gate the rows' new revisions (ungated: every non-empty one is kept) and keep the accepted ones."""
        verdicts = None
        if self.gate is not None:
            after = self._score(c, rows, texts, finish)
            verdicts = [(self.gate.judge(c.scored[i], a), a) for i, a in zip(rows, after, strict=True)]
        for k, (i, text) in enumerate(zip(rows, texts, strict=True)):
            turn = c.results[i]["rounds"][-1]
            keep = bool(text)
            if verdicts is not None:
                verdict, scored = verdicts[k]
                turn["gate"] = verdict.model_dump(mode="json")
                turn["accepted"] = keep = verdict.accepted
                if keep:
                    c.scored[i] = scored
            if not opening and (keep or verdicts is None):
                c.history[i].append(HistoryTurn(principle_id=turn["principle"], critique=turn["critique"], revision=text))
            if keep:
                c.current[i] = c.results[i]["final"] = text
                if opening:  # the critique history starts again from the opened response
                    c.base[i], c.history[i] = text, []
            if c.on_step:
                c.on_step("revision", i, dict(turn))

    def _target(self, c: "_Chunk", i: int) -> dict[str, Any]:
        """The record's SFT target: its last kept response (the last accepted revision, else the initial
        response) if that passes the gate's target check, else None (excluded from SFT); ungated: the
        final response."""
        res = c.results[i]
        if self.gate is None:
            revised = any(t.get("revision") for t in res["rounds"])
            return {"target": res["final"] or None, "target_source": "revision" if revised else "initial", "target_check": None}
        source = "revision" if any(t.get("accepted") for t in res["rounds"]) else "initial"
        check = self.gate.check_target(c.scored[i])
        return {
            "target": res["final"] if check.ok else None,
            "target_source": source if check.ok else None,
            "target_check": check.model_dump(mode="json"),
        }

    def _critique_prompt(
        self, item: PromptItem, initial: str, current: str, pid: str, history: list[HistoryTurn]
    ) -> ChatPrompt:
        conv = self._conversation(item)
        if self.options.history:  # the paper: the initial response, then every earlier round as turns
            return self.program.critique_messages(conv, initial, pid, history)
        return self.program.critique_messages(conv, current, pid, ())

    def _revision_prompt(
        self, item: PromptItem, initial: str, current: str, pid: str, critique: str, history: list[HistoryTurn]
    ) -> ChatPrompt:
        conv = self._conversation(item)
        if self.options.history:
            return self.program.revision_messages(conv, initial, pid, critique, history)
        return self.program.revision_messages(conv, current, pid, critique, ())


def _turn(
    r: int,
    principle: str,
    critique: str | None,
    mode: str,
    *,
    revision: str | None = None,
    behavior: str | None = None,
    opening: str | None = None,
) -> dict[str, Any]:
    """One round's record: ``mode`` ``critique`` (critique -> revision) or ``opening`` (a canonical
    opening continued by the policy; ``critique`` None, ``skipped: "opening"``); ``gate``/``accepted``
    are filled in when the revision is gated."""
    return {
        "round": r,
        "principle": principle,
        "mode": mode,
        "critique": critique,
        "skipped": "opening" if mode == "opening" else None,
        "satisfied": False,
        "revision": revision,
        "behavior": behavior,
        "opening": opening,
        "gate": None,
        "accepted": None,
    }


@dataclass
class _Chunk:
    """The working state of one :meth:`SLRunner.run_chunk` call."""

    items: list[PromptItem]
    key: str
    progress: Any
    on_step: Callable[[str, int, dict], None] | None
    results: list[dict[str, Any]] = field(default_factory=list)
    current: dict[int, str] = field(default_factory=dict)  # the latest kept response
    base: dict[int, str] = field(default_factory=dict)  # the response the critique history starts from
    history: dict[int, list[HistoryTurn]] = field(default_factory=dict)
    scored: dict[int, Any] = field(default_factory=dict)  # gate scores of the current responses
