"""``cai eval models``: base vs SL vs RL on held-out prompts, with intervals, paired tests and an independent judge.

1. The held-out sets (:mod:`cai_dsl.run.eval.sets`) are answered **greedily** by each model, batched (one base in
   memory, the LoRA adapters switched).
2. Each answer is scored in its scenario by the compiled policy (:class:`~cai_dsl.run.policy.score.PolicyScorer`)
   with the **marker** detectors (the training signal) and, independently, with the **judge** questions of
   ``judge_behaviors`` (yes/no log-probabilities of the base model, both phrasings); the metrics of
   :mod:`cai_dsl.run.policy.metrics` (harmful compliance, refusal, over-refusal, degeneration) come from each.
3. Optionally (``compare_prompts``), the comparison program judges every pair of models on the first prompts of the
   red-team and benign sets in both orders: the **win rate**, flagged when its votes do not agree across the two
   orders more often than chance (:class:`~cai_dsl.run.eval.result.ComparisonSignal`).
4. :func:`~cai_dsl.run.eval.result.summarize` gives the rates (n, 95% Wilson interval), exact McNemar tests between
   models on the same prompts, and the markers/judge agreement (Cohen's kappa).

With the ``batch`` target backend nothing runs in-process: each model's answers and the judge's scores are requests
in the target's batch file, the base under its model spec and each adapter under :func:`served_name` (its role and
content hash, so a retrained adapter never reads another's results); serve them with ``cai serve --lora
NAME=DIR`` (or vLLM's ``--lora-modules``) and rerun (:mod:`cai_dsl.run.backends.batch_file`). The answers of all
models are written in one round, the judge's in the next, the comparison program's in a third.

With ``out_dir`` every generation, judge answer and comparison is kept in ``out_dir/records.jsonl`` (resumable; a
changed program, model, adapter or token budget is refused) and the result is written atomically to
``out_dir/models.json``.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cai_dsl.core.files import write_json_atomic
from cai_dsl.core.hashing import RunMismatch
from cai_dsl.core.progress import progress
from cai_dsl.core.records import RecordFile
from cai_dsl.run.context import ModelPool, check_adapter_dir, quiet_transformers
from cai_dsl.run.data import PromptItem
from cai_dsl.run.errors import RLAIFError
from cai_dsl.run.eval.result import ModelsEvaluation, ResponseRow, summarize
from cai_dsl.run.eval.sets import SetLimits, eval_sets
from cai_dsl.run.policy.detectors import Detection, DetectorSet
from cai_dsl.run.policy.metrics import outcome
from cai_dsl.run.policy.score import PolicyScorer
from cai_dsl.run.prompts import policy_prompt
from cai_dsl.run.train.job import adapter_fingerprint

__all__ = ["EvalOptions", "evaluate_models", "served_name"]

_HARM_TAGS = ("harmlessness", "safety", "harm")
_HELP_TAGS = ("helpfulness",)


@dataclass(frozen=True)
class EvalOptions:
    """Sizes of an evaluation: prompts per set, new tokens per answer, the behaviors the judge observes (empty: no
    judge), prompts per set judged by the comparison program (0: no win rate), generation batch size."""

    limits: SetLimits = field(default_factory=SetLimits)
    max_new_tokens: int = 64
    judge_behaviors: tuple[str, ...] = ("refuse", "detailed_instructions")
    compare_prompts: int = 0
    batch_size: int | None = None
    chunk: int = 16


class _MemoryRecords:
    """A RecordFile stand-in kept in memory (evaluation without an output directory)."""

    def __init__(self) -> None:
        self.records: dict[str, dict] = {}

    def done(self, key: str) -> bool:
        return key in self.records

    def append(self, record: dict) -> None:
        self.records.setdefault(record["key"], record)

    def __iter__(self):
        return iter(self.records.values())


def _load(program: Any, pool: ModelPool, adapters: Mapping[str, Path | None], batch_size: int) -> tuple[Any, Any]:
    """The backend over the base policy with every adapter loaded (named like its model), and the PeftModel."""
    from peft import PeftModel

    loaded = pool.load(program.run.models.policy)
    peft_model = None
    # inference only: the adapters in the base's dtype (peft would upcast them to float32, and every LoRA layer
    # would then convert its input and output at each decode step: 1.4x the bfloat16 base's generation time)
    cast = {"autocast_adapter_dtype": False}
    with quiet_transformers():
        for name, path in adapters.items():
            if path is None:
                continue
            try:
                if peft_model is None:
                    peft_model = PeftModel.from_pretrained(loaded.model, str(path), adapter_name=name, **cast)
                else:
                    peft_model.load_adapter(str(path), adapter_name=name, **cast)
            except Exception as exc:  # peft raises several types for a mismatched adapter
                raise RLAIFError(f"{path}: cannot load the {name} adapter: {type(exc).__name__}: {exc}") from None
    model = peft_model.get_base_model() if peft_model is not None else None
    return pool.context.transformers_backend(loaded, model, batch_size=batch_size), peft_model


def served_name(name: str, adapter: Path) -> str:
    """The model name an adapter's batch requests carry: ``NAME-<first 12 hex digits of its content hash>``."""
    return f"{name}-{adapter_fingerprint(adapter)[:12]}"


@dataclass
class _Models:
    """The evaluated models: a backend per name and how to select it (an adapter switch in-process, nothing for
    batch files, whose requests name their model)."""

    backends: dict[str, Any]
    peft_model: Any = None
    served: dict[str, Path] = field(default_factory=dict)  # batch files: served name -> adapter directory

    def use(self, name: str):
        if self.peft_model is None:
            return contextlib.nullcontext()
        from cai_dsl.run.train.reward_model import use_adapter

        return use_adapter(self.peft_model, None if name == "base" else name)

    def pending(self, exc: Exception, what: str) -> Exception:
        """``exc`` (BatchPending) with what waits and the adapters to serve next to the base."""
        lora = " ".join(f"--lora {n}={p}" for n, p in self.served.items())
        hint = f" Serve the adapters with the base: `cai serve --model {self.backends['base'].model} {lora}`." if lora else ""
        return type(exc)(f"evaluation: {what} wait in batch files. {exc}{hint}")


def _models(program: Any, pool: ModelPool, adapters: Mapping[str, Path | None], batch_size: int) -> _Models:
    """Batch-file backends for the ``batch`` target, else the base loaded here with the adapters (also for a server
    target: its server would have to serve the adapters)."""
    context = pool.context
    if context.backend_name != "batch":
        backend, peft_model = _load(program, pool, adapters, batch_size)
        return _Models({n: backend for n in adapters}, peft_model)
    policy = program.run.models.policy
    served = {served_name(n, a): a for n, a in adapters.items() if a is not None}
    names = {n: (policy if a is None else served_name(n, a)) for n, a in adapters.items()}
    from cai_dsl.run.backends import make_backend

    backends = {n: make_backend("batch", directory=context.options.batch_dir, model=m, tokenizer=policy)
                for n, m in names.items()}
    return _Models(backends, None, served)


def _records(out_dir: str | os.PathLike[str] | None, fingerprint: Mapping[str, Any]) -> Any:
    if out_dir is None:
        return _MemoryRecords()
    try:
        return RecordFile(Path(out_dir) / "records.jsonl", key_field="key", fingerprint=fingerprint)
    except RunMismatch as exc:
        raise RLAIFError(str(exc)) from None


def _chunks(items: Sequence[Any], size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _generate(models: _Models, program, records, names, prompts, options: EvalOptions, bar) -> None:
    from cai_dsl.run.backends.base import GenerationParams
    from cai_dsl.run.backends.batch_file import BatchPending

    params = GenerationParams(max_new_tokens=options.max_new_tokens, temperature=0.0)
    waiting: list[tuple[str, BatchPending]] = []
    for name in names:
        todo = [(s, p) for s, p in prompts if not records.done(f"gen:{name}:{s}:{p.id}")]
        try:
            for chunk in _chunks(todo, options.chunk):
                with models.use(name):
                    gens = models.backends[name].generate([policy_prompt(program, p.prompt) for _, p in chunk], params)
                for (s, p), g in zip(chunk, gens):
                    records.append({"key": f"gen:{name}:{s}:{p.id}", "model": name, "set": s, "id": p.id,
                                    "response": g.text.strip(), "finish_reason": g.finish_reason})
                bar(len(chunk))
        except BatchPending as exc:  # every model's requests go into the file before the run stops
            waiting.append((name, exc))
        bar(len(prompts) - len(todo))
    if waiting:
        raise models.pending(waiting[-1][1], "the answers of " + ", ".join(n for n, _ in waiting))


def _judge(judges: DetectorSet | None, models: _Models, records, answers, options: EvalOptions, bar) -> None:
    """The judge's P(yes) per behavior for every answer (adapters off: the judge is the base model)."""
    if judges is None or not judges.behaviors:
        return
    todo = [a for a in answers if not records.done("judge:" + a["key"][4:])]
    # the judge sees only (prompt, response): models that gave the same answer share one judgement
    same: dict[tuple[str, str], list[dict]] = {}
    for a in todo:
        same.setdefault((a["prompt"], a["response"]), []).append(a)
    from cai_dsl.run.backends.batch_file import BatchPending

    waiting = None
    for chunk in _chunks(list(same.items()), options.chunk):
        try:
            with models.use("base"):
                found = judges.detect_batch([resp for (_, resp), _ in chunk], [ask for (ask, _), _ in chunk])
        except BatchPending as exc:  # the other chunks' requests go into the file too
            waiting = exc
            continue
        for (_, group), detections in zip(chunk, found):
            for a in group:
                records.append({"key": "judge:" + a["key"][4:], "p_yes": {b: d.probability for b, d in detections.items()},
                                "present": {b: d.present for b, d in detections.items()}})
            bar(len(group))
    bar(len(answers) - len(todo))
    if waiting is not None:
        raise models.pending(waiting, "the judge's scores") from None


def _compare(program, pool, models: _Models, records, names, sets, responses, options: EvalOptions, bar) -> None:
    """The comparison program on every pair of models, on the first ``compare_prompts`` red-team and benign prompts."""
    from cai_dsl.run.evaluation import debias_copy, principles_tagged
    from cai_dsl.run.feedback import FeedbackScorer, PairQuery, feedback_models_for

    if options.compare_prompts <= 0 or not program.comparison.pool:
        return
    from cai_dsl.run.backends.batch_file import BatchPending

    base = models.backends["base"]
    share = None
    if models.peft_model is not None:
        share = {program.run.models.policy: (pool.load(program.run.models.policy), models.peft_model)}
    feedback = feedback_models_for(program, pool, batch_size=getattr(base, "batch_size", 8), share=share)
    judged = debias_copy(program)
    scorer = FeedbackScorer(judged, feedback)
    k = program.comparison.principles_per_comparison
    queries = []
    for s, tags in (("red_team", _HARM_TAGS), ("benign", _HELP_TAGS)):
        subset = principles_tagged(program, tags)[0]
        for p in sets.get(s, ())[: options.compare_prompts]:
            for i, a in enumerate(names):
                for b in names[i + 1 :]:
                    key = f"cmp:{s}:{p.id}:{a}:{b}"
                    if not records.done(key):
                        chosen = tuple(program.rng("eval", key).sample(subset, min(k, len(subset))))
                        ra, rb = responses[(a, s, p.id)], responses[(b, s, p.id)]
                        queries.append((key, a, b, PairQuery(key, p.prompt, ra, rb, p.scenario, chosen)))
    waiting = None
    for chunk in _chunks(queries, options.chunk):
        try:
            with models.use("base"):
                verdicts = scorer.judge([q[-1] for q in chunk])
        except BatchPending as exc:  # the other chunks' requests go into the file too
            waiting = exc
            continue
        for (key, a, b, _), j in zip(chunk, verdicts):
            consistent = []
            for d in j.details.values():
                p_ab, p_ba = sum(d["p_ab"]) / len(d["p_ab"]), sum(d["p_ba"]) / len(d["p_ba"])
                consistent.append((p_ab > 0.5) == (p_ba < 0.5))
            records.append({"key": key, "a": a, "b": b, "p_a": j.p_first, "consistent": consistent})
        bar(len(chunk))
    if waiting is not None:
        raise models.pending(waiting, "the comparison program's votes") from None


def _rows(scorer: PolicyScorer, markers: DetectorSet, records, answers, items) -> list[ResponseRow]:
    judged = {r["key"][6:]: r for r in records if r["key"].startswith("judge:")}
    rows = []
    for a in answers:
        item: PromptItem = items[(a["set"], a["id"])]
        text, ask = a["response"], a["prompt"]
        found = markers.detect(text, ask)
        score = scorer.score(text, item.scenario, found, prompt=ask, finish_reason=a["finish_reason"])
        judge = None
        j = judged.get(a["key"][4:])
        if j is not None:
            detections = {b: Detection(behavior=b, kind="judge", present=bool(v), probability=j["p_yes"].get(b))
                          for b, v in j["present"].items()}
            judge = outcome(scorer.score(text, item.scenario, detections, prompt=ask, finish_reason=a["finish_reason"]), detections)
        rows.append(ResponseRow(
            set=a["set"], id=a["id"], model=a["model"], response=text, finish_reason=a["finish_reason"],
            markers=outcome(score, found), judge=judge, violations=score.violations, quality_failures=score.quality.failures,
        ))
    return rows


def evaluate_models(
    program: Any,
    scorer: PolicyScorer,
    *,
    sl_adapter: Path | None = None,
    rl_adapter: Path | None = None,
    options: EvalOptions = EvalOptions(),
    out_dir: str | os.PathLike[str] | None = None,
    pool: ModelPool | None = None,
    feedback_signal: bool | None = None,
    show_progress: bool = True,
    log: Callable[[str], None] | None = None,
    sets: Mapping[str, Sequence[PromptItem]] | None = None,
) -> ModelsEvaluation:
    """Base vs the SL and/or RL adapters on the held-out sets (module docstring); ``feedback_signal`` is the
    labelling stage's verdict on the feedback model, shown next to the win rate. ``sets`` replaces the held-out
    sets (:func:`~cai_dsl.run.eval.sets.eval_sets` with another ``keep``: e.g. unused training prompts)."""
    from cai_dsl.run.policy.detectors import specs_from_constitution

    adapters = {"base": None, "sl": sl_adapter, "rl": rl_adapter}
    adapters = {n: (check_adapter_dir(a) if a is not None else None) for n, a in adapters.items() if n == "base" or a is not None}
    names = list(adapters)
    if len(names) < 2:
        raise RLAIFError("nothing to compare: give --sl and/or --rl adapters to compare with the base model")
    started = time.perf_counter()
    pool = pool or ModelPool.of(program)
    batch_size = options.batch_size or program.run.backend_options.batch_size
    models = _models(program, pool, adapters, batch_size)
    sets = {s: tuple(ps) for s, ps in sets.items()} if sets is not None else eval_sets(scorer, options.limits)
    items = {(s, p.id): p for s, ps in sets.items() for p in ps}
    prompts = [(s, p) for s, ps in sets.items() for p in ps]
    specs = specs_from_constitution(scorer.constitution)
    judge_specs = [s for s in specs if s.name in options.judge_behaviors and s.observable_by_judge]
    judges = DetectorSet(judge_specs, kind="judge", backend=models.backends["base"]) if judge_specs else None
    fingerprint = {
        "job": "eval-models", "program_hash": program.provenance.program_hash, "policy": program.run.models.policy,
        "adapters": {n: adapter_fingerprint(a) for n, a in adapters.items() if a is not None},
        "max_new_tokens": options.max_new_tokens, "judge": [s.model_dump() for s in judge_specs],
    }
    records = _records(out_dir, fingerprint)
    with progress(len(names) * len(prompts), "eval: generate", unit="answer", enabled=show_progress) as bar:
        _generate(models, program, records, names, prompts, options, bar)
    answers = [
        {**r, "prompt": _text(items[(r["set"], r["id"])].prompt)}
        for r in records if r["key"].startswith("gen:") and (r["set"], r["id"]) in items and r["model"] in adapters
    ]
    with progress(len(answers), "eval: judge", unit="answer", enabled=show_progress and judges is not None) as bar:
        _judge(judges, models, records, answers, options, bar)
    responses = {(a["model"], a["set"], a["id"]): a["response"] for a in answers}
    with progress(None, "eval: compare", unit="pair", enabled=show_progress and options.compare_prompts > 0) as bar:
        _compare(program, pool, models, records, names, sets, responses, options, bar)
    markers = DetectorSet(specs, kind="markers")
    rows = _rows(scorer, markers, records, answers, items)
    wanted = {f"cmp:{s}:{p.id}:" for s, ps in sets.items() for p in ps[: options.compare_prompts]}
    comparisons = [r for r in records if r["key"].startswith("cmp:") and r["key"].rsplit(":", 2)[0] + ":" in wanted
                   and r["a"] in adapters and r["b"] in adapters]
    result = summarize(
        deployment=program.provenance.deployment, constitution=program.provenance.constitution,
        program_hash=program.provenance.program_hash, sets={s: [p.id for p in ps] for s, ps in sets.items()},
        adapters={n: str(a) if a else None for n, a in adapters.items()}, rows=rows, comparisons=comparisons,
        feedback_signal=feedback_signal, judge_behaviors=[s.name for s in judge_specs],
        max_new_tokens=options.max_new_tokens, seconds=time.perf_counter() - started,
    )
    if out_dir is not None:
        write_json_atomic(Path(out_dir) / "models.json", result.model_dump(mode="json"))
    if log:
        log(f"evaluated {', '.join(names)} on {', '.join(f'{len(ps)} {s}' for s, ps in sets.items())} held-out prompts "
            f"in {result.seconds:.0f} s")
    return result


def _text(prompt: Any) -> str:
    from cai_dsl.run.sl_loop import last_user_text

    return last_user_text(prompt)
