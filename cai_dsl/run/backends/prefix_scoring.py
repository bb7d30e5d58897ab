"""Scoring many sequences that share prefixes, each shared token run once (judge questions, A/B labels).

A judge asks several yes/no questions about one response, each in two phrasings, each scored for " Yes"
and " No": 4-12 sequences that repeat the same long body (instructions, request, response) and differ in
their last 20-40 tokens. Scoring them as independent rows runs that body 4-12 times. Here:

1. **Inputs, not sequences.** The logit that predicts token ``t`` comes from position ``t - 1``, so a
   sequence's last token is never needed as input: a row is ``seq[:-1]``. Sequences that differ only in
   their single scored token (" Yes" / " No" after the same prompt) become one row, read twice.
2. **Two levels of shared prefix.** The prefix common to every row (the chat template's head) is run once
   for one row and attended to by all (:class:`shared_prefix.PrefixState`); rows are then sorted and
   partitioned into contiguous groups (:func:`plan_groups`, an exact dynamic programme over a cost in
   tokens) whose own common prefix (the judge body) is run once per group; each member runs only its own
   rest, attending to the global prefix, its group's K/V and itself.

The maths is causal softmax attention over the same tokens at the same positions, so the log-probabilities
equal the plain path's up to float rounding (``tests/run/backends/test_prefix_scoring.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from cai_dsl.run.backends import shared_prefix

__all__ = ["Group", "Rows", "plan_groups", "run_groups", "unique_rows"]


@dataclass(frozen=True)
class Rows:
    """The distinct inputs to compute: ``inputs[u]`` (a sequence without its last token), ``starts[u]`` (the
    first scored position) and, per original sequence, the row it reads (``row_of``)."""

    inputs: tuple[tuple[int, ...], ...]
    starts: tuple[int, ...]
    row_of: tuple[int, ...]


def unique_rows(sequences: Sequence[Sequence[int]], starts: Sequence[int]) -> Rows:
    """One row per distinct ``(seq[:-1], start)``; every sequence has ``1 <= start < len(seq)``."""
    index: dict[tuple[tuple[int, ...], int], int] = {}
    row_of = []
    for seq, st in zip(sequences, starts, strict=True):
        key = (tuple(seq[:-1]), int(st))
        row_of.append(index.setdefault(key, len(index)))
    keys = list(index)
    return Rows(tuple(k[0] for k in keys), tuple(k[1] for k in keys), tuple(row_of))


@dataclass(frozen=True)
class Group:
    """Rows (indices into :class:`Rows`) that share their first ``prefix`` tokens; ``prefix`` is at least the
    global prefix and never reaches a member's first scored position's input (``start - 1``)."""

    members: tuple[int, ...]
    prefix: int


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    """The number of leading tokens ``a`` and ``b`` share."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def plan_groups(rows: Rows, base: int, max_members: int, overhead: int = 8) -> list[Group]:
    """Partition the rows, sorted by their tokens, into contiguous groups minimising the tokens computed:
    per group ``overhead + (prefix - base) + sum(len(row) - prefix)``, at most ``max_members`` rows each.
    A group of one row runs no group stage (its prefix is ``base``)."""
    n = len(rows.inputs)
    if n == 0:
        return []
    order = sorted(range(n), key=lambda u: rows.inputs[u])
    lengths = [len(rows.inputs[u]) for u in order]
    limits = [rows.starts[u] - 1 for u in order]  # the input at start-1 must be computed by the row itself
    adjacent = [common_prefix_len(rows.inputs[order[k]], rows.inputs[order[k + 1]]) for k in range(n - 1)]
    best = [0] * (n + 1)
    cut = [0] * (n + 1)
    for end in range(1, n + 1):  # groups order[j:end]
        shared, total, choice, value = 1 << 60, 0, end - 1, None
        for j in range(end - 1, max(0, end - max_members) - 1, -1):
            total += lengths[j]
            shared = min(shared, limits[j], adjacent[j] if j < end - 1 else 1 << 60)
            size = end - j
            prefix = max(base, shared) if size > 1 else base
            cost = best[j] + overhead + (prefix - base) + total - size * prefix
            if value is None or cost < value:
                value, choice = cost, j
        best[end], cut[end] = value, choice
    groups = []
    end = n
    while end > 0:
        j = cut[end]
        members = tuple(order[j:end])
        shared = min(min(limits[j:end]), min(adjacent[j : end - 1], default=1 << 60))
        prefix = max(base, shared) if len(members) > 1 else base
        groups.append(Group(members, prefix))
        end = j
    groups.reverse()
    return groups


Gather = Callable[[Sequence[int], Any, int], None]
"""``gather(row_indices, logprobs (B, keep, V), keep)``: consume one batch's log-probabilities (rows right-aligned:
the last ``count`` of the ``keep`` positions of a row predict its ``count`` scored tokens)."""


def left_pad(rows: Sequence[Sequence[int]], pad_id: int, device: Any, mask_dtype: Any = torch.bool) -> tuple[Any, Any]:
    """``(input_ids, attention_mask)`` of ``rows`` right-aligned in one batch (padded on the left with ``pad_id``)."""
    width = max((len(r) for r in rows), default=0)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=mask_dtype)
    for b, r in enumerate(rows):
        if r:
            ids[b, width - len(r) :] = torch.tensor(list(r), dtype=torch.long)
            mask[b, width - len(r) :] = 1
    return ids.to(device), mask.to(device)


def _positions(mask: Any, offset: Any) -> Any:
    return (mask.long().cumsum(-1) - 1).clamp(min=0) + offset


def _batches(groups: Sequence[Group], max_rows: int) -> list[list[Group]]:
    out: list[list[Group]] = []
    size = 0
    for g in groups:
        if out and size + len(g.members) <= max_rows:
            out[-1].append(g)
            size += len(g.members)
        else:
            out.append([g])
            size = len(g.members)
    return out


def run_groups(
    model: Any,
    rows: Rows,
    groups: Sequence[Group],
    *,
    base: int,
    base_kv: Any,
    pad_id: int,
    max_rows: int,
    gather: Gather,
) -> bool:
    """Compute every row's scored positions, group by group, and hand each batch to ``gather``. Returns False
    (having gathered nothing) when the model does not route attention through :mod:`shared_prefix`."""
    device = next(model.parameters()).device
    for batch in _batches(groups, max_rows):
        group_part = [rows.inputs[g.members[0]][base : g.prefix] for g in batch]
        gkeys = gvalues = gmask = None
        if any(group_part):
            ids, gmask = left_pad(group_part, pad_id, device)
            state = shared_prefix.PrefixState(prefix=base_kv if base else None, valid=gmask, capacity=ids.shape[1])
            shared_prefix.forward(model, state, ids, _positions(gmask, base), 1)
            if state.calls == 0:
                return False
            gkeys, gvalues = state.keys, state.values
        members = [u for g in batch for u in g.members]
        owner = torch.tensor([k for k, g in enumerate(batch) for _ in g.members], dtype=torch.long, device=device)
        offsets = torch.tensor([g.prefix for g in batch for _ in g.members], dtype=torch.long, device=device)
        rest = [rows.inputs[u][g.prefix :] for g in batch for u in g.members]
        ids, rmask = left_pad(rest, pad_id, device)
        width = 0 if gmask is None else gmask.shape[1]
        valid = rmask if gmask is None else torch.cat([gmask[owner], rmask], dim=1)
        state = shared_prefix.PrefixState(prefix=base_kv if base else None, valid=valid, capacity=valid.shape[1])
        if gkeys is not None:
            for layer in gkeys:
                state.keys[layer] = _extend(gkeys[layer][owner], ids.shape[1])
                state.values[layer] = _extend(gvalues[layer][owner], ids.shape[1])
            state.length = width
        keep = max(len(rows.inputs[u]) + 1 - rows.starts[u] for u in members)
        logits = shared_prefix.forward(model, state, ids, _positions(rmask, offsets[:, None]), keep)
        if state.calls == 0:
            return False
        gather(members, torch.log_softmax(logits[:, -keep:].float(), dim=-1), keep)
    return True


def _extend(kv: Any, extra: int) -> Any:
    """``kv (B, H, W, d)`` followed by ``extra`` empty columns (the rows' own K/V are written there)."""
    b, h, _, d = kv.shape
    return torch.cat([kv, kv.new_zeros((b, h, extra, d))], dim=2)
