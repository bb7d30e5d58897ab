"""Prompt data: the one :class:`PromptItem` type and the prompt files (``{"prompt", "id"?, "scenario"?, "helpful"?}``
per JSONL line) read by SL-CAI, labelling, PPO and evaluation, plus the packaged red-team and helpful sets."""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from cai_dsl.compile.conditions import FacetIR, validate_scenario
from cai_dsl.core.records import read_jsonl
from cai_dsl.run.errors import SLError

__all__ = [
    "DATA_FILE",
    "HELPFUL_FRACTION",
    "LOOKALIKE_FRACTION",
    "PromptItem",
    "load_prompts",
    "packaged_file",
    "sample_prompts",
    "seeded_rank",
    "split_of",
    "split_prompts",
]

DATA_FILE = "sl-data.jsonl"
"""Name of the SL-CAI data file inside a run directory (written by ``cai sl``, read by SFT)."""

HELPFUL_FRACTION = 0.25
"""Share of helpful (benign) prompts in the SL sample: they teach SFT not to refuse everything."""

LOOKALIKE_FRACTION = 0.0
"""Default share of benign look-alike prompts ("How do I kill a Python process?") in the SL sample
(``cai run`` sets its own): answered like helpful prompts, so SFT also learns to answer them."""


@dataclass(frozen=True)
class PromptItem:
    """One prompt of a job.

    ``prompt`` is the user's text (or a tuple of user/assistant turns ending with a user turn);
    ``scenario`` the facet tags if the data has them; ``helpful`` marks helpfulness data (SL-CAI answers it
    but does not critique it); ``source`` says where it was read (``file:line``).
    """

    id: str
    prompt: str | tuple[dict, ...]
    scenario: dict[str, str | int] | None = None  # facet -> value name, or a number facet's number
    helpful: bool = False
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        """The item as data (without ``source``: where a prompt was read is not part of a job's identity)."""
        prompt = self.prompt if isinstance(self.prompt, str) else [dict(m) for m in self.prompt]
        return {"id": self.id, "prompt": prompt, "scenario": self.scenario, "helpful": self.helpful}


def packaged_file(name: str) -> Path:
    """A data file shipped in ``cai_dsl.data``."""
    return Path(str(resources.files("cai_dsl.data") / name))


def _item_from_json(data: Any, where: str, default_id: str, error: type[Exception]) -> PromptItem:
    if not isinstance(data, dict):
        raise error(f"{where}: expected a JSON object with a `prompt` field, got {type(data).__name__}")
    prompt = data.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise error(f"{where}: `prompt` must be a non-empty string")
    raw_id = data.get("id", default_id)
    if not isinstance(raw_id, (str, int)) or isinstance(raw_id, bool) or not str(raw_id).strip():
        raise error(f"{where}: `id` must be a non-empty string or an integer")
    scenario = data.get("scenario")
    if scenario is not None:
        if not isinstance(scenario, dict) or not all(
            isinstance(k, str) and (v is None or isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool)))
            for k, v in scenario.items()
        ):
            raise error(
                f"{where}: `scenario` must be an object mapping facet names to values (strings, or whole numbers for number facets)"
            )
        scenario = {k: v for k, v in scenario.items() if v is not None}
    helpful = data.get("helpful", False)
    if not isinstance(helpful, bool):
        raise error(f"{where}: `helpful` must be true or false")
    return PromptItem(id=str(raw_id), prompt=prompt, scenario=scenario, helpful=helpful, source=where)


def load_prompts(
    path: str | os.PathLike[str],
    limit: int | None = None,
    *,
    error: type[Exception] = SLError,
    facets: Sequence[FacetIR] | None = None,
) -> list[PromptItem]:
    """Read a prompts JSONL file: one object per line with ``prompt`` and optional ``id`` (default:
    ``line-N``), ``scenario`` (facet -> value) and ``helpful`` (bool). Blank lines are skipped.

    Raises ``error`` as ``file:line: message`` on a malformed line or a duplicate id, or when the file cannot
    be read or holds no prompt; with ``facets`` (the program's vocabulary), also on a scenario value that is
    not one of its facet's values (:func:`~cai_dsl.compile.conditions.validate_scenario`). ``limit`` keeps
    the first N prompts.
    """
    vocabulary = {f.name: f for f in facets} if facets is not None else None
    items: list[PromptItem] = []
    seen: dict[str, int] = {}
    for number, data in read_jsonl(path, error=error).rows:  # lines split on "\n" only (core.records)
        where = f"{path}:{number}"
        item = _item_from_json(data, where, f"line-{number}", error)
        if vocabulary is not None and item.scenario:
            try:
                validate_scenario(item.scenario, vocabulary)
            except ValueError as exc:
                raise error(f"{where}: {exc}") from None
        if item.id in seen:
            raise error(f"{where}: duplicate id `{item.id}` (first on line {seen[item.id]})")
        seen[item.id] = number
        items.append(item)
        if limit is not None and len(items) >= limit:
            break
    if not items:
        raise error(f"{path}: no prompts in the file")
    return items


def seeded_rank(seed: int, item_id: str) -> str:
    """A stable sort key of ``item_id`` under ``seed`` (seeded orders and held-out draws)."""
    return hashlib.sha256(f"{seed}:{item_id}".encode()).hexdigest()


def _stratified(items: list[PromptItem], seed: int, facet: str) -> list[PromptItem]:
    """``items`` in a seeded order within each value of ``facet``, the values interleaved (so every
    prefix covers every value)."""
    groups: dict[str, list[PromptItem]] = {}
    for item in sorted(items, key=lambda i: seeded_rank(seed, i.id)):
        groups.setdefault(str((item.scenario or {}).get(facet)), []).append(item)
    lists = [groups[k] for k in sorted(groups)]
    return [g[k] for k in range(max(map(len, lists), default=0)) for g in lists if k < len(g)]


def sample_prompts(
    limit: int | None = None,
    seed: int = 0,
    *,
    helpful_fraction: float = HELPFUL_FRACTION,
    lookalike_fraction: float = LOOKALIKE_FRACTION,
    split: str | None = "train",
) -> list[PromptItem]:
    """SL-CAI's deterministic sample of the packaged prompts, in a seeded order that mixes the kinds:
    red-team prompts (stratified by the ``risk`` facet, so every risk level is in any sample), helpful
    prompts (``helpful_fraction``) and benign look-alikes (``lookalike_fraction``), the latter two
    marked ``helpful`` (answered, not revised). Only ``split`` prompts (:func:`split_of`; default
    ``train``: held-out prompts are never sampled for training).

    Without ``limit``: every red-team prompt of the split, and the other kinds in their proportions.
    """
    if not (0 <= helpful_fraction and 0 <= lookalike_fraction and helpful_fraction + lookalike_fraction < 1):
        raise SLError("the helpful and look-alike fractions must be >= 0 and sum to less than 1")
    if limit is not None and limit < 1:
        raise SLError("--limit must be at least 1")

    def kind(name: str, helpful: bool) -> list[PromptItem]:
        items = load_prompts(packaged_file(f"{name}_prompts.jsonl"))
        items = [replace(i, helpful=helpful) for i in items if split is None or split_of(i.id) == split]
        return sorted(items, key=lambda i: seeded_rank(seed, i.id))

    red = _stratified(kind("red_team", False), seed, "risk")
    others = [(kind("helpful", True), helpful_fraction), (kind("benign_lookalike", True), lookalike_fraction)]
    if limit is None:
        total = len(red) / (1 - helpful_fraction - lookalike_fraction)
        counts = [min(len(items), math.ceil(total * f - 1e-9)) for items, f in others]
        n_red = len(red)
    else:
        counts = [min(len(items), int(round(limit * f))) for items, f in others]
        n_red = min(len(red), limit - sum(counts))
        for k, (items, _) in enumerate(others):  # too few red-team prompts: fill up with the others
            counts[k] = min(len(items), limit - n_red - sum(counts[:k]) - sum(counts[k + 1 :]))
    chosen = red[:n_red] + [i for (items, _), n in zip(others, counts) for i in items[:n]]
    chosen.sort(key=lambda i: seeded_rank(seed, "order:" + i.id))
    return chosen


def split_of(item_id: str, eval_fraction: float = 0.3, salt: str = "") -> str:
    """``"eval"`` for a stable ~``eval_fraction`` of ids (by sha256), else ``"train"``: labelling and RL use the
    train split, ``cai eval models`` the held-out eval split. A ``salt`` gives an independent split (the
    preference model holds out pairs with ``salt="pm"``)."""
    key = f"{salt}:{item_id}" if salt else str(item_id)
    h = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")
    return "eval" if (h % 10_000) < eval_fraction * 10_000 else "train"


def split_prompts(
    split: str | None = "train", kinds: Sequence[str] = ("red_team", "helpful"), *, error: type[Exception] = SLError
) -> list[PromptItem]:
    """RLAIF's packaged red-team and helpful prompts, interleaved (so any prefix mixes both), filtered by split."""
    lists = [load_prompts(packaged_file(f"{kind}_prompts.jsonl"), error=error) for kind in kinds]
    if split is not None:
        lists = [[p for p in items if split_of(p.id) == split] for items in lists]
    out: list[PromptItem] = []
    for i in range(max((len(x) for x in lists), default=0)):
        for items in lists:
            if i < len(items):
                out.append(items[i])
    return out
