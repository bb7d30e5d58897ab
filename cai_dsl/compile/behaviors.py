"""The ``behaviors`` section of a program: the observable behaviors its principles use."""

from __future__ import annotations

from typing import Iterable

from cai_dsl.compile.sources import Locator
from cai_dsl.lang import ast
from cai_dsl.lang.resolver import Constitution

__all__ = ["behaviors_section"]

_FIELDS = ("markers", "patterns", "judges", "openings")


def behaviors_section(
    constitution: Constitution, principles: Iterable[ast.Principle], locator: Locator
) -> tuple[list[dict], dict[str, list[str]]]:
    """The :class:`~cai_dsl.compile.ir.BehaviorIR` entries of the behaviors ``principles``
    require, forbid or prefer, sorted by name, and their source-map entries (JSON pointer ->
    locations: ``/behaviors/<i>/name`` the declaration, then one per string)."""
    used = sorted({b.name for p in principles for e in p.effects for b in e.behaviors} & constitution.behaviors.keys())
    exclusive: dict[str, set[str]] = {}
    for ex in constitution.exclusives:
        members = {m.name for m in ex.members}
        for name in members:
            exclusive.setdefault(name, set()).update(members - {name})
    entries: list[dict] = []
    smap: dict[str, list[str]] = {}

    def note(pointer: str, span: ast.Span | None) -> None:
        where = locator.loc(span)
        smap[pointer] = [where] if where is not None else []

    for i, name in enumerate(used):
        behavior = constitution.behaviors[name]
        observe = behavior.observe or ast.Observe()
        base = f"/behaviors/{i}"
        entry: dict = {"name": name, "description": behavior.description.value if behavior.description else None}
        note(base + "/name", behavior.span)
        if behavior.description is not None:
            note(base + "/description", behavior.description.span)
        for field in _FIELDS:
            texts = getattr(observe, field)
            entry[field] = [t.value for t in texts]
            for j, text in enumerate(texts):
                note(f"{base}/{field}/{j}", text.span)
        entry["exclusive_with"] = sorted(exclusive.get(name, ()))
        entries.append(entry)
    return entries, smap
