"""AI feedback (the RL-CAI labelling stage): judge pairs of responses with a compiled comparison program.

The paper's recipe (Bai et al. 2022, section 4.1), as the compiled program describes it:

* the **policy** (usually the SL-CAI model) samples two responses per prompt (temperature > 0, two seeds);
* the **feedback model** reads the multiple-choice question of ``program.comparison_messages`` and the
  log-probabilities of the option tokens ``A``/``B`` after ``The answer is: (`` are normalised into a soft label
  (``program.soft_label``);
* ``principles_per_comparison`` principles are sampled per comparison (``program.comparison_principles`` with a
  per-prompt seeded RNG) and their labels combined (``program.combine_votes``: weighted or priority voting);
* with ``position_debias`` both option orders are scored and averaged (``program.debias``);
* with ``chain_of_thought`` the model first reasons (greedy, ``comparison_cot_messages``), then the options are
  scored after the reasoning and the probability is clamped (``program.clamp_cot``, the paper's 40-60%);
* several feedback models (a constitutional ensemble, ``run.models.feedback``) are weight-averaged per principle
  (``program.combine_models``).

:class:`FeedbackScorer` does the judging for any backend (with each option pair's probability mass
P("A") + P("B")); :func:`run_label` / :func:`label_pairs` is the resumable ``cai label`` job that writes
``preferences.jsonl`` (one record per prompt, keyed by the prompt id) and ``labels.json`` (the feedback model's
signal and the label source chosen by :mod:`cai_dsl.run.label_signal`; see ``docs/rlaif.md``).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ContextManager

from cai_dsl.core import records as records_file
from cai_dsl.core.files import write_atomic, write_json_atomic
from cai_dsl.core.hashing import RunMismatch
from cai_dsl.core.progress import progress
from cai_dsl.core.records import RecordFile, dump_record
from cai_dsl.run.backends.base import Prompt
from cai_dsl.run.context import ModelPool, check_adapter_dir, quiet_transformers, with_adapter
from cai_dsl.run.data import PromptItem, split_of
from cai_dsl.run.data import load_prompts as _read_prompts
from cai_dsl.run.data import split_prompts
from cai_dsl.run.errors import RLAIFError
from cai_dsl.run.label_signal import LabelSignal, SignalRule, label_record, measure_signal
from cai_dsl.run.prompts import policy_prompt
from cai_dsl.run.train.job import adapter_fingerprint, write_adapter_manifest


__all__ = [
    "FeedbackModel",
    "FeedbackScorer",
    "LabelSignal",
    "LabelSummary",
    "ModelPool",
    "PairJudgement",
    "PairQuery",
    "PromptItem",
    "RLAIFError",
    "SignalRule",
    "adapter_fingerprint",
    "check_adapter_dir",
    "default_prompts",
    "feedback_models_for",
    "load_prompt_file",
    "label_pairs",
    "load_prompts",
    "progress",
    "quiet_transformers",
    "read_jsonl",
    "read_label_manifest",
    "run_label",
    "split_of",
    "with_adapter",
    "write_adapter_manifest",
]


# ---------------------------------------------------------------------------------------------------- helpers


def read_jsonl(path: str | os.PathLike[str]) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` for each record of a JSONL file (the rule of :mod:`cai_dsl.core.records`);
    a bad line raises ``RLAIFError`` naming file:line."""
    return iter(records_file.read_jsonl(path, error=RLAIFError).rows)


def _seed(program: Any, *key: object) -> int:
    return program.rng(*key).randrange(2**31 - 1)


def load_prompt_file(path: str | os.PathLike[str], facets: Sequence[Any] | None = None) -> list[PromptItem]:
    """Read a prompts JSONL file (:func:`cai_dsl.run.data.load_prompts`, scenarios checked against ``facets``
    when given); problems raise RLAIFError."""
    return _read_prompts(path, error=RLAIFError, facets=facets)


def default_prompts(split: str | None = "train", kinds: Sequence[str] = ("red_team", "helpful")) -> list[PromptItem]:
    """The packaged red-team and helpful prompts, interleaved (so any prefix mixes both), filtered by split."""
    return split_prompts(split, kinds, error=RLAIFError)


def load_prompts(
    path: str | os.PathLike[str] | None, split: str | None = "train", facets: Sequence[Any] | None = None
) -> list[PromptItem]:
    """Prompts from ``path`` (all of them; scenarios checked against ``facets`` when given) or, when None,
    the packaged sets' ``split``."""
    return load_prompt_file(path, facets) if path is not None else default_prompts(split)


# ---------------------------------------------------------------------------------------------------- judging


@dataclass
class FeedbackModel:
    """One feedback model: a backend, its ensemble weight, a name, and a context entered while it is used
    (e.g. ``peft_model.disable_adapter`` when the feedback model shares its weights with an adapted policy)."""

    backend: Any
    weight: float = 1.0
    name: str = ""
    context: Callable[[], ContextManager[Any]] = contextlib.nullcontext


@dataclass(frozen=True)
class PairQuery:
    """Which of ``first`` and ``second`` answers ``conversation`` better? ``key`` seeds the principle draw;
    ``principles`` overrides the draw."""

    key: str
    conversation: Any
    first: str
    second: str
    scenario: Mapping[str, str] | None = None
    principles: tuple[str, ...] | None = None


@dataclass(frozen=True)
class PairJudgement:
    """The feedback on one pair.

    ``p_first``: P(first response better), combined over principles (``combine_votes``) and models.
    ``votes``: per principle, P(first better) after debiasing and model combination.
    ``details``: per principle, ``p_ab`` (P(A) with the first response as A) and ``p_ba`` (P(A) with the
    second response as A), one value per model, and the chain-of-thought ``reasoning`` when used.
    """

    p_first: float
    principles: tuple[str, ...]
    votes: dict[str, float]
    details: dict[str, dict[str, Any]] = field(default_factory=dict)


class FeedbackScorer:
    """Judge response pairs with a compiled program's comparison stage and one or more feedback models."""

    def __init__(self, program: Any, models: Sequence[FeedbackModel]) -> None:
        if not models:
            raise ValueError("FeedbackScorer needs at least one feedback model")
        if not program.comparison.pool:
            raise RLAIFError(
                f"deployment `{program.provenance.deployment}` has no principle with `compare` text, so it cannot "
                "judge comparisons; include compare principles (e.g. the `rl_cai` deployment of anthropic-2022.const)"
            )
        self.program = program
        self.models = list(models)

    def principles_for(self, query: PairQuery) -> list[str]:
        """The principles ``query`` is judged under: its own, or a seeded draw of ``principles_per_comparison``."""
        if query.principles:
            return list(query.principles)
        return self.program.comparison_principles(self.program.rng("compare", query.key), query.scenario)

    def judge(self, queries: Sequence[PairQuery]) -> list[PairJudgement]:
        """Judge every query (all prompts of one call go to each backend as one batch)."""
        program = self.program
        debias = program.comparison.position_debias
        cot = program.comparison.chain_of_thought
        tasks: list[tuple[int, str, int]] = []  # (query index, principle, order: 0 = first as A, 1 = second as A)
        chosen: list[list[str]] = []
        for qi, q in enumerate(queries):
            pids = self.principles_for(q)
            chosen.append(pids)
            for pid in pids:
                for order in (0, 1) if debias else (0,):
                    tasks.append((qi, pid, order))
        per_model: list[list[float]] = []
        reasonings: list[list[str]] = []
        masses: list[list[float]] = []
        for fm in self.models:
            probs, texts, mass = self._score_tasks(fm, queries, tasks, cot)
            per_model.append(probs)
            reasonings.append(texts)
            masses.append(mass)
        weights = [fm.weight for fm in self.models]
        n_program_models = len(program.run.models.feedback)
        out: list[PairJudgement] = []
        index = {t: i for i, t in enumerate(tasks)}
        for qi, q in enumerate(queries):
            votes: dict[str, float] = {}
            details: dict[str, dict[str, Any]] = {}
            for pid in chosen[qi]:
                i_ab = index[(qi, pid, 0)]
                i_ba = index.get((qi, pid, 1))
                p_ab = [per_model[m][i_ab] for m in range(len(self.models))]
                p_ba = [per_model[m][i_ba] for m in range(len(self.models))] if i_ba is not None else None
                debiased = [program.debias(p_ab[m], p_ba[m] if p_ba else None) for m in range(len(self.models))]
                if len(debiased) == n_program_models:
                    votes[pid] = program.combine_models(debiased)
                else:
                    votes[pid] = sum(d * w for d, w in zip(debiased, weights)) / sum(weights)
                entry: dict[str, Any] = {"p_ab": p_ab, "p": votes[pid], "mass_ab": [m[i_ab] for m in masses]}
                if p_ba is not None:
                    entry["p_ba"] = p_ba
                    entry["mass_ba"] = [m[i_ba] for m in masses]
                if cot.enabled:
                    entry["reasoning"] = [reasonings[m][i_ab] for m in range(len(self.models))]
                details[pid] = entry
            p_first = program.combine_votes(votes, q.scenario) if votes else 0.5
            out.append(PairJudgement(p_first=p_first, principles=tuple(chosen[qi]), votes=votes, details=details))
        return out

    def _prompt(self, q: PairQuery, pid: str, order: int, reasoning: str | None = None):
        a, b = (q.first, q.second) if order == 0 else (q.second, q.first)
        if reasoning is not None:
            return self.program.comparison_after_cot(q.conversation, a, b, pid, reasoning)
        return self.program.comparison_messages(q.conversation, a, b, pid)

    def _score_tasks(self, fm: FeedbackModel, queries, tasks, cot) -> tuple[list[float], list[str], list[float]]:
        """Per task: P(A), the reasoning (chain of thought) and the option mass P("A") + P("B")."""
        from cai_dsl.run.backends.base import GenerationParams

        program = self.program
        if not tasks:
            return [], [], []
        texts = [""] * len(tasks)
        with fm.context():
            if cot.enabled:
                cot_prompts = [
                    Prompt.from_chat(
                        program.comparison_cot_messages(queries[qi].conversation, *self._ordered(queries[qi], order), pid)
                    )
                    for qi, pid, order in tasks
                ]
                params = GenerationParams(
                    max_new_tokens=program.run.generation.cot_max_new_tokens, temperature=0.0, stop=cot.stop
                )
                texts = [g.text for g in fm.backend.generate(cot_prompts, params)]
                chat = [self._prompt(queries[qi], pid, order, texts[i]) for i, (qi, pid, order) in enumerate(tasks)]
            else:
                chat = [self._prompt(queries[qi], pid, order) for qi, pid, order in tasks]
            options = chat[0].continuations
            scores = fm.backend.score([Prompt.from_chat(c) for c in chat], list(options))
        probs, masses = [], []
        for la, lb in scores:
            p = program.soft_label(la, lb)
            probs.append(program.clamp_cot(p) if cot.enabled else p)
            masses.append(min(1.0, math.exp(la) + math.exp(lb)))
        return probs, texts, masses

    @staticmethod
    def _ordered(q: PairQuery, order: int) -> tuple[str, str]:
        return (q.first, q.second) if order == 0 else (q.second, q.first)


def feedback_models_for(
    program: Any,
    pool: ModelPool,
    *,
    batch_size: int = 8,
    share: Mapping[str, tuple[Any, Any]] | None = None,
) -> list[FeedbackModel]:
    """The program's feedback ensemble (``run.models.feedback``) as :class:`FeedbackModel` objects.

    ``share`` maps a model spec to ``(loaded, peft_model)`` already in memory: a feedback model with that spec
    reuses those weights, scoring with the adapters disabled (the feedback model is the un-adapted model).
    Non-transformers targets (``openai``, ``vllm``) get their backend with the model spec as the model name.
    """
    out = []
    run = program.run
    context = pool.context
    for fb in run.models.feedback:
        if run.backend != "transformers":
            from cai_dsl.run.backends import BackendError

            try:
                backend = context.backend(fb.model, batch_size=batch_size)
            except BackendError as exc:
                raise RLAIFError(str(exc)) from None
            out.append(FeedbackModel(backend=backend, weight=fb.weight, name=fb.model))
            continue
        if share and fb.model in share:
            loaded, peft_model = share[fb.model]
            if peft_model is not None:
                backend = context.transformers_backend(loaded, peft_model.get_base_model(), batch_size=batch_size)
                out.append(FeedbackModel(backend, fb.weight, fb.model, peft_model.disable_adapter))
            else:
                out.append(FeedbackModel(context.transformers_backend(loaded, batch_size=batch_size), fb.weight, fb.model))
            continue
        out.append(FeedbackModel(context.transformers_backend(pool.load(fb.model), batch_size=batch_size), fb.weight, fb.model))
    return out


# ---------------------------------------------------------------------------------------------------- cai label

LABELS_MANIFEST = "labels.json"


@dataclass(frozen=True)
class LabelSummary:
    """What a ``cai label`` run did: records on disk, new ones, the time spent on new ones, the output file,
    the signal of the feedback model (:class:`~cai_dsl.run.label_signal.LabelSignal`), the count of records
    per label ``source`` and of no-signal labels (probability 0.5), and the manifest (``labels.json``)."""

    path: Path
    records: int
    new: int
    seconds: float
    mean_confidence: float
    signal: LabelSignal | None = None
    sources: dict[str, int] = field(default_factory=dict)
    no_signal: int = 0
    manifest: Path | None = None

    @property
    def pairs_per_second(self) -> float:
        """New pairs per second of this call (0 when nothing was labelled)."""
        return self.new / self.seconds if self.seconds > 0 else 0.0


def sampling_params(program: Any, seed: int, max_new_tokens: int | None = None) -> Any:
    """Decoding of policy responses: the target's temperature (1.0 if it is 0: two samples must differ) and top_p."""
    from cai_dsl.run.backends.base import GenerationParams

    gen = program.run.generation
    temperature = gen.temperature if gen.temperature > 0 else 1.0
    return GenerationParams(
        max_new_tokens=max_new_tokens or gen.max_new_tokens, temperature=temperature, top_p=gen.top_p, seed=seed
    )


def run_label(
    program: Any,
    out_dir: str | os.PathLike[str],
    prompts: Sequence[PromptItem],
    *,
    policy_adapter: Path | None = None,
    limit: int | None = None,
    batch_size: int | None = None,
    max_new_tokens: int | None = None,
    pool: ModelPool | None = None,
    show_progress: bool = True,
    on_chunk: Callable[[int], None] | None = None,
    policy_scorer: Any = None,
    detectors: Any = None,
    rule: SignalRule | None = None,
) -> LabelSummary:
    """Label ``prompts`` (the first ``limit``) into ``out_dir/preferences.jsonl``; resumes a killed run.

    Prompts are processed in fixed chunks of ``batch_size`` (chunk k = prompts[k*B:(k+1)*B]) with seeds derived
    from the program seed and the chunk, so a resumed run regenerates an interrupted chunk identically and
    writes exactly the records an uninterrupted run would have written. ``on_chunk`` (tests) is called after
    each chunk's records are written.

    With ``policy_scorer`` (a :class:`~cai_dsl.run.policy.score.PolicyScorer`; ``detectors`` default to the
    program's marker detectors) both responses also get their policy score in the prompt's scenario. When every
    chunk is done, the feedback model's signal is measured over the file (:func:`measure_signal`) and every
    record gets its final label by ``rule`` (:mod:`cai_dsl.run.label_signal`): the file is rewritten atomically
    and ``labels.json`` written. Until then records are provisional (feedback labels, ``"provisional": true``).
    """
    from cai_dsl import __version__

    out = Path(out_dir)
    rule = rule or SignalRule()
    items = list(prompts)[: limit if limit is not None else None]
    if not items:
        raise RLAIFError("no prompts to label")
    bs = batch_size or program.run.backend_options.batch_size
    gen = program.run.generation
    policy_spec = program.run.models.policy
    if policy_scorer is not None and detectors is None:
        from cai_dsl.run.policy.detectors import DetectorSet

        detectors = DetectorSet.from_program(program)
    fingerprint = {
        "job": "label",
        "program_hash": program.provenance.program_hash,
        "policy": policy_spec,
        "policy_adapter": adapter_fingerprint(policy_adapter),
        "feedback": [[f.model, f.weight] for f in program.run.models.feedback],
        "batch_size": bs,
        "max_new_tokens": max_new_tokens or gen.max_new_tokens,
        "temperature": gen.temperature,
        "top_p": gen.top_p,
        "policy_score": None if policy_scorer is None else [policy_scorer.deployment.name, detectors.kind],
    }
    try:
        records = RecordFile(out / "preferences.jsonl", key_field="id", fingerprint=fingerprint)
    except RunMismatch as exc:
        raise RLAIFError(str(exc)) from None
    pending = records.pending([{"id": it.id} for it in items])
    if not pending:
        return _finish(records, items, 0, 0.0, out, rule)
    pool = pool or ModelPool.of(program)
    loaded = pool.load(policy_spec)
    peft_model = with_adapter(loaded, policy_adapter)
    gen_backend = pool.context.transformers_backend(
        loaded, peft_model.get_base_model() if peft_model is not None else None, batch_size=bs
    )
    scorer = FeedbackScorer(program, feedback_models_for(program, pool, batch_size=bs, share={policy_spec: (loaded, peft_model)}))
    provenance = {
        "program_hash": program.provenance.program_hash,
        "constitution": program.provenance.constitution,
        "deployment": program.provenance.deployment,
        "target": program.provenance.target,
        "policy": policy_spec,
        "policy_adapter": str(policy_adapter) if policy_adapter else None,
        "feedback": [f.model for f in program.run.models.feedback],
        "cai_dsl": __version__,
    }
    new = 0
    started = time.perf_counter()
    with progress(len(pending), "label", unit="pair", enabled=show_progress) as bar:
        for start in range(0, len(items), bs):
            chunk = items[start : start + bs]
            todo = [it for it in chunk if not records.done(it.id)]
            if not todo:
                continue
            seeds = (_seed(program, "label-sample", start, 0), _seed(program, "label-sample", start, 1))
            prompts_ = [policy_prompt(program, it.prompt) for it in chunk]
            first = gen_backend.generate(prompts_, sampling_params(program, seeds[0], max_new_tokens))
            second = gen_backend.generate(prompts_, sampling_params(program, seeds[1], max_new_tokens))
            # the whole chunk is judged (even records already on disk) so that batches, and therefore the
            # floating-point results, are exactly those of an uninterrupted run
            queries = [
                PairQuery(key=it.id, conversation=it.prompt, first=g1.text.strip(), second=g2.text.strip(), scenario=it.scenario)
                for it, g1, g2 in zip(chunk, first, second)
            ]
            judgements = scorer.judge(queries)
            policy = _policy_scores(policy_scorer, detectors, queries)
            for q, j, ps in zip(queries, judgements, policy):
                if records.done(q.key):
                    continue
                records.append(_label_record(q, j, ps, seeds, provenance, program))
                new += 1
                bar(1)
            if on_chunk is not None:
                on_chunk(start)
    return _finish(records, items, new, time.perf_counter() - started, out, rule)


def label_pairs(
    program: Any,
    scorer: Any,
    out_dir: str | os.PathLike[str],
    prompts: Sequence[PromptItem],
    *,
    signal_rule: SignalRule | None = None,
    **options: Any,
) -> LabelSummary:
    """:func:`run_label` with the policy score as the fallback label source: ``scorer`` is a
    :class:`~cai_dsl.run.policy.score.PolicyScorer`; ``options`` are :func:`run_label`'s (``policy_adapter``,
    ``limit``, ``max_new_tokens``, ``detectors``, ...). The summary carries the signal figures."""
    return run_label(program, out_dir, prompts, policy_scorer=scorer, rule=signal_rule, **options)


def _policy_scores(scorer: Any, detectors: Any, queries: Sequence[PairQuery]) -> list[dict[str, Any] | None]:
    """Per query, the policy scores of both responses (and their violations); None without a scorer.

    The label budget truncates both responses alike, so the ``unfinished`` check is not applied here."""
    if scorer is None:
        return [None] * len(queries)
    texts = [t for q in queries for t in (q.first, q.second)]
    asks = [q.conversation if isinstance(q.conversation, str) else None for q in queries for _ in (0, 1)]
    found = detectors.detect_batch(texts, asks)
    out = []
    for i, q in enumerate(queries):
        scored = [scorer.score(texts[2 * i + k], q.scenario, found[2 * i + k], prompt=asks[2 * i + k]) for k in (0, 1)]
        out.append({
            "policy_scores": [None if s.score is None else round(s.score, 6) for s in scored],
            "policy_violations": [list(s.violations + s.quality.failures) for s in scored],
        })
    return out


def _label_record(q: PairQuery, j: PairJudgement, policy: dict | None, seeds, provenance: dict, program: Any) -> dict:
    p = j.p_first
    first_wins = p >= 0.5
    return {
        "id": q.key,
        "prompt": q.conversation,
        "scenario": dict(q.scenario) if q.scenario else None,
        "chosen": q.first if first_wins else q.second,
        "rejected": q.second if first_wins else q.first,
        "probability": p if first_wins else 1.0 - p,
        "responses": [q.first, q.second],
        "p_first": p,
        "principles": list(j.principles),
        "scores": {pid: _round_detail(d) for pid, d in j.details.items()},
        "chain_of_thought": program.comparison.chain_of_thought.enabled,
        "provenance": {**provenance, "seeds": list(seeds)},
        "source": "feedback",
        "provisional": True,
        **(policy or {"policy_scores": None}),
    }


def _round_detail(detail: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in detail.items():
        if isinstance(value, float):
            out[key] = round(value, 6)
        elif isinstance(value, list) and value and isinstance(value[0], float):
            out[key] = [round(v, 6) for v in value]
        else:
            out[key] = value
    return out


def _finish(records: RecordFile, items: Sequence[PromptItem], new: int, seconds: float, out: Path, rule: SignalRule) -> LabelSummary:
    """Measure the signal over the file and relabel every record by ``rule`` (once every item is labelled)."""
    path = out / "preferences.jsonl"
    rows = list(records)
    signal = measure_signal(rows, rule)
    final = [label_record(r, signal, rule) for r in rows]
    if final != rows:
        write_atomic(path, "".join(dump_record(r) for r in final))
    sources: dict[str, int] = {}
    for r in final:
        sources[r["source"]] = sources.get(r["source"], 0) + 1
    wanted = {it.id for it in items}
    probs = [r["probability"] for r in final if r["id"] in wanted]
    confidence = sum(abs(p - 0.5) * 2 for p in probs) / len(probs) if probs else math.nan
    no_signal = sum(bool(r.get("no_signal")) for r in final)
    manifest = out / LABELS_MANIFEST
    write_json_atomic(manifest, {
        "preferences": path.name,
        "records": len(final),
        "rule": rule.to_json(),
        "signal": signal.to_json(),
        "sources": sources,
        "no_signal": no_signal,
        "policy_scored": sum(r.get("policy_scores") is not None for r in final),
        "mean_confidence": None if math.isnan(confidence) else round(confidence, 6),
    })
    return LabelSummary(path=path, records=len(final), new=new, seconds=seconds, mean_confidence=confidence,
                        signal=signal, sources=sources, no_signal=no_signal, manifest=manifest)


def read_label_manifest(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``labels.json`` of a label run directory (its ``signal`` as a :class:`LabelSignal`), or None."""
    import json

    try:
        data = json.loads((Path(run_dir) / LABELS_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    data["signal"] = LabelSignal.from_json(data["signal"]) if data.get("signal") else None
    return data
