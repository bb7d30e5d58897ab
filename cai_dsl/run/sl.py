"""SL-CAI: the supervised critique -> revision stage of Constitutional AI, driven by a compiled program.

For each prompt: an initial response from the policy model; scenario tags (the data's ``scenario``
field, else the program's scenario classifier scored with ``backend.score``); then for each round
the program's principle(s), a critique by the critic model, the stop rule (``program.is_satisfied``)
and a revision. Every stage is batched across prompts (the backend sorts rows by length), and the
long few-shot preamble that all critique and revision prompts share is run once and its KV cache
reused by every batch (:class:`BatchedGenerator`).

Output: ``DIR/sl-data.jsonl``, one complete record per prompt (see ``docs/execution.md``), written
through :class:`cai_dsl.core.artifacts.RecordFile`: a record is appended (and fsynced) only once it is
complete, so a job killed at any point (even ``kill -9``) and rerun with the same arguments continues
where it stopped, with no record lost or duplicated.

Determinism: prompts are processed in fixed *chunks* (a partition of the prompt list that depends
only on the arguments); each generation call is seeded from the program seed and the chunk, and a
chunk that is incomplete on resume is recomputed whole (only its missing records are appended). So
a resumed run writes exactly the records an uninterrupted one would, sampling included.

Entry points: :func:`prepare_job` + :func:`run_sl` (``cai sl``), :func:`revise_once` (``cai revise``),
:func:`make_transform` (``cai serve --constitution``), :func:`run_sl_job` (``cai run``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from cai_dsl.core.artifacts import RecordFile, RunMismatch, write_atomic, write_json_atomic
from cai_dsl.run.backends.base import Backend, BackendError, Generation, GenerationParams, Prompt
from cai_dsl.compile.ir import ChatPrompt, HistoryTurn, Program, neutralize

__all__ = [
    "BatchedGenerator",
    "DATA_FILE",
    "Job",
    "ModelSet",
    "PromptItem",
    "SLCompileError",
    "SLError",
    "SLOptions",
    "SLResult",
    "SLRunner",
    "default_prompts",
    "evaluate_adapter",
    "load_prompts",
    "make_transform",
    "prepare_job",
    "revise_once",
    "run_sl",
    "run_sl_job",
]

DATA_FILE = "sl-data.jsonl"
"""Name of the SL-CAI data file inside the output directory."""

RECORD_VERSION = 1
HELPFUL_FRACTION = 0.25
"""Share of helpful (benign) prompts in the default sample: they teach SFT not to refuse everything."""

STOP_STRINGS = ("CritiqueRequest:", "RevisionRequest:")
"""Generated critiques and revisions are cut where the model starts writing the next request itself."""


class SLError(Exception):
    """Bad input or setup for an SL-CAI job; the message is meant for the user (no traceback)."""


class SLCompileError(SLError):
    """The constitution does not compile; ``diagnostics`` and ``sources`` are for printing."""

    def __init__(self, diagnostics: list, sources: Mapping[str, str]):
        super().__init__(f"{len([d for d in diagnostics if d.is_error])} error(s) in the constitution")
        self.diagnostics = diagnostics
        self.sources = dict(sources)


# ---------------------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class PromptItem:
    """One prompt of an SL-CAI job.

    ``prompt`` is the user's text (or a list of user/assistant turns ending with a user turn);
    ``scenario`` the facet tags if the data has them; ``helpful`` marks helpfulness data, answered but
    not critiqued (SFT learns from its initial response, so that it does not learn to refuse everything).
    """

    id: str
    prompt: str | tuple[dict, ...]
    scenario: dict[str, str] | None = None
    helpful: bool = False

    def to_json(self) -> dict[str, Any]:
        prompt = self.prompt if isinstance(self.prompt, str) else [dict(m) for m in self.prompt]
        return {"id": self.id, "prompt": prompt, "scenario": self.scenario, "helpful": self.helpful}


def _data_file(name: str) -> Path:
    return Path(str(resources.files("cai_dsl.data") / name))


def _item_from_json(data: Any, where: str, default_id: str, helpful_default: bool = False) -> PromptItem:
    if not isinstance(data, dict):
        raise SLError(f"{where}: expected a JSON object with a `prompt` field, got {type(data).__name__}")
    prompt = data.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise SLError(f"{where}: `prompt` must be a non-empty string")
    raw_id = data.get("id", default_id)
    if not isinstance(raw_id, (str, int)) or isinstance(raw_id, bool) or not str(raw_id).strip():
        raise SLError(f"{where}: `id` must be a non-empty string or an integer")
    scenario = data.get("scenario")
    if scenario is not None:
        if not isinstance(scenario, dict) or not all(
            isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in scenario.items()
        ):
            raise SLError(f"{where}: `scenario` must be an object mapping facet names to values (strings)")
        scenario = {k: v for k, v in scenario.items() if v is not None}
    helpful = data.get("helpful", helpful_default)
    if not isinstance(helpful, bool):
        raise SLError(f"{where}: `helpful` must be true or false")
    return PromptItem(id=str(raw_id), prompt=prompt, scenario=scenario, helpful=helpful)


def load_prompts(path: str | os.PathLike[str], limit: int | None = None) -> list[PromptItem]:
    """Read a prompts JSONL file: one object per line with ``prompt`` and optional ``id`` (default:
    ``line-N``), ``scenario`` (facet -> value) and ``helpful`` (bool). Blank lines are skipped.

    Raises :class:`SLError` as ``file:line: message`` on a malformed line or a duplicate id, or when the
    file cannot be read. ``limit`` keeps the first N prompts.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SLError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SLError(f"{path}: is a directory, not a JSONL file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SLError(f"{path}: cannot read: {exc}") from None
    items: list[PromptItem] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SLError(f"{where}: invalid JSON: {exc.msg} (column {exc.colno})") from None
        item = _item_from_json(data, where, f"line-{number}")
        if item.id in seen:
            raise SLError(f"{where}: duplicate id `{item.id}` (first on line {seen[item.id]})")
        seen[item.id] = number
        items.append(item)
        if limit is not None and len(items) >= limit:
            break
    if not items:
        raise SLError(f"{path}: no prompts in the file")
    return items


def _rank(seed: int, item_id: str) -> str:
    return hashlib.sha256(f"{seed}:{item_id}".encode()).hexdigest()


def default_prompts(limit: int | None = None, seed: int = 0) -> list[PromptItem]:
    """A deterministic sample of the package's prompts: red-team prompts plus about a quarter helpful
    ones (marked ``helpful``), in a seeded order that mixes the two.

    Without ``limit``: every red-team prompt and a third as many helpful ones.
    """
    red = load_prompts(_data_file("red_team_prompts.jsonl"))
    helpful = [replace(i, helpful=True) for i in load_prompts(_data_file("helpful_prompts.jsonl"))]
    red.sort(key=lambda i: _rank(seed, i.id))
    helpful.sort(key=lambda i: _rank(seed, i.id))
    if limit is None:
        n_help = min(len(helpful), math.ceil(len(red) / 3))
        n_red = len(red)
    else:
        if limit < 1:
            raise SLError("--limit must be at least 1")
        n_help = min(len(helpful), int(round(limit * HELPFUL_FRACTION)))
        n_red = min(len(red), limit - n_help)
        n_help = min(len(helpful), limit - n_red)
    chosen = red[:n_red] + helpful[:n_help]
    chosen.sort(key=lambda i: _rank(seed, "order:" + i.id))
    return chosen


# ---------------------------------------------------------------------------------------------------- generation


def _mix_seed(*parts: object) -> int:
    digest = hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


class BatchedGenerator:
    """Batched generation over a backend, reusing the KV cache of a prefix that all rows share.

    Critique and revision prompts all start with the same system message and few-shot preamble
    (about a thousand tokens with the paper's examples); running it once instead of once per row makes
    the critique and revision stages several times faster on CPU. For a ``TransformersBackend`` the
    rows' common token prefix is run once and its KV cache kept (a few entries, keyed by the prefix's
    token ids: later calls with the same prefix, or a single row that starts with a cached prefix,
    reuse it), expanded over each batch and handed to ``model.generate`` with each row's suffix. Other
    backends, or rows that share no long prefix, go through ``backend.generate_ids`` /
    ``backend.generate`` batch by batch. Rows are sorted by length (longest first) and results come
    back in input order; greedy results equal the backend's own up to floating-point noise.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        batch_size: int | None = None,
        prefix_cache: bool = True,
        min_prefix_tokens: int = 64,
        max_cached_prefixes: int = 4,
    ) -> None:
        self.backend = backend
        self.batch_size = max(1, batch_size or getattr(backend, "batch_size", 8))
        self.min_prefix_tokens = max(1, min_prefix_tokens)
        self.max_cached_prefixes = max(1, max_cached_prefixes)
        self._prefixes: OrderedDict[tuple[int, ...], Any] = OrderedDict()
        self._transformers = prefix_cache and _is_transformers(backend)
        # transformers >= 5.24 renamed `past_key_values` to `cache` (the backend probes the model's forward)
        self._cache_kwarg = getattr(backend, "_cache_kwarg", "past_key_values")

    @property
    def name(self) -> str:
        return self.backend.name

    def generate(
        self,
        prompts: Sequence[Prompt],
        params: GenerationParams,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> list[Generation]:
        """One generation per prompt, in input order; ``on_batch(rows, tokens)`` after each batch."""
        if not prompts:
            return []
        if not hasattr(self.backend, "generate_ids") or not hasattr(self.backend, "encode_prompt"):
            return self._generate_plain(list(prompts), params, on_batch)
        ids = [self.backend.encode_prompt(p) for p in prompts]
        return self.generate_ids(ids, params, on_batch)

    def _generate_plain(self, prompts: list[Prompt], params, on_batch) -> list[Generation]:
        out: list[Generation] = []
        for start in range(0, len(prompts), self.batch_size):
            batch = prompts[start : start + self.batch_size]
            gens = self.backend.generate(batch, replace(params, seed=_mix_seed(params.seed, start)))
            out.extend(gens)
            if on_batch:
                on_batch(len(batch), sum(g.completion_tokens for g in gens))
        return out

    def generate_ids(
        self,
        ids: Sequence[Sequence[int]],
        params: GenerationParams,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> list[Generation]:
        """Like :meth:`generate`, from already tokenized (rendered) prompts."""
        n = len(ids)
        rows = [list(r) for r in ids]
        for r in rows:
            if not r:
                raise BackendError("cannot generate from an empty prompt")
        limit = getattr(self.backend, "max_context", None)
        if limit is not None:
            for r in rows:
                if len(r) + params.max_new_tokens > limit:
                    raise BackendError(
                        f"The prompt has {len(r)} tokens and {params.max_new_tokens} new tokens were requested, "
                        f"more than the model's context of {limit} tokens. Lower max_new_tokens or use fewer "
                        "rounds or few-shot examples."
                    )
        prefix = self._find_prefix(rows) if self._transformers and params.max_new_tokens > 0 else None
        order = sorted(range(n), key=lambda i: -len(rows[i]))
        results: list[Generation | None] = [None] * n
        for number, start in enumerate(range(0, n, self.batch_size)):
            idx = order[start : start + self.batch_size]
            batch_params = replace(params, seed=_mix_seed(params.seed, number))
            if prefix is not None:
                gens = self._generate_with_prefix(prefix, [rows[i] for i in idx], batch_params)
            else:
                gens = self.backend.generate_ids([rows[i] for i in idx], batch_params)
            for i, g in zip(idx, gens, strict=True):
                results[i] = g
            if on_batch:
                on_batch(len(idx), sum(g.completion_tokens for g in gens))
        return [r for r in results if r is not None]

    # -- the shared prefix -------------------------------------------------------------------------------

    def _find_prefix(self, rows: list[list[int]]) -> tuple[tuple[int, ...], Any] | None:
        """The (prefix ids, KV) to run ``rows`` after, or None to generate without a shared prefix.

        Several rows: their longest common prefix (which depends on the rows only, so a call's
        results never depend on what earlier calls cached); its KV is taken from the cache when the
        same prefix was run before. A single row: the longest cached prefix it starts with.
        """
        shortest = min(len(r) for r in rows)
        if len(rows) == 1:
            row = rows[0]
            best = None
            for key in self._prefixes:
                if self.min_prefix_tokens <= len(key) < shortest and (best is None or len(key) > len(best)):
                    if row[: len(key)] == list(key):
                        best = key
            if best is None:
                return None
            self._prefixes.move_to_end(best)
            return best, self._prefixes[best]
        first = rows[0]
        p = 0
        while p < shortest - 1 and all(r[p] == first[p] for r in rows):
            p += 1
        if p < self.min_prefix_tokens:
            return None
        key = tuple(first[:p])
        if key in self._prefixes:
            self._prefixes.move_to_end(key)
            return key, self._prefixes[key]
        kv = self._prefix_kv(key)
        if kv is None:
            return None
        self._prefixes[key] = kv
        while len(self._prefixes) > self.max_cached_prefixes:
            self._prefixes.popitem(last=False)
        return key, kv

    def _prefix_kv(self, prefix: tuple[int, ...]) -> Any:
        import torch
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer

        backend = self.backend
        model = backend.model
        device = next(model.parameters()).device
        x = torch.tensor([list(prefix)], dtype=torch.long, device=device)
        with backend._eval_mode(), torch.inference_mode():
            out = backend._forward(
                input_ids=x,
                attention_mask=torch.ones_like(x),
                position_ids=torch.arange(x.shape[1], device=device)[None],
                cache=DynamicCache(config=model.config),
                keep=1,
            )
        cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
        layers = getattr(cache, "layers", None)
        if not layers or any(type(layer) is not DynamicLayer for layer in layers):
            return None  # sliding-window / hybrid caches: generate without the shared prefix
        return [(layer.keys, layer.values) for layer in layers]

    def _generate_with_prefix(
        self, prefix: tuple[tuple[int, ...], Any], rows: list[list[int]], params: GenerationParams
    ) -> list[Generation]:
        import torch
        from transformers import GenerationConfig, StoppingCriteriaList

        from cai_dsl.run.backends.transformers_backend import _StopOnStrings

        backend = self.backend
        model = backend.model
        key, kv = prefix
        p = len(key)
        suffixes = [r[p:] for r in rows]
        width = max(len(s) for s in suffixes)
        b = len(rows)
        pad_id = backend._pad_id if backend._pad_id is not None else backend._eos_ids[0]
        device = next(model.parameters()).device
        input_ids = torch.full((b, p + width), pad_id, dtype=torch.long)
        mask = torch.zeros((b, p + width), dtype=torch.long)
        input_ids[:, :p] = torch.tensor(list(key), dtype=torch.long)
        mask[:, :p] = 1
        for i, s in enumerate(suffixes):
            input_ids[i, p + width - len(s) :] = torch.tensor(s, dtype=torch.long)
            mask[i, p + width - len(s) :] = 1
        input_ids, mask = input_ids.to(device), mask.to(device)
        cache = _prefilled_cache(model, kv, b, p + width + params.max_new_tokens)
        settings = backend.generation_settings(params, pad_id)
        criteria = StoppingCriteriaList()
        total = p + width
        if params.stop:
            criteria.append(_StopOnStrings(backend.tokenizer, params.stop, total))
        with backend._eval_mode(), backend._rng(params.seed), torch.inference_mode():
            out = model.generate(
                input_ids=input_ids,
                attention_mask=mask,
                generation_config=GenerationConfig(**settings),
                stopping_criteria=criteria,
                **{self._cache_kwarg: cache},
            )
        return backend.decode_generations(out, total, rows, pad_id, params.stop)


def _prefilled_cache(model: Any, kv: list, batch: int, max_len: int) -> Any:
    """A KV cache for ``batch`` rows that already holds the shared prefix ``kv`` (computed for one row).

    A preallocated ``StaticCache`` when this transformers version has the expected layout: decoding
    then writes each step in place, where a ``DynamicCache`` copies the whole cache at every step
    (about a third of a decode step's time at batch 16 with a 1,200-token preamble). Otherwise a
    ``DynamicCache`` over views of the prefix expanded across the batch.
    """
    from transformers import DynamicCache

    prefix = int(kv[0][0].shape[-2])
    try:
        from transformers.cache_utils import StaticCache, StaticLayer

        cache = StaticCache(config=model.config, max_cache_len=max_len)
        if len(cache.layers) == len(kv) and all(type(layer) is StaticLayer for layer in cache.layers):
            for layer, (k, v) in zip(cache.layers, kv):
                layer.lazy_initialization(k.expand(batch, -1, -1, -1)[:, :, :1], v.expand(batch, -1, -1, -1)[:, :, :1])
                layer.keys[:, :, :prefix] = k
                layer.values[:, :, :prefix] = v
                layer.cumulative_length.fill_(prefix)
            if all(int(layer.get_seq_length()) == prefix for layer in cache.layers):
                return cache
    except (ImportError, AttributeError, TypeError, ValueError, RuntimeError):
        pass
    return DynamicCache(
        ddp_cache_data=[(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in kv],
        config=model.config,
    )


def _is_transformers(backend: Any) -> bool:
    try:
        from cai_dsl.run.backends.transformers_backend import TransformersBackend
    except ImportError:  # pragma: no cover - torch missing
        return False
    return isinstance(backend, TransformersBackend)


# ---------------------------------------------------------------------------------------------------- models


def _torch_dtype(name: str, device: str) -> Any:
    import torch

    if name == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def _device(name: str) -> str:
    if name == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


class ModelSet:
    """The job's backends by role (policy, critic, classifier), loading each distinct model once.

    Models are loaded lazily (the classifier only when a prompt has no scenario tags).
    """

    def __init__(self, program: Program, *, batch_size: int | None = None, prefix_cache: bool = True):
        self.program = program
        run = program.run
        self.batch_size = batch_size or int(run.backend_options.get("batch_size", 8))
        self.prefix_cache = prefix_cache
        self._loaded: dict[str, Any] = {}
        self._generators: dict[str, BatchedGenerator] = {}

    def _backend(self, spec: str) -> Any:
        run = self.program.run
        if spec in self._loaded:
            return self._loaded[spec]
        from cai_dsl.run.backends import make_backend
        from cai_dsl.run.loading import ModelError, load_model

        opts = run.backend_options
        try:
            if run.backend == "transformers":
                from cai_dsl.run.backends.transformers_backend import TransformersBackend

                device = _device(run.device)
                loaded = load_model(spec, dtype=_torch_dtype(run.dtype, device), device=device)
                backend: Any = TransformersBackend(loaded, batch_size=self.batch_size)
            elif run.backend == "openai":
                key_env = opts.get("api_key_env")
                backend = make_backend(
                    "openai",
                    base_url=opts.get("base_url"),
                    model=spec,
                    api_key=os.environ.get(key_env) if key_env else None,
                    timeout=float(opts.get("timeout_s", 120.0)),
                    concurrency=int(opts.get("max_concurrency", 8)),
                )
            else:
                backend = make_backend(
                    run.backend,
                    model=spec,
                    tensor_parallel_size=int(opts.get("tensor_parallel_size", 1)),
                    gpu_memory_utilization=float(opts.get("gpu_memory_utilization", 0.85)),
                )
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


# ---------------------------------------------------------------------------------------------------- the pipeline


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
        batch = self.batch_size or int(program.run.backend_options.get("batch_size", 8))
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


class _NoProgress:
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
            chats = [self.program.classifier_messages(_last_user_text(items[i].prompt), facet) for i in todo]
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
            seed=_mix_seed(self.program.provenance.seed, *key),
        )

    def _initial_prompt(self, item: PromptItem) -> Prompt:
        fmt = self.program.chat_format
        messages = []
        system = self.program.critique_revision.system
        if system is not None:
            messages.append({"role": "system", "content": system})
        if isinstance(item.prompt, str):
            messages.append({"role": "user", "content": neutralize(item.prompt, fmt)})
        else:
            messages.extend({"role": m["role"], "content": neutralize(m["content"], fmt)} for m in item.prompt)
        return Prompt.from_messages(messages)

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
        progress = progress or _NoProgress()
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
                [self._initial_prompt(items[i]) for i in need],
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


# ---------------------------------------------------------------------------------------------------- jobs


@dataclass(frozen=True)
class Job:
    """A compiled deployment ready to run: the program, where it came from, and its source texts."""

    program: Program
    source: Path
    deployment: str
    target: str
    sources: dict[str, str] = field(default_factory=dict)
    """Every loaded `.const` file: path relative to the root file's directory -> text (for the model card)."""


def prepare_job(
    source: str | os.PathLike[str], deployment: str, target: str | None = None, *, seed: int | None = None
) -> Job:
    """Resolve, check and compile ``deployment`` of ``source`` for ``target``.

    Raises :class:`SLError` for a missing file, an unknown deployment or target, and
    :class:`SLCompileError` (with the diagnostics) when the constitution has errors.
    """
    from cai_dsl.compile.compiler import CompileError, check_constitution, compile_program
    from cai_dsl.lang.resolver import resolve
    from cai_dsl.compile.targets import TargetError, load_target

    path = Path(source)
    if not path.is_file():
        raise SLError(f"{source}: no such file")
    if seed is not None and seed < 0:
        raise SLError("--seed must be >= 0")
    try:
        tgt = load_target(target)
    except TargetError as exc:
        raise SLError(str(exc)) from None
    constitution = resolve(str(path))
    if deployment not in constitution.deployment_decls:
        errors = [d for d in constitution.diagnostics if d.is_error]
        if errors:
            raise SLCompileError(errors, constitution.sources)
        known = ", ".join(constitution.deployment_decls) or "none"
        raise SLError(f"{source} has no deployment `{deployment}` (deployments: {known})")
    diagnostics = check_constitution(constitution, [deployment])
    if any(d.is_error for d in diagnostics):
        raise SLCompileError([d for d in diagnostics if d.is_error], constitution.sources)
    try:
        program = compile_program(constitution, deployment, tgt, seed=seed, diagnostics=diagnostics)
    except CompileError as exc:
        raise SLCompileError(list(exc.diagnostics), constitution.sources) from None
    root = path.parent
    texts: dict[str, str] = {}
    for rel, _sha in program.provenance.files:
        try:
            texts[rel] = (root / rel).read_text(encoding="utf-8")
        except OSError:
            continue
    return Job(program=program, source=path, deployment=deployment, target=tgt.name, sources=texts)


@dataclass
class SLResult:
    """What :func:`run_sl` did: the data file, its records (in prompt order) and counts."""

    path: Path
    records: list[dict[str, Any]]
    new: int
    resumed: int
    seconds: float
    tokens: int

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def _provenance(job: Job, models: ModelSet, options: SLOptions) -> dict[str, Any]:
    p = job.program.provenance
    from cai_dsl import __version__

    return {
        "constitution": p.constitution,
        "constitution_version": p.version,
        "source_file": p.root_file,
        "source_hash": p.source_hash,
        "program_hash": p.program_hash,
        "deployment": p.deployment,
        "target": p.target,
        "seed": p.seed,
        "policy_model": models.spec("policy"),
        "critic_model": models.spec("critic"),
        "generation": {
            "max_new_tokens": options.max_new_tokens,
            "temperature": options.temperature,
            "top_p": options.top_p,
            "rounds": options.rounds,
            "history": options.history,
        },
        "cai_dsl_version": __version__,
    }


def _fingerprint(job: Job, items: Sequence[PromptItem], models: ModelSet, options: SLOptions) -> dict[str, Any]:
    prompts = hashlib.sha256(
        json.dumps([i.to_json() for i in items], sort_keys=True, ensure_ascii=False).encode()
    ).hexdigest()
    return {
        "kind": "cai-sl-data",
        "record_version": RECORD_VERSION,
        "source_hash": job.program.provenance.source_hash,
        "program_hash": job.program.provenance.program_hash,
        "deployment": job.deployment,
        "target": job.target,
        "prompts_sha256": prompts,
        "prompts": len(items),
        "models": {r: models.spec(r) for r in ("policy", "critic", "classifier")},
        "rounds": options.rounds,
        "max_new_tokens": options.max_new_tokens,
        "temperature": options.temperature,
        "top_p": options.top_p,
        "batch_size": options.batch_size,
        "chunk_size": options.chunk_size,
        "history": options.history,
    }


def _record(item: PromptItem, result: dict[str, Any], provenance: dict[str, Any], program: Program) -> dict[str, Any]:
    scenario = result["scenario"]
    return {
        "id": item.id,
        "prompt": item.prompt if isinstance(item.prompt, str) else [dict(m) for m in item.prompt],
        "helpful": item.helpful,
        "scenario": scenario,
        "scenario_source": result["scenario_source"],
        "reachable": program.reachable(scenario) if scenario else None,
        "initial": result["initial"],
        "rounds": result["rounds"],
        "final": result["final"],
        "stopped": result["stopped"],
        "tokens": result["tokens"],
        "provenance": provenance,
    }


class _RateColumn(ProgressColumn):
    """prompts/min for the overall task (since this run started), tokens/s for a stage."""

    def render(self, task) -> Text:
        elapsed = task.elapsed or 0.0
        if elapsed <= 0:
            return Text("")
        if task.fields.get("unit") == "tok":
            return Text(f"{task.fields.get('tokens', 0) / elapsed:6.1f} tok/s", style="progress.data.speed")
        done = task.completed - task.fields.get("start_done", 0)
        return Text(f"{done / elapsed * 60:5.1f}/min", style="progress.data.speed")


class _RichProgress:
    """Progress bars on stderr: records overall, and the running stage with its token rate."""

    def __init__(self, total: int, done: int, label: str):
        self.progress = Progress(
            TextColumn("{task.description:<24}"),
            BarColumn(),
            MofNCompleteColumn(),
            _RateColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self.overall = self.progress.add_task(label, total=total, completed=done, start_done=done, unit="prompts")
        self._stage: Any = None

    def __enter__(self) -> "_RichProgress":
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done_stage()
        self.progress.stop()

    def stage(self, name: str, total: int) -> Callable[[int, int], None]:
        self.done_stage()
        task = self.progress.add_task(name, total=total, tokens=0, unit="tok")
        self._stage = task
        produced = [0]

        def advance(rows: int, tokens: int) -> None:
            produced[0] += tokens
            self.progress.update(task, advance=rows, tokens=produced[0])

        return advance

    def done_stage(self) -> None:
        if self._stage is not None:
            self.progress.remove_task(self._stage)
            self._stage = None

    def records(self, n: int) -> None:
        self.progress.advance(self.overall, n)


@contextlib.contextmanager
def _progress(enabled: bool, total: int, done: int, label: str = "SL-CAI prompts") -> Iterator[Any]:
    if not enabled:
        yield _NoProgress()
        return
    with _RichProgress(total, done, label) as bar:
        yield bar


def run_sl(
    job: Job,
    items: Sequence[PromptItem],
    out_dir: str | os.PathLike[str],
    *,
    options: SLOptions | None = None,
    models: ModelSet | None = None,
    progress: bool = True,
) -> SLResult:
    """Run SL-CAI over ``items`` into ``out_dir/sl-data.jsonl`` (resumable; see the module docstring).

    Also writes ``out_dir/program.json`` (the compiled program) and ``out_dir/sources.json`` (the
    constitution's source texts), which the SFT stage embeds in the adapter's model card.
    """
    if not items:
        raise SLError("no prompts to run")
    ids = [i.id for i in items]
    if len(set(ids)) != len(ids):
        raise SLError("prompt ids must be unique")
    program = job.program
    opts = (options or SLOptions()).resolved(program)
    if opts.rounds is not None and opts.rounds < 0:
        raise SLError("--rounds must be >= 0")
    models = models or ModelSet(program, batch_size=opts.batch_size, prefix_cache=opts.prefix_cache)
    runner = SLRunner(program, models, opts)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise SLError(f"{out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    try:
        records = RecordFile(out / DATA_FILE, fingerprint=_fingerprint(job, items, models, opts))
    except RunMismatch as exc:
        raise SLError(str(exc)) from None
    write_atomic(out / "program.json", program.to_json())
    write_json_atomic(out / "sources.json", job.sources)
    provenance = _provenance(job, models, opts)
    resumed = sum(1 for i in items if records.done(i.id))
    start = time.perf_counter()
    new = tokens = 0
    chunk = int(opts.chunk_size or 32)
    with _progress(progress, len(items), resumed) as bar:
        for c, first in enumerate(range(0, len(items), chunk)):
            part = list(items[first : first + chunk])
            if all(records.done(i.id) for i in part):
                continue
            key = f"chunk:{c}:" + hashlib.sha256("\n".join(i.id for i in part).encode()).hexdigest()[:16]
            results = runner.run_chunk(part, key, progress=bar)
            for item, result in zip(part, results, strict=True):
                tokens += sum(result["tokens"].values())
                if records.done(item.id):
                    continue
                records.append(_record(item, result, provenance, program))
                new += 1
                bar.records(1)
    ordered = [records.records[i.id] for i in items]
    return SLResult(
        path=out / DATA_FILE,
        records=ordered,
        new=new,
        resumed=resumed,
        seconds=time.perf_counter() - start,
        tokens=tokens,
    )


# ---------------------------------------------------------------------------------------------------- inference-time loop


def revise_once(
    program: Program,
    models: ModelSet,
    prompt: str | Sequence[Mapping[str, str]],
    *,
    response: str | None = None,
    options: SLOptions | None = None,
    on_step: Callable[[str, int, dict], None] | None = None,
    key: str | None = None,
) -> dict[str, Any]:
    """The constitutional loop for one prompt at inference time: generate (unless ``response`` is
    given), then critique and revise for the program's rounds. Returns the result dict (``initial``,
    ``rounds``, ``final``, ``stopped``...); ``on_step`` sees each step as it happens."""
    conv: str | tuple[dict, ...] = prompt if isinstance(prompt, str) else tuple(dict(m) for m in prompt)
    text = conv if isinstance(conv, str) else json.dumps(list(conv), sort_keys=True)
    item = PromptItem(id="p-" + hashlib.sha256(text.encode()).hexdigest()[:16], prompt=conv)
    runner = SLRunner(program, models, options)
    return runner.run_chunk([item], key or item.id, initial=[response], on_step=on_step)[0]


def _last_user_text(prompt: str | Sequence[Mapping[str, str]]) -> str:
    if isinstance(prompt, str):
        return prompt
    for m in reversed(list(prompt)):
        if m.get("role") == "user":
            return m.get("content", "")
    return ""


def make_transform(program: Program, backend: Any, *, options: SLOptions | None = None) -> Callable[[list[dict], str], str]:
    """The ``cai serve`` answer hook: critique and revise every chat answer with ``program``, using the
    served backend for every role (it is called with the server's model lock held)."""
    models = ModelSet.from_backend(program, backend)

    def transform(messages: list[dict[str, str]], answer: str) -> str:
        turns = [m for m in messages if m.get("role") in ("user", "assistant")]
        if not turns or turns[-1].get("role") != "user":
            return answer  # e.g. continuing an assistant message: nothing to critique
        result = revise_once(program, models, turns, response=answer, options=options)
        return result["final"] if result["final"] else answer

    return transform


# ---------------------------------------------------------------------------------------------------- evaluation


def _completion_logprobs(backend: Any, program: Program, records: Sequence[dict[str, Any]]) -> list[tuple[float, int]]:
    """(summed log-prob, tokens) of each record's final response after its prompt, under ``backend``."""
    from cai_dsl.run.backends.base import continuation_ids, prompt_ids
    from cai_dsl.run.train.sft import _prompt_messages

    seqs, starts = [], []
    for r in records:
        text = backend.render(Prompt.from_messages(_prompt_messages(r, program)))
        pids = prompt_ids(backend.tokenizer, text)
        completion = neutralize((r.get("final") or "").strip(), program.chat_format)
        seqs.append(pids + continuation_ids(backend.tokenizer, text, pids, completion))
        starts.append(len(pids))
    rows = backend.token_logprobs(seqs, starts)
    return [(sum(t.logprob for t in row), len(row)) for row in rows]


def _mean_per_token(pairs: Sequence[tuple[float, int]]) -> float | None:
    total = sum(n for _, n in pairs)
    return round(sum(lp for lp, _ in pairs) / total, 4) if total else None


def evaluate_adapter(
    program: Program,
    base_spec: str,
    adapter_dir: str | os.PathLike[str],
    held_out: Sequence[dict[str, Any]],
    train: Sequence[dict[str, Any]] = (),
    *,
    examples: int = 3,
    max_new_tokens: int = 48,
) -> dict[str, Any]:
    """Before/after numbers for an SL-CAI adapter.

    * mean log-probability per token of the held-out records' final revisions (and of the training
      records', a fit check) under the base model and under the base model with the adapter merged;
    * greedy answers of both models to the first ``examples`` held-out prompts, side by side.
    """
    from cai_dsl.run.backends.transformers_backend import TransformersBackend
    from cai_dsl.run.loading import ModelError, load_model
    from cai_dsl.run.train.sft import _prompt_messages

    params = GenerationParams(max_new_tokens=max_new_tokens, temperature=0.0, seed=0)
    shown = list(held_out[:examples])
    out: dict[str, Any] = {"held_out": len(held_out), "train": len(train), "examples": []}
    answers: dict[str, list[str]] = {}
    for label, adapter in (("base", None), ("adapted", adapter_dir)):
        try:
            loaded = load_model(base_spec, adapter=adapter)
        except ModelError as exc:
            raise SLError(str(exc)) from None
        backend = TransformersBackend(loaded, batch_size=8)
        out[f"{label}_logprob_held_out"] = _mean_per_token(_completion_logprobs(backend, program, held_out))
        out[f"{label}_logprob_train"] = _mean_per_token(_completion_logprobs(backend, program, train)) if train else None
        gens = backend.generate([Prompt.from_messages(_prompt_messages(r, program)) for r in shown], params)
        answers[label] = [g.text.strip() for g in gens]
        del backend, loaded
    for k, r in enumerate(shown):
        out["examples"].append(
            {"id": r["id"], "prompt": _last_user_text(r["prompt"]), "base": answers["base"][k], "adapted": answers["adapted"][k]}
        )
    return out


# ---------------------------------------------------------------------------------------------------- cai run


def _short(text: str, width: int = 110) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 3] + "..."


def run_sl_job(
    source: str,
    deployment: str,
    target: str,
    out: Path,
    *,
    prompts: int = 16,
    held_out: int = 3,
    rounds: int = 2,
    max_new_tokens: int = 48,
    sft_steps: int = 12,
    progress: bool = True,
) -> int:
    """The execution stages of ``cai run``: SL-CAI on a small sample of the package's prompts, LoRA SFT
    on the revisions, and a before/after evaluation on held-out prompts. Prints a summary and the
    artifact paths; returns the exit code. Resumable: a rerun skips finished records, an adapter that
    is up to date and an evaluation already done."""
    from cai_dsl.run.train.sft import SFTError, SFTOptions, train_sft

    out = Path(out)
    try:
        job = prepare_job(source, deployment, target)
        program = job.program
        rounds = min(rounds, program.critique_revision.rounds) if program.critique_revision.rounds else 0
        items = default_prompts(prompts, seed=program.provenance.seed)
        # one chunk, one batch per stage: the shared preamble runs once per stage (see BatchedGenerator)
        options = SLOptions(rounds=rounds, max_new_tokens=max_new_tokens, batch_size=prompts, chunk_size=prompts)
        result = run_sl(job, items, out, options=options, progress=progress)
        records = result.records
        red = sum(1 for r in records if not r["helpful"])
        stops: dict[str, int] = {}
        for r in records:
            stops[r["stopped"]] = stops.get(r["stopped"], 0) + 1
        print(
            f"[sl 1/3] SL-CAI data: {len(records)} prompts ({red} red-team, {len(records) - red} helpful), {rounds} round(s), "
            f"{max_new_tokens} new tokens: {result.new} new record(s), {result.resumed} resumed, "
            f"in {result.seconds:.1f} s ({result.tokens_per_second:.1f} generated tok/s) -> {result.path}"
        )
        print("         stopped: " + ", ".join(f"{v} {k}" for k, v in sorted(stops.items())))
        revised = [r for r in records if not r["helpful"] and any(t.get("revision") for t in r["rounds"])]
        held = sorted(revised, key=lambda r: _rank(program.provenance.seed, "held:" + r["id"]))[:held_out]
        held_ids = tuple(sorted(r["id"] for r in held))
        sft = train_sft(out, options=SFTOptions(exclude_ids=held_ids, max_steps=sft_steps, batch_size=4), progress=progress)
        what = "up to date, skipped" if sft.skipped else f"{sft.seconds:.1f} s" + (f", resumed from {Path(sft.resumed_from).name}" if sft.resumed_from else "")
        print(
            f"[sl 2/3] LoRA SFT: {sft.examples} examples, {sft.steps} steps, final loss {sft.loss} ({what}) -> {sft.adapter} "
            "(model card: README.md)"
        )
        if not held:
            print("[sl 3/3] evaluation skipped: no revised record to hold out")
            return 0
        eval_path = out / "sl-eval.json"
        fingerprint = sft.manifest.get("fingerprint")
        cached = None
        with contextlib.suppress(OSError, ValueError):
            cached = json.loads(eval_path.read_text(encoding="utf-8"))
        if isinstance(cached, dict) and cached.get("adapter_fingerprint") == fingerprint:
            ev = cached
        else:
            train_records = [r for r in records if not r["helpful"] and r["id"] not in held_ids]
            t0 = time.perf_counter()
            ev = evaluate_adapter(program, sft.manifest.get("base_model") or program.run.models.policy, sft.adapter, held, train_records, max_new_tokens=max_new_tokens)
            ev["seconds"] = round(time.perf_counter() - t0, 1)
            ev["adapter_fingerprint"] = fingerprint
            write_json_atomic(eval_path, ev)

        def delta(a: float | None, b: float | None) -> str:
            return f"{b - a:+.3f}" if a is not None and b is not None else "n/a"

        print(
            f"[sl 3/3] evaluation on {ev['held_out']} held-out prompt(s): mean log-prob per token of their revisions "
            f"{ev['base_logprob_held_out']} (base) -> {ev['adapted_logprob_held_out']} (adapted), "
            f"{delta(ev['base_logprob_held_out'], ev['adapted_logprob_held_out'])}; on the {ev['train']} training "
            f"revisions {ev['base_logprob_train']} -> {ev['adapted_logprob_train']} "
            f"({delta(ev['base_logprob_train'], ev['adapted_logprob_train'])})"
        )
        for e in ev["examples"]:
            print(f"         {e['id']}: {_short(e['prompt'])}")
            print(f"           base:    {_short(e['base'])}")
            print(f"           adapted: {_short(e['adapted'])}")
        print(f"         artifacts: {result.path}, {sft.adapter}/, {eval_path}, {out / 'program.json'}")
        return 0
    except SLCompileError as exc:
        from cai_dsl.cli.common import print_diagnostics

        print_diagnostics(exc.diagnostics, exc.sources)
        return 1
    except (SLError, SFTError, BackendError) as exc:
        print(f"cai: error: {exc}", file=sys.stderr)
        return 2
