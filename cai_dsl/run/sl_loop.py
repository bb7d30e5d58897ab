"""The SL-CAI loop: initial responses, scenario tags, then critique -> revision rounds, batched per stage.

:class:`SLRunner` runs a compiled program over a chunk of prompts (one batched call per stage) with the
backends of a :class:`ModelSet`; :class:`SLOptions` are its knobs (``None``: the program's value).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from cai_dsl.compile.ir import ChatPrompt, HistoryTurn, Program
from cai_dsl.run.backends.base import BackendError, GenerationParams, Prompt
from cai_dsl.run.context import ExecutionContext
from cai_dsl.run.data import PromptItem
from cai_dsl.run.errors import SLError
from cai_dsl.run.generation import BatchedGenerator, mix_seed
from cai_dsl.run.prompts import policy_prompt

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
    default four batches.
    """

    rounds: int | None = None
    max_new_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    batch_size: int | None = None
    chunk_size: int | None = None
    history: bool = True
    prefix_cache: bool = True

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
    """Runs the critique/revision program over chunks of prompts (one batched call per stage)."""

    def __init__(self, program: Program, models: ModelSet, options: SLOptions | None = None):
        self.program = program
        self.models = models
        self.options = (options or SLOptions()).resolved(program)
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
        progress = progress or NoProgress()
        program = self.program
        n = len(items)
        tags = self.tag(items)
        results = [
            {
                "scenario": tags[i][0],
                "scenario_source": tags[i][1],
                "initial": None,
                "rounds": [],
                "final": None,
                "stopped": None,
                "tokens": {"initial": 0, "critique": 0, "revision": 0},
            }
            for i in range(n)
        ]
        # 1. initial responses
        need = [i for i in range(n) if initial is None or initial[i] is None]
        for i in range(n):
            if i not in need:
                results[i]["initial"] = initial[i]  # type: ignore[index]
        if need:
            gens = self.models.generator("policy").generate(
                [self.initial_prompt(items[i]) for i in need],
                self._params(key, "initial"),
                on_batch=progress.stage("initial responses", len(need)),
            )
            progress.done_stage()
            for i, g in zip(need, gens, strict=True):
                results[i]["initial"] = g.text.strip()
                results[i]["tokens"]["initial"] = g.completion_tokens
        for i in range(n):
            results[i]["final"] = results[i]["initial"]
            if on_step:
                on_step("initial", i, {"response": results[i]["initial"]})
        # 2. critique / revision rounds
        current = {i: results[i]["initial"] for i in range(n)}
        history: dict[int, list[HistoryTurn]] = {i: [] for i in range(n)}
        active = []
        for i in range(n):
            if items[i].helpful:
                results[i]["stopped"] = "helpful"
            else:
                active.append(i)
        critic = self.models.generator("critic")
        for r in range(int(self.options.rounds or 0)):
            plan: dict[int, list[str]] = {}
            for i in active:
                pids = program.select_principles(r, results[i]["scenario"], program.rng(items[i].id, r))
                if pids:
                    plan[i] = pids
                else:
                    results[i]["stopped"] = "no_principle"
            active = [i for i in active if i in plan]
            steps = max((len(v) for v in plan.values()), default=0)
            for s in range(steps):
                rows = [i for i in active if s < len(plan[i])]
                if not rows:
                    break
                label = f"round {r + 1}" + (f".{s + 1}" if steps > 1 else "")
                crit_prompts = [
                    self._critique_prompt(items[i], results[i]["initial"], current[i], plan[i][s], history[i])
                    for i in rows
                ]
                crit = critic.generate(
                    [Prompt.from_chat(c) for c in crit_prompts],
                    replace(self._params(key, "critique", r, s), stop=STOP_STRINGS),
                    on_batch=progress.stage(f"critiques {label}", len(rows)),
                )
                progress.done_stage()
                revise_rows = []
                for i, g in zip(rows, crit, strict=True):
                    critique = g.text.strip()
                    results[i]["tokens"]["critique"] += g.completion_tokens
                    turn = {"round": r, "principle": plan[i][s], "critique": critique, "satisfied": False, "revision": None}
                    results[i]["rounds"].append(turn)
                    if program.is_satisfied(critique):
                        turn["satisfied"] = True
                        results[i]["stopped"] = "satisfied"
                    else:
                        revise_rows.append(i)
                    if on_step:
                        on_step("critique", i, dict(turn))
                active = [i for i in active if results[i]["stopped"] is None]
                if not revise_rows:
                    continue
                rev_prompts = [
                    self._revision_prompt(
                        items[i],
                        results[i]["initial"],
                        current[i],
                        plan[i][s],
                        results[i]["rounds"][-1]["critique"],
                        history[i],
                    )
                    for i in revise_rows
                ]
                revs = critic.generate(
                    [Prompt.from_chat(c) for c in rev_prompts],
                    replace(self._params(key, "revision", r, s), stop=STOP_STRINGS),
                    on_batch=progress.stage(f"revisions {label}", len(revise_rows)),
                )
                progress.done_stage()
                for i, g in zip(revise_rows, revs, strict=True):
                    revision = g.text.strip()
                    turn = results[i]["rounds"][-1]
                    turn["revision"] = revision
                    results[i]["tokens"]["revision"] += g.completion_tokens
                    history[i].append(HistoryTurn(principle_id=turn["principle"], critique=turn["critique"], revision=revision))
                    if revision:
                        current[i] = revision
                        results[i]["final"] = revision
                    if on_step:
                        on_step("revision", i, dict(turn))
        for i in range(n):
            if results[i]["stopped"] is None:
                results[i]["stopped"] = "rounds"
        return results

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
