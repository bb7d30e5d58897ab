"""The default backend: a local causal LM run in-process with transformers.

Design notes (measured on the 2-core CPU dev machine with the embedded SmolLM2-135M, see
``bench/bench_generation.py``):

* Generation is batched with LEFT padding; prompts are sorted by token length (longest first) so each batch
  holds similar lengths, and results are returned in input order.
* Sampling is reproducible per call: the global torch RNG is forked, seeded with ``params.seed`` and restored,
  so the same seed, inputs and batch size give the same outputs and nothing leaks into other code.  Because the
  random draws of a batch are shared, a sampled answer can change with the batch it was drawn in; greedy
  answers do not depend on batching (beyond floating-point noise).
* Stop strings end a row through a StoppingCriteria that decodes only the tail of each row; generation stops
  as soon as every row has hit EOS or a stop string, and the returned text is cut before the stop string.
* ``score`` / ``token_logprobs`` run every shared token once (``prefix_cache=True`` with ``fast_decode``,
  :mod:`cai_dsl.run.backends.prefix_scoring`): sequences that differ only in their one scored token are one
  row, the prefix common to all rows is run once, and rows are grouped by a longer common prefix (a judge's
  request + response, shared by all its questions) that is run once per group.  Without ``fast_decode`` a
  common prefix's KV cache is expanded over the batch; ``prefix_cache=False`` scores each sequence as its
  own row.  All paths agree up to float noise (``tests/run/backends/test_prefix_scoring.py``).
* Decoding (``fast_decode=True``, the default) goes through :mod:`cai_dsl.run.backends.shared_prefix`: a lean
  loop over preallocated per-row K/V buffers, grouped-query attention without the per-head K/V copy, and a
  shared prefix (SL-CAI's few-shot preamble, :meth:`generate_with_prefix`; the common prefix in ``score``)
  kept as one copy that every row attends to.  Greedy tokens equal ``model.generate``'s (the reference path,
  ``fast_decode=False``, also used for models the fast loop cannot drive).
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import (
    DynamicCache,
    GenerationConfig,
    StoppingCriteriaList,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)
from transformers.cache_utils import DynamicLayer

from cai_dsl.run.backends import prefix_scoring, shared_prefix
from cai_dsl.run.backends.hf_support import StopOnStrings, prefilled_cache

from cai_dsl.run.loading import DEFAULT_MODEL, LoadedModel, ModelError, load_model, prepare_tokenizer
from cai_dsl.run.backends.base import (
    BackendError,
    Generation,
    GenerationParams,
    Prompt,
    continuation_ids,
    encode_text,
    prompt_ids,
    render_chat,
    truncate_at_stop,
)

__all__ = ["TokenLogprob", "TransformersBackend"]


@dataclass(frozen=True)
class TokenLogprob:
    """The log-probability of one token of a sequence, with optional top alternatives ``(token_id, logprob)``."""

    token_id: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()


class TransformersBackend:
    """Generate and score with a local causal LM through transformers.

    ``model`` is a model spec (see ``cai_dsl.run.loading``) or an already loaded ``LoadedModel``.
    ``batch_size`` bounds the rows of one generation batch, ``score_batch_size`` (default: 4x batch_size) the
    (prompt, continuation) pairs of one scoring forward pass.  ``prefix_cache`` enables shared-prefix KV reuse
    in ``score`` once the shared prefix reaches ``min_prefix_tokens``. ``fast_decode`` (default) decodes with
    :mod:`shared_prefix` (one copy of a shared prefix, no grouped-query K/V copy, preallocated buffers);
    False uses ``model.generate`` (the reference path; also the fallback for models it cannot drive).
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | LoadedModel = DEFAULT_MODEL,
        *,
        batch_size: int = 8,
        score_batch_size: int | None = None,
        dtype: Any = None,
        device: str = "cpu",
        prefix_cache: bool = True,
        min_prefix_tokens: int = 16,
        max_logits_elements: int = 1 << 27,
        fast_decode: bool = True,
    ) -> None:
        if batch_size < 1:
            raise BackendError("batch_size must be at least 1")
        try:
            loaded = model if isinstance(model, LoadedModel) else load_model(model, dtype=dtype, device=device)
        except ModelError as exc:
            raise BackendError(str(exc)) from exc
        self.loaded = loaded
        self.model = loaded.model
        self.tokenizer = prepare_tokenizer(loaded.tokenizer)
        self.model.eval()
        self.batch_size = batch_size
        self.score_batch_size = score_batch_size or 4 * batch_size
        self.prefix_cache = prefix_cache
        self.min_prefix_tokens = max(1, min_prefix_tokens)
        self.max_logits_elements = max_logits_elements
        self.fast_decode = fast_decode
        self._device = next(self.model.parameters()).device
        self._eos_ids = self._collect_eos_ids()
        self._pad_id = self.tokenizer.pad_token_id
        forward_params = inspect.signature(self.model.forward).parameters
        # transformers >= 5.24 renamed `past_key_values` to `cache`
        self._cache_kwarg = "cache" if "cache" in forward_params else "past_key_values"
        self._has_logits_to_keep = "logits_to_keep" in forward_params
        self.fast_decode = self.fast_decode and self._has_logits_to_keep
        cfg = (
            self.model.config.get_text_config() if hasattr(self.model.config, "get_text_config") else self.model.config
        )
        self._vocab_size = int(getattr(cfg, "vocab_size", 0) or len(self.tokenizer))
        self.max_context = int(getattr(cfg, "max_position_embeddings", 0) or 0) or None

    # -- identity ------------------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """``transformers:<model name>``."""
        return f"transformers:{self.loaded.name}"

    def _collect_eos_ids(self) -> tuple[int, ...]:
        ids: list[int] = []
        gen_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        for value in (gen_eos, self.tokenizer.eos_token_id):
            if value is None:
                continue
            for v in value if isinstance(value, (list, tuple)) else [value]:
                if v is not None and int(v) not in ids:
                    ids.append(int(v))
        return tuple(ids)

    # -- rendering -----------------------------------------------------------------------------------------

    def render(self, prompt: Prompt) -> str:
        """The exact text fed to the model: chat template with generation prompt, then the assistant prefix."""
        return render_chat(self.tokenizer, prompt)

    def encode_prompt(self, prompt: Prompt) -> list[int]:
        """Token ids of the rendered prompt."""
        return prompt_ids(self.tokenizer, self.render(prompt))

    def encode(self, text: str, *, add_special_tokens: bool = False) -> list[int]:
        """Token ids of raw text."""
        return encode_text(self.tokenizer, text, add_special_tokens=add_special_tokens)

    # -- generation ----------------------------------------------------------------------------------------

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams | None = None) -> list[Generation]:
        """Generate one answer per prompt (batched, length-sorted), returned in input order."""
        return self.generate_ids([self.encode_prompt(p) for p in prompts], params)

    def generate_ids(
        self, token_lists: Sequence[Sequence[int]], params: GenerationParams | None = None
    ) -> list[Generation]:
        """Generate from already tokenized prompts (used by the server's raw-text completions)."""
        params = params or GenerationParams()
        n = len(token_lists)
        if n == 0:
            return []
        for ids in token_lists:
            if not ids:
                raise BackendError("cannot generate from an empty prompt")
            self._check_budget(len(ids), params.max_new_tokens)
        if params.max_new_tokens == 0:
            return [Generation("", len(ids), 0, "length") for ids in token_lists]
        order = sorted(range(n), key=lambda i: -len(token_lists[i]))
        results: list[Generation | None] = [None] * n
        with self._eval_mode(), self._rng(params.seed), torch.inference_mode():
            for start in range(0, n, self.batch_size):
                idx = order[start : start + self.batch_size]
                for i, gen in zip(idx, self._generate_batch([token_lists[i] for i in idx], params), strict=True):
                    results[i] = gen
        return [r for r in results if r is not None]

    def _check_budget(self, prompt_len: int, max_new_tokens: int) -> None:
        if self.max_context is not None and prompt_len + max_new_tokens > self.max_context:
            raise BackendError(
                f"The prompt has {prompt_len} tokens and {max_new_tokens} new tokens were requested, more than "
                f"the model's context of {self.max_context} tokens. Shorten the prompt or lower max_new_tokens."
            )

    @contextlib.contextmanager
    def _eval_mode(self) -> Iterator[None]:
        """Run in eval mode (no dropout) even if a trainer left the shared model in train mode; restore after."""
        was_training = self.model.training
        if was_training:
            self.model.eval()
        try:
            yield
        finally:
            if was_training:
                self.model.train()

    @contextlib.contextmanager
    def _rng(self, seed: int | None) -> Iterator[None]:
        if seed is None:
            yield
            return
        devices = [self._device.index or 0] if self._device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(int(seed))
            yield

    def _left_pad(self, rows: Sequence[Sequence[int]], pad_id: int) -> tuple[Any, Any]:
        return prefix_scoring.left_pad(rows, pad_id, self._device, mask_dtype=torch.long)

    def generation_settings(self, params: GenerationParams, pad_id: int) -> dict[str, Any]:
        """Arguments of ``GenerationConfig`` for ``params``; explicit values override the
        model's generation_config: OpenAI-style semantics, no top-k."""
        settings: dict[str, Any] = {
            "max_new_tokens": params.max_new_tokens,
            "do_sample": not params.greedy,
            "num_beams": 1,
            "repetition_penalty": 1.0,
            "pad_token_id": pad_id,
            "eos_token_id": list(self._eos_ids) or None,
            "bos_token_id": self.tokenizer.bos_token_id,
        }
        if not params.greedy:
            settings.update(temperature=params.temperature, top_p=params.top_p, top_k=0)
        return settings

    def _generate_batch(self, rows: Sequence[Sequence[int]], params: GenerationParams) -> list[Generation]:
        pad_id = self._pad_id if self._pad_id is not None else self._eos_ids[0]
        input_ids, attention_mask = self._left_pad(rows, pad_id)
        prompt_len = input_ids.shape[1]
        fast = self._fast_decode(None, 0, input_ids, attention_mask, params, pad_id)
        if fast is not None:
            return self.decode_generations(fast, 0, rows, pad_id, params.stop)
        settings = self.generation_settings(params, pad_id)
        config = GenerationConfig(**settings)
        criteria = StoppingCriteriaList()
        if params.stop:
            criteria.append(StopOnStrings(self.tokenizer, params.stop, prompt_len))
        out = self.model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            generation_config=config,
            stopping_criteria=criteria,
        )
        return self.decode_generations(out, prompt_len, rows, pad_id, params.stop)

    def _fast_decode(
        self, prefix: Any, prefix_len: int, input_ids: Any, mask: Any, params: GenerationParams, pad_id: int
    ) -> Any | None:
        """New tokens from :func:`shared_prefix.decode`, or None (fast decoding off or unsupported)."""
        if not self.fast_decode:
            return None
        warp = None
        if not params.greedy:
            warpers = [TemperatureLogitsWarper(params.temperature)]
            if params.top_p < 1.0:
                warpers.append(TopPLogitsWarper(params.top_p))

            def warp(ids: Any, scores: Any) -> Any:
                for w in warpers:
                    scores = w(ids, scores)
                return scores

        stopped = StopOnStrings(self.tokenizer, params.stop, 0) if params.stop else None
        spec = shared_prefix.DecodeSpec(params.max_new_tokens, self._eos_ids, pad_id, warp, stopped)
        return shared_prefix.decode(self.model, prefix, prefix_len, input_ids, mask, spec)

    def decode_generations(
        self, out: Any, start: int, rows: Sequence[Sequence[int]], pad_id: int, stop: Sequence[str]
    ) -> list[Generation]:
        """Turn ``generate`` output (new tokens from column ``start``) into :class:`Generation`s:
        cut at the first end/pad token, decode, cut at the first stop string."""
        end_ids = set(self._eos_ids) | {pad_id}
        results = []
        for b, row in enumerate(rows):
            gen = out[b, start:].tolist()
            finish = "length"
            for j, tok in enumerate(gen):
                if tok in end_ids:
                    gen, finish = gen[:j], "stop"
                    break
            text = self.tokenizer.decode(gen, skip_special_tokens=True)
            text, hit = truncate_at_stop(text, stop)
            if hit:
                finish = "stop"
            results.append(
                Generation(text=text, prompt_tokens=len(row), completion_tokens=len(gen), finish_reason=finish)
            )
        return results

    # -- scoring -------------------------------------------------------------------------------------------

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[str]) -> list[list[float]]:
        """For each prompt, the summed log-probability of each continuation after the rendered prompt."""
        seqs: list[list[int]] = []
        starts: list[int] = []
        for p in prompts:
            text = self.render(p)
            pids = prompt_ids(self.tokenizer, text)
            if not pids:
                raise BackendError("cannot score after an empty prompt")
            for c in continuations:
                seqs.append(pids + continuation_ids(self.tokenizer, text, pids, c))
                starts.append(len(pids))
        per_token = self.token_logprobs(seqs, starts)
        k = len(continuations)
        sums = [float(sum(t.logprob for t in row)) for row in per_token]
        return [sums[i * k : (i + 1) * k] for i in range(len(prompts))]

    def token_logprobs(
        self,
        sequences: Sequence[Sequence[int]],
        starts: Sequence[int],
        *,
        top_k: int = 0,
        prefix_cache: bool | None = None,
    ) -> list[list[TokenLogprob]]:
        """Log-probabilities of ``seq[start:]`` for each sequence (``start >= 1``), batched.

        With ``top_k > 0`` each entry also carries the ``top_k`` most likely tokens at that position.
        ``prefix_cache`` overrides the backend's setting (used by tests to compare both paths).
        """
        n = len(sequences)
        if len(starts) != n:
            raise ValueError("sequences and starts differ in length")
        for s, st in zip(sequences, starts, strict=True):
            if st < 1 or st > len(s):
                raise ValueError("each start must be in [1, len(sequence)]")
            self._check_budget(len(s), 0)
        results: list[list[TokenLogprob]] = [[] for _ in range(n)]
        todo = [i for i in range(n) if starts[i] < len(sequences[i])]
        if not todo:
            return results
        use_prefix = self.prefix_cache if prefix_cache is None else prefix_cache
        if use_prefix and self.fast_decode and self._grouped_logprobs(sequences, starts, todo, top_k, results):
            return results
        prefix_len = (
            self._shared_prefix_len([sequences[i] for i in todo], [starts[i] for i in todo]) if use_prefix else 0
        )
        order = sorted(todo, key=lambda i: -len(sequences[i]))
        with self._eval_mode(), torch.inference_mode():
            prefix_kv = self._prefix_kv(sequences[todo[0]][:prefix_len]) if prefix_len else None
            if prefix_kv is None:
                prefix_len = 0
            i = 0
            while i < len(order):
                batch = order[i : i + self.score_batch_size]
                # keep the logits tensor (rows x kept positions x vocab) within budget
                keep = max(len(sequences[j]) - starts[j] + 1 for j in batch)
                rows = max(1, min(len(batch), self.max_logits_elements // max(1, keep * self._vocab_size)))
                batch = batch[:rows]
                for j, entry in zip(
                    batch, self._logprob_batch(sequences, starts, batch, prefix_len, prefix_kv, top_k), strict=True
                ):
                    results[j] = entry
                i += len(batch)
        return results

    def _grouped_logprobs(
        self,
        sequences: Sequence[Sequence[int]],
        starts: Sequence[int],
        todo: Sequence[int],
        top_k: int,
        results: list[list[TokenLogprob]],
    ) -> bool:
        """Fill ``results[i]`` for ``todo`` through :mod:`prefix_scoring` (each shared token run once); False
        when this model cannot be driven that way (then nothing is filled)."""
        rows = prefix_scoring.unique_rows([sequences[i] for i in todo], [starts[i] for i in todo])
        readers: dict[int, list[int]] = {}
        for i, u in zip(todo, rows.row_of, strict=True):
            readers.setdefault(u, []).append(i)
        max_keep = max(len(inp) + 1 - st for inp, st in zip(rows.inputs, rows.starts, strict=True))
        max_rows = max(1, min(self.score_batch_size, self.max_logits_elements // max(1, max_keep * self._vocab_size)))

        def gather(members: Sequence[int], logprobs: Any, keep: int) -> None:
            for b, u in enumerate(members):
                count = len(rows.inputs[u]) + 1 - rows.starts[u]
                for i in readers[u]:
                    results[i] = self._entries(sequences[i], starts[i], logprobs[b, keep - count : keep], top_k)

        with self._eval_mode(), torch.inference_mode():
            base = self._shared_prefix_len(rows.inputs, rows.starts)
            base_kv = self._prefix_kv(rows.inputs[0][:base]) if base else None
            if base_kv is None:
                base = 0
            groups = prefix_scoring.plan_groups(rows, base, max_rows)
            pad_id = self._pad_id if self._pad_id is not None else 0
            return prefix_scoring.run_groups(
                self.model, rows, groups, base=base, base_kv=base_kv, pad_id=pad_id, max_rows=max_rows, gather=gather
            )

    def _forward(self, *, input_ids: Any, attention_mask: Any, position_ids: Any, cache: Any, keep: int) -> Any:
        kwargs: dict[str, Any] = {"use_cache": cache is not None}
        if cache is not None:
            kwargs[self._cache_kwarg] = cache
        if self._has_logits_to_keep:
            kwargs["logits_to_keep"] = keep
        return self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, **kwargs)

    # -- shared-prefix generation (SL-CAI's few-shot preamble) ----------------------------------------------

    def prefix_kv(self, prefix: Sequence[int]) -> Any:
        """The KV cache of running ``prefix`` once (per layer ``(keys, values)``), or None when this model's
        cache layout cannot be shared (then generate without a shared prefix)."""
        with self._eval_mode(), torch.inference_mode():
            return self._prefix_kv(prefix)

    def generate_with_prefix(
        self, prefix: Sequence[int], kv: Any, rows: Sequence[Sequence[int]], params: GenerationParams
    ) -> list[Generation]:
        """Generate for ``rows`` (token ids that all start with ``prefix``) reusing ``kv`` from :meth:`prefix_kv`:
        the prefix is not run again, the suffixes are left-padded after it; with ``fast_decode`` every row
        attends to the one copy of ``kv``."""
        p = len(prefix)
        suffixes = [list(r[p:]) for r in rows]
        width = max(len(s) for s in suffixes)
        b = len(rows)
        pad_id = self._pad_id if self._pad_id is not None else self._eos_ids[0]
        if self.fast_decode and width > 0:
            ids, smask = self._left_pad(suffixes, pad_id)
            with self._eval_mode(), self._rng(params.seed), torch.inference_mode():
                fast = self._fast_decode(kv, p, ids, smask, params, pad_id)
            if fast is not None:
                return self.decode_generations(fast, 0, rows, pad_id, params.stop)
        input_ids = torch.full((b, p + width), pad_id, dtype=torch.long)
        mask = torch.zeros((b, p + width), dtype=torch.long)
        input_ids[:, :p] = torch.tensor(list(prefix), dtype=torch.long)
        mask[:, :p] = 1
        for i, s in enumerate(suffixes):
            input_ids[i, p + width - len(s) :] = torch.tensor(s, dtype=torch.long)
            mask[i, p + width - len(s) :] = 1
        input_ids, mask = input_ids.to(self._device), mask.to(self._device)
        cache = prefilled_cache(self.model, kv, b, p + width + params.max_new_tokens)
        total = p + width
        criteria = StoppingCriteriaList()
        if params.stop:
            criteria.append(StopOnStrings(self.tokenizer, params.stop, total))
        with self._eval_mode(), self._rng(params.seed), torch.inference_mode():
            out = self.model.generate(
                input_ids=input_ids,
                attention_mask=mask,
                generation_config=GenerationConfig(**self.generation_settings(params, pad_id)),
                stopping_criteria=criteria,
                **{self._cache_kwarg: cache},
            )
        return self.decode_generations(out, total, rows, pad_id, params.stop)

    def _shared_prefix_len(self, seqs: Sequence[Sequence[int]], starts: Sequence[int]) -> int:
        if len(seqs) < 2:
            return 0
        limit = min(min(starts) - 1, min(len(s) for s in seqs))
        p = min(limit, *(prefix_scoring.common_prefix_len(seqs[0], s) for s in seqs[1:]))
        return p if p >= self.min_prefix_tokens else 0

    def _prefix_kv(self, prefix: Sequence[int]) -> Any:
        """Run the shared prefix once; return its KV cache, or None when the cache layout cannot be shared."""
        ids = torch.tensor([list(prefix)], dtype=torch.long, device=self._device)
        out = self._forward(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            position_ids=torch.arange(ids.shape[1], device=self._device)[None],
            cache=DynamicCache(config=self.model.config),
            keep=1,
        )
        cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
        layers = getattr(cache, "layers", None)
        if not layers or any(type(layer) is not DynamicLayer for layer in layers):
            return None  # sliding-window / hybrid / linear-attention caches: not worth the special cases
        return [(layer.keys, layer.values) for layer in layers]

    def _logprob_batch(
        self,
        sequences: Sequence[Sequence[int]],
        starts: Sequence[int],
        batch: Sequence[int],
        prefix_len: int,
        prefix_kv: Any,
        top_k: int,
    ) -> list[list[TokenLogprob]]:
        suffixes = [list(sequences[j][prefix_len:]) for j in batch]
        pad_id = self._pad_id if self._pad_id is not None else 0
        input_ids, mask = self._left_pad(suffixes, pad_id)
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0) + prefix_len
        keep = max(len(sequences[j]) - starts[j] + 1 for j in batch)
        logits = None
        if self.fast_decode:
            state = shared_prefix.PrefixState(
                prefix=prefix_kv if prefix_len else None, valid=mask.bool(), capacity=input_ids.shape[1]
            )
            logits = shared_prefix.forward(self.model, state, input_ids, position_ids, keep)
            logits = logits if state.calls else None
        if logits is None:
            logits = self._reference_logits(input_ids, mask, position_ids, prefix_len, prefix_kv, keep)
        logprobs = torch.log_softmax(logits[:, -keep:].float(), dim=-1)  # (B, keep, V); row ends are aligned right
        return self._gather_logprobs(sequences, starts, batch, logprobs, keep, top_k)

    def _reference_logits(
        self, input_ids: Any, mask: Any, position_ids: Any, prefix_len: int, prefix_kv: Any, keep: int
    ) -> Any:
        """Scoring logits through the model's own attention, the prefix K/V expanded over the batch."""
        cache = None
        if prefix_kv is not None and prefix_len:
            b = input_ids.shape[0]
            cache = DynamicCache(
                ddp_cache_data=[(k.expand(b, -1, -1, -1), v.expand(b, -1, -1, -1)) for k, v in prefix_kv],
                config=self.model.config,
            )
            mask = torch.cat([torch.ones((b, prefix_len), dtype=mask.dtype, device=mask.device), mask], dim=1)
        out = self._forward(input_ids=input_ids, attention_mask=mask, position_ids=position_ids, cache=cache, keep=keep)
        return out.logits

    def _gather_logprobs(
        self,
        sequences: Sequence[Sequence[int]],
        starts: Sequence[int],
        batch: Sequence[int],
        logprobs: Any,
        keep: int,
        top_k: int,
    ) -> list[list[TokenLogprob]]:
        results = []
        for b, j in enumerate(batch):
            count = len(sequences[j]) - starts[j]
            # the logit at absolute position t-1 predicts token t; absolute end (len-1) sits at index keep-1
            first = keep - 1 - count
            results.append(self._entries(sequences[j], starts[j], logprobs[b, first : first + count], top_k))
        return results

    @staticmethod
    def _entries(seq: Sequence[int], start: int, rows: Any, top_k: int) -> list[TokenLogprob]:
        """The entries of ``seq[start:]`` from ``rows`` (one log-softmax row per scored token, in order)."""
        targets = torch.tensor(list(seq[start:]), dtype=torch.long, device=rows.device)
        chosen = rows.gather(-1, targets[:, None])[:, 0].tolist()
        tops: list[tuple[tuple[int, float], ...]] = [()] * len(chosen)
        if top_k > 0:
            vals, idx = rows.topk(min(top_k, rows.shape[-1]), dim=-1)
            tops = [tuple(zip(ix, vs, strict=True)) for ix, vs in zip(idx.tolist(), vals.tolist(), strict=True)]
        return [TokenLogprob(int(t), float(lp), tp) for t, lp, tp in zip(seq[start:], chosen, tops, strict=True)]
