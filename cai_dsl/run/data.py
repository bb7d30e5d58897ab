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

from cai_dsl.core.records import read_jsonl
from cai_dsl.run.errors import SLError

__all__ = [
    "DATA_FILE",
    "HELPFUL_FRACTION",
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


@dataclass(frozen=True)
class PromptItem:
    """One prompt of a job.

    ``prompt`` is the user's text (or a tuple of user/assistant turns ending with a user turn);
    ``scenario`` the facet tags if the data has them; ``helpful`` marks helpfulness data (SL-CAI answers it
    but does not critique it); ``source`` says where it was read (``file:line``).
    """

    id: str
    prompt: str | tuple[dict, ...]
    scenario: dict[str, str] | None = None
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
            isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in scenario.items()
        ):
            raise error(f"{where}: `scenario` must be an object mapping facet names to values (strings)")
        scenario = {k: v for k, v in scenario.items() if v is not None}
    helpful = data.get("helpful", False)
    if not isinstance(helpful, bool):
        raise error(f"{where}: `helpful` must be true or false")
    return PromptItem(id=str(raw_id), prompt=prompt, scenario=scenario, helpful=helpful, source=where)


def load_prompts(
    path: str | os.PathLike[str], limit: int | None = None, *, error: type[Exception] = SLError
) -> list[PromptItem]:
    """Read a prompts JSONL file: one object per line with ``prompt`` and optional ``id`` (default:
    ``line-N``), ``scenario`` (facet -> value) and ``helpful`` (bool). Blank lines are skipped.

    Raises ``error`` as ``file:line: message`` on a malformed line or a duplicate id, or when the file cannot
    be read or holds no prompt. ``limit`` keeps the first N prompts.
    """
    items: list[PromptItem] = []
    seen: dict[str, int] = {}
    for number, data in read_jsonl(path, error=error).rows:  # lines split on "\n" only (core.records)
        where = f"{path}:{number}"
        item = _item_from_json(data, where, f"line-{number}", error)
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


def sample_prompts(limit: int | None = None, seed: int = 0) -> list[PromptItem]:
    """SL-CAI's deterministic sample of the packaged prompts: red-team prompts plus about a quarter helpful
    ones (marked ``helpful``), in a seeded order that mixes the two.

    Without ``limit``: every red-team prompt and a third as many helpful ones.
    """
    red = load_prompts(packaged_file("red_team_prompts.jsonl"))
    helpful = [replace(i, helpful=True) for i in load_prompts(packaged_file("helpful_prompts.jsonl"))]
    red.sort(key=lambda i: seeded_rank(seed, i.id))
    helpful.sort(key=lambda i: seeded_rank(seed, i.id))
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
    chosen.sort(key=lambda i: seeded_rank(seed, "order:" + i.id))
    return chosen


def split_of(item_id: str, eval_fraction: float = 0.2, salt: str = "") -> str:
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
