"""The hand-labelled responses `cai eval detectors` measures detectors on: reading a label file (every
problem named ``file:line``), the packaged set, its deterministic dev/test split, and the specs of
every behavior a constitution declares.

A label file is JSONL, one :class:`~cai_dsl.run.policy.evaluate.LabelledRecord` per line:
``{"id", "prompt", "response", "source", "labels": {behavior: bool}, "degenerate": bool}`` (other keys
are kept out of the way: ``scenario``, ``note``...). The split puts a record in ``dev`` when the first
byte of the SHA-256 of its id is below 128, else in ``test``: detector phrases are tuned on ``dev``
only and ``test`` reports how well that tuning generalises.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from cai_dsl.core.errors import CaiError
from cai_dsl.core.records import read_jsonl
from cai_dsl.lang.resolver import Constitution
from cai_dsl.run.policy.detectors import BehaviorSpec
from cai_dsl.run.policy.evaluate import LabelledRecord

__all__ = [
    "LabelError",
    "LabelledSet",
    "SPLITS",
    "Split",
    "declared_specs",
    "load_labelled",
    "packaged_labels",
    "split_of",
]

Split = Literal["all", "dev", "test"]
SPLITS: tuple[str, ...] = ("all", "dev", "test")


class LabelError(CaiError):
    """A label file cannot be read or has a malformed record; the message names ``file:line``."""


def packaged_labels() -> Path:
    """The hand-labelled set shipped with the package (``cai_dsl/data/labelled_responses.jsonl``)."""
    return Path(str(importlib.resources.files("cai_dsl.data").joinpath("labelled_responses.jsonl")))


def split_of(record_id: str) -> Literal["dev", "test"]:
    """``dev`` when the first byte of ``sha256(record_id)`` is below 128, else ``test``."""
    return "dev" if hashlib.sha256(record_id.encode("utf-8")).digest()[0] < 128 else "test"


@dataclass(frozen=True)
class LabelledSet:
    """The records of one label file, and the warnings of reading it (a dropped half-written last line)."""

    path: Path
    records: tuple[LabelledRecord, ...]
    warnings: tuple[str, ...] = ()

    def split(self, which: Split) -> tuple[LabelledRecord, ...]:
        """The records of one split (``all``: every record)."""
        if which not in SPLITS:
            raise LabelError(f"split must be one of {', '.join(SPLITS)}, not {which!r}")
        return self.records if which == "all" else tuple(r for r in self.records if split_of(r.id) == which)

    @property
    def behaviors(self) -> tuple[str, ...]:
        """Every behavior labelled in some record, sorted."""
        return tuple(sorted({b for r in self.records for b in r.labels}))


def _problem(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"`{where}`: {first['msg'].lower()}" if where else first["msg"].lower()


def load_labelled(path: str | os.PathLike[str] | None = None) -> LabelledSet:
    """The records of a label file (default: :func:`packaged_labels`); a malformed record, a non-boolean
    label or a repeated id is a :class:`LabelError` naming ``file:line``."""
    p = Path(path) if path is not None else packaged_labels()
    content = read_jsonl(p, error=LabelError)
    records: list[LabelledRecord] = []
    seen: dict[str, int] = {}
    for line, obj in content.rows:
        where = f"{p}:{line}"
        labels = obj.get("labels", {})
        if not isinstance(labels, dict) or not all(isinstance(v, bool) for v in labels.values()):
            raise LabelError(f"{where}: `labels` must map behavior names to true or false")
        try:
            record = LabelledRecord.model_validate(obj, strict=True)
        except ValidationError as exc:
            raise LabelError(f"{where}: {_problem(exc)}") from None
        if record.id in seen:
            raise LabelError(f"{where}: id {record.id!r} repeats line {seen[record.id]}")
        seen[record.id] = line
        records.append(record)
    if not records:
        raise LabelError(f"{p}: no labelled records")
    return LabelledSet(p, tuple(records), content.warnings)


def declared_specs(constitution: Constitution, names: Iterable[str] | None = None) -> tuple[BehaviorSpec, ...]:
    """The specs of the behaviors a resolved constitution declares (its imports included), in declaration
    order, optionally only those in ``names``; each with the other members of its ``exclusive`` sets."""
    wanted = set(names) if names is not None else None
    exclusive: dict[str, set[str]] = {}
    for ex in constitution.exclusives:
        members = {m.name for m in ex.members}
        for name in members:
            exclusive.setdefault(name, set()).update(members - {name})
    specs = []
    for name, behavior in constitution.behaviors.items():
        if wanted is not None and name not in wanted:
            continue
        observe = behavior.observe
        texts: dict[str, Sequence[str]] = {
            f: tuple(t.value for t in getattr(observe, f)) if observe else ()
            for f in ("markers", "patterns", "judges", "openings")
        }
        specs.append(
            BehaviorSpec(
                name=name,
                description=behavior.description.value if behavior.description else None,
                exclusive_with=tuple(sorted(exclusive.get(name, ()))),
                **texts,
            )
        )
    return tuple(specs)
