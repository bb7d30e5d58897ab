"""Batched generation over a backend, reusing the KV cache of a prefix that all rows share (SL-CAI's
critique and revision prompts share a long few-shot preamble)."""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from cai_dsl.run.backends.base import Backend, BackendError, Generation, GenerationParams, Prompt

__all__ = ["BatchedGenerator", "mix_seed"]


def mix_seed(*parts: object) -> int:
    digest = hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


class BatchedGenerator:
    """Batched generation over a backend, reusing the KV cache of a prefix that all rows share.

    Critique and revision prompts all start with the same system message and few-shot preamble
    (about a thousand tokens with the paper's examples); running it once instead of once per row makes
    the critique and revision stages several times faster on CPU. For a backend with
    ``prefix_kv``/``generate_with_prefix`` (the transformers backend) the
    rows' common token prefix is run once and its KV cache kept (a few entries, keyed by the prefix's
    token ids: later calls with the same prefix, or a single row that starts with a cached prefix,
    reuse it), and each batch is generated after it with the rows' suffixes. Other
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
        self._prefix_cache = prefix_cache and hasattr(backend, "generate_with_prefix")

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
            gens = self.backend.generate(batch, replace(params, seed=mix_seed(params.seed, start)))
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
        prefix = self._find_prefix(rows) if self._prefix_cache and params.max_new_tokens > 0 else None
        order = sorted(range(n), key=lambda i: -len(rows[i]))
        results: list[Generation | None] = [None] * n
        for number, start in enumerate(range(0, n, self.batch_size)):
            idx = order[start : start + self.batch_size]
            batch_params = replace(params, seed=mix_seed(params.seed, number))
            if prefix is not None:
                gens = self.backend.generate_with_prefix(prefix[0], prefix[1], [rows[i] for i in idx], batch_params)
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
        kv = self.backend.prefix_kv(key)
        if kv is None:
            return None
        self._prefixes[key] = kv
        while len(self._prefixes) > self.max_cached_prefixes:
            self._prefixes.popitem(last=False)
        return key, kv
