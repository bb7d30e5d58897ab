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

:class:`FeedbackScorer` does the judging for any backend; :func:`run_label` is the resumable ``cai label`` job
that writes ``preferences.jsonl`` (one record per prompt, keyed by the prompt id; see ``docs/rlaif.md``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, ContextManager

from cai_dsl.run.backends.base import Prompt

__all__ = [
    "FeedbackModel",
    "FeedbackScorer",
    "LabelSummary",
    "ModelPool",
    "PairJudgement",
    "PairQuery",
    "PromptItem",
    "RLAIFError",
    "default_prompts",
    "feedback_models_for",
    "load_prompt_file",
    "load_prompts",
    "progress",
    "quiet_transformers",
    "read_jsonl",
    "run_label",
    "split_of",
]


class RLAIFError(Exception):
    """A user-facing problem in an RL-CAI job (bad input file, missing model, ...); the message says what to fix."""


# ---------------------------------------------------------------------------------------------------- helpers


def progress(iterable: Any = None, *, total: int | None = None, desc: str = "", unit: str = "it", enabled: bool = True):
    """A tqdm progress bar on stderr (quiet when ``enabled`` is false or CAI_NO_PROGRESS is set)."""
    from tqdm.auto import tqdm

    disable = not enabled or bool(os.environ.get("CAI_NO_PROGRESS"))
    interval = 0.5 if sys.stderr.isatty() else 10.0
    return tqdm(
        iterable, total=total, desc=desc, unit=unit, file=sys.stderr, disable=disable, mininterval=interval,
        dynamic_ncols=True, leave=False,
    )


def read_jsonl(path: str | os.PathLike[str]) -> Iterator[tuple[int, dict]]:
    """Yield ``(line number, object)`` for each non-blank line; a bad line raises ``RLAIFError`` naming file:line."""
    p = Path(path)
    try:
        handle = open(p, encoding="utf-8")
    except FileNotFoundError:
        raise RLAIFError(f"{p}: no such file") from None
    except OSError as exc:
        raise RLAIFError(f"{p}: cannot read: {exc}") from None
    with handle:
        try:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise RLAIFError(f"{p}:{number}: invalid JSON: {exc.msg} (column {exc.colno})") from None
                if not isinstance(obj, dict):
                    raise RLAIFError(f"{p}:{number}: expected a JSON object, got {type(obj).__name__}")
                yield number, obj
        except UnicodeDecodeError as exc:
            raise RLAIFError(f"{p}: not UTF-8 text: {exc}") from None


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes (adapters and inputs in job fingerprints)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def adapter_fingerprint(adapter: Path | None) -> str | None:
    """A content hash of a PEFT adapter directory (its weights and config), or None."""
    if adapter is None:
        return None
    digest = hashlib.sha256()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        p = Path(adapter) / name
        if p.is_file():
            digest.update(name.encode())
            digest.update(file_sha256(p).encode())
    return digest.hexdigest()


def write_adapter_manifest(directory: Path, program: Any, stage: str, source_adapter: Path | None = None) -> None:
    """Write ``cai-adapter.json`` (base model spec, stage, program hash) into an adapter directory, so that
    ``cai_dsl.run.loading.load_model(DIR)`` finds the base the adapter belongs to."""
    manifest = {
        "base_model": program.run.models.policy,
        "stage": stage,
        "program_hash": program.provenance.program_hash,
        "constitution": program.provenance.constitution,
        "deployment": program.provenance.deployment,
        "source_adapter": str(source_adapter) if source_adapter else None,
    }
    (Path(directory) / "cai-adapter.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def check_adapter_dir(adapter: Path) -> Path:
    """``adapter`` if it is a PEFT adapter directory, else RLAIFError saying what is missing."""
    adapter = Path(adapter)
    if not adapter.is_dir():
        raise RLAIFError(f"{adapter}: no such adapter directory (expected a PEFT adapter saved by `cai sl`/`cai rl`)")
    if not (adapter / "adapter_config.json").is_file():
        raise RLAIFError(f"{adapter}: not a PEFT adapter directory (no adapter_config.json)")
    return adapter


def _seed(program: Any, *key: object) -> int:
    return program.rng(*key).randrange(2**31 - 1)


@contextlib.contextmanager
def quiet_transformers():
    """Silence transformers' load reports, datasets' progress bars and library FutureWarnings for a block."""
    from transformers.utils import logging as hf_logging

    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a dependency
        datasets = None
    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    ds_bars = datasets.is_progress_bar_enabled() if datasets is not None else False
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    if ds_bars:
        datasets.disable_progress_bars()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()
        if ds_bars:
            datasets.enable_progress_bars()


# ---------------------------------------------------------------------------------------------------- prompts


@dataclass(frozen=True)
class PromptItem:
    """One prompt to label or evaluate: a stable id, the text, optional scenario tags, and where it came from."""

    id: str
    prompt: str
    scenario: dict[str, str] | None = None
    source: str = ""


def split_of(item_id: str, eval_fraction: float = 0.2, salt: str = "") -> str:
    """``"eval"`` for a stable ~``eval_fraction`` of ids (by sha256), else ``"train"``: labelling and RL use the
    train split, ``cai eval models`` the held-out eval split. A ``salt`` gives an independent split (the
    preference model holds out pairs with ``salt="pm"``)."""
    key = f"{salt}:{item_id}" if salt else str(item_id)
    h = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")
    return "eval" if (h % 10_000) < eval_fraction * 10_000 else "train"


def load_prompt_file(path: str | os.PathLike[str]) -> list[PromptItem]:
    """Read a prompts JSONL file: ``{"prompt": str, "id"?: str, "scenario"?: {facet: value}}`` per line."""
    items: list[PromptItem] = []
    seen: set[str] = set()
    for number, obj in read_jsonl(path):
        text = obj.get("prompt")
        if not isinstance(text, str) or not text.strip():
            raise RLAIFError(f"{path}:{number}: `prompt` must be a non-empty string")
        item_id = str(obj.get("id", f"line-{number}"))
        if item_id in seen:
            raise RLAIFError(f"{path}:{number}: duplicate id `{item_id}`")
        seen.add(item_id)
        scenario = obj.get("scenario")
        if scenario is not None and (
            not isinstance(scenario, dict) or not all(isinstance(v, str) for v in scenario.values())
        ):
            raise RLAIFError(f"{path}:{number}: `scenario` must be an object of facet names to values")
        items.append(PromptItem(id=item_id, prompt=text, scenario=scenario, source=f"{path}:{number}"))
    if not items:
        raise RLAIFError(f"{path}: no prompts")
    return items


def _packaged(name: str) -> Path:
    return Path(str(resources.files("cai_dsl.data") / name))


def default_prompts(split: str | None = "train", kinds: Sequence[str] = ("red_team", "helpful")) -> list[PromptItem]:
    """The packaged red-team and helpful prompts, interleaved (so any prefix mixes both), filtered by split."""
    lists = [load_prompt_file(_packaged(f"{kind}_prompts.jsonl")) for kind in kinds]
    if split is not None:
        lists = [[p for p in items if split_of(p.id) == split] for items in lists]
    out: list[PromptItem] = []
    for i in range(max((len(x) for x in lists), default=0)):
        for items in lists:
            if i < len(items):
                out.append(items[i])
    return out


def load_prompts(path: str | os.PathLike[str] | None, split: str | None = "train") -> list[PromptItem]:
    """Prompts from ``path`` (all of them) or, when None, the packaged sets' ``split``."""
    return load_prompt_file(path) if path is not None else default_prompts(split)


# ---------------------------------------------------------------------------------------------------- models


def torch_dtype(name: str | None) -> Any:
    """The torch dtype of a target's ``dtype`` name (``auto`` and unknown names: float32)."""
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(name or "float32")


class ModelPool:
    """Loads each model spec once per job (no global cache: the pool lives as long as the job)."""

    def __init__(self, device: str = "cpu", dtype: str | None = "float32") -> None:
        self.device = "cpu" if device == "auto" else device
        self.dtype = dtype
        self._models: dict[str, Any] = {}

    def load(self, spec: str) -> Any:
        """The ``LoadedModel`` of ``spec`` (loaded on first use)."""
        from cai_dsl.run.loading import ModelError, load_model

        if spec not in self._models:
            try:
                self._models[spec] = load_model(spec, dtype=torch_dtype(self.dtype), device=self.device)
            except ModelError as exc:
                raise RLAIFError(str(exc)) from None
        return self._models[spec]


def with_adapter(loaded: Any, adapter: Path | None, *, adapter_name: str = "default", trainable: bool = False) -> Any:
    """Wrap ``loaded.model`` with a PEFT adapter (returns the PeftModel), or return None when ``adapter`` is None."""
    if adapter is None:
        return None
    from peft import PeftModel

    check_adapter_dir(adapter)
    try:
        with quiet_transformers():
            return PeftModel.from_pretrained(loaded.model, str(adapter), adapter_name=adapter_name, is_trainable=trainable)
    except Exception as exc:  # peft raises several types for a mismatched adapter
        raise RLAIFError(
            f"{adapter}: cannot load this adapter onto {loaded.name}: {type(exc).__name__}: {exc}. "
            "Was it trained on another base model?"
        ) from None


def transformers_backend(loaded: Any, model: Any = None, *, batch_size: int = 8) -> Any:
    """A TransformersBackend over ``loaded`` (or over ``model``, e.g. a PEFT-injected base, with its tokenizer)."""
    from cai_dsl.run.backends.transformers_backend import TransformersBackend
    from cai_dsl.run.loading import LoadedModel

    if model is not None:
        loaded = LoadedModel(model=model, tokenizer=loaded.tokenizer, name=loaded.name, path=loaded.path)
    return TransformersBackend(loaded, batch_size=batch_size)


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
        for fm in self.models:
            probs, texts = self._score_tasks(fm, queries, tasks, cot)
            per_model.append(probs)
            reasonings.append(texts)
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
                entry: dict[str, Any] = {"p_ab": p_ab, "p": votes[pid]}
                if p_ba is not None:
                    entry["p_ba"] = p_ba
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

    def _score_tasks(self, fm: FeedbackModel, queries, tasks, cot) -> tuple[list[float], list[str]]:
        from cai_dsl.run.backends.base import GenerationParams

        program = self.program
        if not tasks:
            return [], []
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
        probs = []
        for la, lb in scores:
            p = program.soft_label(la, lb)
            probs.append(program.clamp_cot(p) if cot.enabled else p)
        return probs, texts

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
    for fb in run.models.feedback:
        if run.backend != "transformers":
            from cai_dsl.run.backends import BackendError, make_backend

            options: dict[str, Any] = {"model": fb.model}
            if run.backend == "openai":
                options["base_url"] = run.backend_options.get("base_url")
                env = run.backend_options.get("api_key_env")
                if env:
                    options["api_key"] = os.environ.get(env)
            try:
                backend = make_backend(run.backend, **options)
            except BackendError as exc:
                raise RLAIFError(str(exc)) from None
            out.append(FeedbackModel(backend=backend, weight=fb.weight, name=fb.model))
            continue
        if share and fb.model in share:
            loaded, peft_model = share[fb.model]
            if peft_model is not None:
                backend = transformers_backend(loaded, peft_model.get_base_model(), batch_size=batch_size)
                out.append(FeedbackModel(backend, fb.weight, fb.model, peft_model.disable_adapter))
            else:
                out.append(FeedbackModel(transformers_backend(loaded, batch_size=batch_size), fb.weight, fb.model))
            continue
        out.append(FeedbackModel(transformers_backend(pool.load(fb.model), batch_size=batch_size), fb.weight, fb.model))
    return out


# ---------------------------------------------------------------------------------------------------- cai label


@dataclass(frozen=True)
class LabelSummary:
    """What a ``cai label`` run did: records on disk, new ones, the time spent on new ones, and the output file."""

    path: Path
    records: int
    new: int
    seconds: float
    mean_confidence: float

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


def policy_prompt(program: Any, text: str) -> Any:
    """The backend prompt the policy answers: the target's system prompt (if any) and the user's text."""
    from cai_dsl.run.backends.base import Prompt

    return Prompt.user(text, system=program.critique_revision.system)


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
) -> LabelSummary:
    """Label ``prompts`` (the first ``limit``) into ``out_dir/preferences.jsonl``; resumes a killed run.

    Prompts are processed in fixed chunks of ``batch_size`` (chunk k = prompts[k*B:(k+1)*B]) with seeds derived
    from the program seed and the chunk, so a resumed run regenerates an interrupted chunk identically and
    writes exactly the records an uninterrupted run would have written. ``on_chunk`` (tests) is called after
    each chunk's records are written.
    """
    from cai_dsl import __version__
    from cai_dsl.core.artifacts import RecordFile, RunMismatch

    out = Path(out_dir)
    items = list(prompts)[: limit if limit is not None else None]
    if not items:
        raise RLAIFError("no prompts to label")
    bs = batch_size or int(program.run.backend_options.get("batch_size", 8))
    gen = program.run.generation
    policy_spec = program.run.models.policy
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
    }
    try:
        records = RecordFile(out / "preferences.jsonl", key_field="id", fingerprint=fingerprint)
    except RunMismatch as exc:
        raise RLAIFError(str(exc)) from None
    pending = records.pending([{"id": it.id} for it in items])
    if not pending:
        return _label_summary(records, items, 0, 0.0, out)
    pool = pool or ModelPool(program.run.device, program.run.dtype)
    loaded = pool.load(policy_spec)
    peft_model = with_adapter(loaded, policy_adapter)
    gen_backend = transformers_backend(
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
    bar = progress(total=len(pending), desc="label", unit="pair", enabled=show_progress)
    try:
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
            for q, j in zip(queries, judgements):
                if records.done(q.key):
                    continue
                records.append(_label_record(q, j, seeds, provenance, program))
                new += 1
                bar.update(1)
            if on_chunk is not None:
                on_chunk(start)
    finally:
        bar.close()
    return _label_summary(records, items, new, time.perf_counter() - started, out)


def _label_record(q: PairQuery, j: PairJudgement, seeds, provenance: dict, program: Any) -> dict:
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


def _label_summary(records, items: Sequence[PromptItem], new: int, seconds: float, out: Path) -> LabelSummary:
    wanted = {it.id for it in items}
    probs = [r["probability"] for r in records if r["id"] in wanted]
    confidence = sum(abs(p - 0.5) * 2 for p in probs) / len(probs) if probs else math.nan
    return LabelSummary(path=out / "preferences.jsonl", records=len(records), new=new, seconds=seconds, mean_confidence=confidence)
