"""Decoding at the memory-bandwidth limit: shared-prefix (Hydragen-style) attention and a lean decode loop.

Every row of a batch attends to one copy of the shared prefix's K/V (the few-shot preamble, computed once
for batch 1) and to its own suffix K/V kept in buffers preallocated for the whole generation, written in
place. Attention is computed in two parts merged by their log-sum-exp, which is exactly softmax attention
over the concatenation (up to float rounding):

* the prefix part folds the batch into the query dimension, ``(kv_heads, batch*group*q, d) @ (kv_heads, d,
  P)``, so the preamble is read once per step instead of once per row;
* the suffix part folds the grouped-query heads into the query dimension, so K/V are never repeated per
  head (the ``repeat_kv`` copy transformers makes when a padding mask is present).

The attention function is registered with transformers under :data:`ATTENTION_NAME` (a new name; nothing
existing changes) and delegates to plain SDPA when called without a :class:`PrefixState`; the model's
config points at it only inside :func:`shared_prefix_attention`. Models whose attention layers do not
pass keyword arguments through to the attention function are detected (:attr:`PrefixState.calls` stays
0) and the caller falls back to ``model.generate``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["ATTENTION_NAME", "PrefixState", "decode", "shared_prefix_attention"]

ATTENTION_NAME = "cai_shared_prefix"
STATE_KWARG = "cai_prefix_state"
_SCORES_BUDGET = 1 << 24  # attention score elements computed at once (prefill is chunked over queries)


@dataclass
class PrefixState:
    """What the attention layers share during one batch: the prefix K/V (one row) and the rows' suffix buffers.

    ``prefix[layer]`` is ``(keys, values)`` of shape ``(1, kv_heads, P, d)`` or None; ``valid[b, j]`` says
    whether suffix column ``j`` of row ``b`` is a real token (False for left padding); ``length`` is the number
    of suffix columns written so far. Buffers are allocated on first use, ``capacity`` columns wide.
    """

    prefix: Sequence[tuple[Any, Any]] | None
    valid: Any
    capacity: int
    length: int = 0
    calls: int = 0
    keys: dict[int, Any] = field(default_factory=dict)
    values: dict[int, Any] = field(default_factory=dict)
    _bias: Any = None
    _bias_key: tuple[int, int, Any] | None = None

    def bias(self, start: int, end: int, dtype: Any) -> Any:
        """The additive mask ``(B, end - start, end)`` of query columns ``start:end`` over key columns ``:end``:
        0 where the key is a real token at or before the query, -inf elsewhere; each column sees itself
        (padding queries then see one key, so nothing is NaN, and no real token ever sees a padding key).
        Built once per forward pass (all layers share it)."""
        if self._bias_key != (start, end, dtype):
            device = self.valid.device
            rows = torch.arange(start, end, device=device)[:, None]
            cols = torch.arange(end, device=device)[None, :]
            seen = (self.valid[:, None, :end] & (cols <= rows)[None]) | (cols == rows)[None]
            self._bias = torch.zeros(seen.shape, dtype=dtype, device=device).masked_fill(~seen, float("-inf"))
            self._bias_key = (start, end, dtype)
        return self._bias


def _stats_attention(q: Any, k: Any, v: Any, bias: Any | None, scale: float) -> tuple[Any, Any]:
    """Softmax attention of ``q (B, H, n, d)`` over ``k, v (B, H, m, d)`` with an additive ``bias`` (0 or -inf,
    broadcast to the scores; every row sees at least one key): (output, log-sum-exp ``(B, H, n, 1)``)."""
    if q.device.type == "cpu":
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, attn_mask=bias, scale=scale)
        return out, lse.unsqueeze(-1)
    scores = torch.matmul(q, k.transpose(-1, -2)).float() * scale
    if bias is not None:
        scores = scores + bias
    return torch.matmul(torch.softmax(scores, dim=-1).to(v.dtype), v), torch.logsumexp(scores, dim=-1, keepdim=True)


def _attend(state: PrefixState, layer: int, query: Any, scale: float) -> Any:
    """Attention of ``query (B, H, q, d)`` (the newest ``q`` suffix columns) over prefix + suffix; ``(B, q, H, d)``."""
    b, h, q, d = query.shape
    keys, values = state.keys[layer], state.values[layer]
    kvh = keys.shape[1]
    group = h // kvh
    end = state.length
    start = end - q
    prefix = state.prefix[layer] if state.prefix else None
    width = end + (prefix[0].shape[-2] if prefix is not None else 0)
    chunk = q if query.device.type == "cpu" else max(1, _SCORES_BUDGET // max(1, b * h * width))
    bias = state.bias(start, end, query.dtype)
    outs = []
    for c0 in range(0, q, chunk):
        c1 = min(q, c0 + chunk)
        n = c1 - c0
        # grouped heads folded into the query rows: (B, kv_heads, group*n, d) against (B, kv_heads, end, d)
        qc = query[:, :, c0:c1].reshape(b, kvh, group * n, d)
        mask = bias[:, None, c0:c1].expand(b, group, n, end).reshape(b, 1, group * n, end)
        out, lse = _stats_attention(qc, keys[:, :, :end], values[:, :, :end], mask, scale)
        if prefix is not None:
            # the batch folded into the query rows: one read of the prefix for all rows
            pk, pv = prefix
            folded = qc.transpose(0, 1).reshape(1, kvh, b * group * n, d)
            p_out, p_lse = _stats_attention(folded, pk, pv, None, scale)
            p_out = p_out.reshape(kvh, b, group * n, d).transpose(0, 1)
            p_lse = p_lse.reshape(kvh, b, group * n, 1).transpose(0, 1)
            out = out + (p_out - out) * torch.sigmoid(p_lse - lse)
        outs.append(out.reshape(b, kvh, group, n, d))
    out = torch.cat(outs, dim=3) if len(outs) > 1 else outs[0]
    return out.reshape(b, h, q, d).transpose(1, 2).to(query.dtype)


def _attention(
    module: Any, query: Any, key: Any, value: Any, attention_mask: Any, dropout: float = 0.0,
    scaling: float | None = None, **kwargs: Any,
) -> tuple[Any, None]:
    """The registered attention function: shared-prefix attention when a :class:`PrefixState` is passed."""
    state = kwargs.pop(STATE_KWARG, None)
    if state is None or getattr(module, "layer_idx", None) is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    layer = int(module.layer_idx)
    q = key.shape[-2]
    if layer not in state.keys:
        shape = (key.shape[0], key.shape[1], state.capacity, key.shape[-1])
        state.keys[layer] = key.new_zeros(shape)
        state.values[layer] = value.new_zeros(shape)
    if layer == 0:  # the first layer of a forward pass advances the shared column count
        state.length += q
        state.calls += 1
    start = state.length - q
    state.keys[layer][:, :, start : start + q] = key
    state.values[layer][:, :, start : start + q] = value
    scale = scaling if scaling is not None else key.shape[-1] ** -0.5
    return _attend(state, layer, query, float(scale)), None


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    if ATTENTION_NAME not in AttentionInterface._global_mapping:
        AttentionInterface.register(ATTENTION_NAME, _attention)
        AttentionMaskInterface.register(ATTENTION_NAME, AttentionMaskInterface._global_mapping["sdpa"])


@contextlib.contextmanager
def shared_prefix_attention(model: Any) -> Iterator[None]:
    """Point ``model``'s attention at the shared-prefix function for the duration; restore after."""
    _register()
    config = model.config
    before = config._attn_implementation
    config._attn_implementation = ATTENTION_NAME
    try:
        yield
    finally:
        config._attn_implementation = before


def forward(model: Any, state: PrefixState, input_ids: Any, position_ids: Any, keep: int) -> Any:
    """One forward pass of the newest suffix columns ``input_ids (B, q)``; the logits of the last ``keep``."""
    with shared_prefix_attention(model):
        out = model(
            input_ids=input_ids, position_ids=position_ids, use_cache=False, logits_to_keep=keep,
            **{STATE_KWARG: state},
        )
    return out.logits


@dataclass(frozen=True)
class DecodeSpec:
    """How to pick and stop: ``warp`` maps float32 logits to scores (None = greedy), ``stopped`` says which rows
    hit a stop string given the generated ids so far."""

    max_new_tokens: int
    eos_ids: tuple[int, ...]
    pad_id: int
    warp: Callable[[Any, Any], Any] | None = None
    stopped: Callable[[Any], Any] | None = None


def decode(
    model: Any, prefix: Sequence[tuple[Any, Any]] | None, prefix_len: int, input_ids: Any, mask: Any,
    spec: DecodeSpec,
) -> Any | None:
    """Generate after left-padded suffixes ``input_ids (B, W)`` (``mask`` 1 = token) that follow a shared prefix
    of ``prefix_len`` tokens with K/V ``prefix`` (or none); returns the new tokens ``(B, n)`` (finished rows
    padded with ``pad_id``), or None when the model does not route attention through this module.

    Same choices as ``model.generate`` (greedy argmax, or the warped scores sampled with ``torch.multinomial``),
    same positions (the prefix, then each row's real tokens counted from it).
    """
    b, width = input_ids.shape
    device = input_ids.device
    state = PrefixState(prefix=prefix, valid=torch.zeros((b, width + spec.max_new_tokens), dtype=torch.bool,
                                                         device=device), capacity=width + spec.max_new_tokens)
    state.valid[:, :width] = mask.bool()
    lengths = mask.long().sum(-1)
    positions = (mask.long().cumsum(-1) - 1).clamp(min=0) + prefix_len
    logits = forward(model, state, input_ids, positions, 1)
    if state.calls == 0:
        return None
    eos = torch.tensor(list(spec.eos_ids) or [-1], device=device)
    alive = torch.ones(b, dtype=torch.bool, device=device)
    out = torch.full((b, spec.max_new_tokens), spec.pad_id, dtype=torch.long, device=device)
    for t in range(spec.max_new_tokens):
        scores = logits[:, -1, :].to(dtype=torch.float32)
        if spec.warp is None:
            nxt = scores.argmax(dim=-1)
        else:
            probs = torch.softmax(spec.warp(out[:, :t], scores), dim=-1)
            nxt = torch.multinomial(probs, num_samples=1).squeeze(1)
        nxt = torch.where(alive, nxt, torch.full_like(nxt, spec.pad_id))
        out[:, t] = nxt
        alive &= ~torch.isin(nxt, eos)
        if spec.stopped is not None:
            alive &= ~spec.stopped(out[:, : t + 1])
        if not bool(alive.any()) or t + 1 == spec.max_new_tokens:
            return out[:, : t + 1]
        state.valid[:, width + t] = True
        pos = (prefix_len + lengths + t)[:, None]
        logits = forward(model, state, nxt[:, None], pos, 1)
    return out
