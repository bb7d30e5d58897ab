"""Hover text (Markdown) for a name: what it is, its text, effects, where it is active,
what it outranks, and where it is declared."""

from __future__ import annotations

import os

from cai_dsl.lang import ast
from cai_dsl.lang.printer import format_expr
from cai_dsl.lang.resolver import Constitution
from cai_dsl.lsp.index import Key, SymbolIndex


def _where(span: ast.Span, base: str) -> str:
    return f"{os.path.relpath(span.file, os.path.dirname(base))}:{span.line}"


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _names(items) -> str:
    return ", ".join(f"`{i}`" for i in items) or "none"


def _principle(c: Constitution, pid: str) -> list[str]:
    p = c.principles.get(pid)
    if p is None:
        return [f"undefined principle `{pid}`"]
    out = [f"**principle** `{pid}` ({_where(p.id.span, c.root)})"]
    for name in ("critique", "revise", "compare"):
        text = getattr(p, name)
        if text is not None:
            out.append(f"- {name}: {text.value}")
    if p.when is not None:
        out.append(f"- when `{format_expr(p.when)}`")
    for effect in p.effects:
        out.append(f"- {effect.effect} {_names(b.name for b in effect.behaviors)}")
    if p.weight is not None:
        out.append(f"- weight {p.weight.literal}")
    if p.tags is not None:
        out.append(f"- tags {', '.join('#' + t for t in p.tag_names)}")
    if p.final is not None:
        out.append("- final: no deployment may exclude, override or outrank it")
    elif p.authority is not None:
        out.append(f"- changeable from authority level `{p.authority.name}`")
    active = [name for name, d in c.deployments.items() if pid in d.principle_ids]
    out.append(f"- in deployments: {_names(active)}")
    for name in active:
        edges = c.deployments[name].priorities
        below = sorted({e.lower for e in edges if e.higher == pid})
        above = sorted({e.higher for e in edges if e.lower == pid})
        out.append(f"- authority in `{name}`: outranks {_names(below)}; outranked by {_names(above)}")
    rules = [f"`{r.left.name}` vs `{r.right.name}`" for r in c.conflicts if pid in (r.left.name, r.right.name)]
    if rules:
        out.append(f"- conflict rules: {', '.join(rules)}")
    return out


def _behavior(c: Constitution, name: str) -> list[str]:
    b = c.behaviors.get(name)
    if b is None:
        return [f"undefined behavior `{name}`"]
    out = [f"**behavior** `{name}` ({_where(b.name.span, c.root)})"]
    if b.description is not None:
        out.append(b.description.value)
    if b.observe is not None:
        for field in ("markers", "patterns", "judges", "openings"):
            texts = [_short(t.value) for t in getattr(b.observe, field)]
            if texts:
                out.append(f"- {field[:-1]}: {_names(texts)}")
    for effect, done in (("require", "required"), ("forbid", "forbidden"), ("prefer", "preferred")):
        by = [pid for pid, p in c.principles.items() if name in p.effect_behaviors(effect)]
        if by:
            out.append(f"- {done} by {_names(by)}")
    groups = [{m.name for m in e.members} for e in c.exclusives]
    exclusive = sorted(set().union(*(g for g in groups if name in g)) - {name})
    if exclusive:
        out.append(f"- exclusive with {_names(exclusive)}")
    return out


def _facet(c: Constitution, name: str, value: str | None = None) -> list[str]:
    f = c.facets.get(name)
    if f is None:
        return [f"undefined facet `{name}`"]
    sep = " < " if f.ordered else " | "
    domain = sep.join(v.name for v in f.values)
    head = f"**value** `{value}` of facet `{name}`" if value is not None else f"**facet** `{name}`"
    kind = "ordered, low to high" if f.ordered else "unordered"
    if f.bounds is not None:
        domain, kind = f"{f.bounds.low.value} .. {f.bounds.high.value}", "whole numbers"
    return [f"{head} ({_where(f.name.span, c.root)})", f"- values ({kind}): `{domain}`"]


def _deployment(c: Constitution, name: str) -> list[str]:
    d = c.deployments.get(name)
    decl = c.deployment_decls.get(name)
    if decl is None:
        return [f"undefined deployment `{name}`"]
    out = [f"**deployment** `{name}` ({_where(decl.name.span, c.root)})"]
    if d is None:
        return out
    if len(d.chain) > 1:
        out.append(f"- extends {' -> '.join(d.chain[1:])}")
    if d.authority is not None:
        out.append(f"- authority level `{d.authority}`")
    out.append(f"- principles ({len(d.principles)}): {_names(d.principle_ids)}")
    if d.locked:
        out.append(f"- locked for the deployments extending it: {_names(d.locked)}")
    for a in d.assumptions:
        out.append(f"- assume `{format_expr(a)}`")
    settings = d.settings.model_dump(exclude_unset=True)
    if settings:
        out.append("- settings: " + ", ".join(f"{k} = {v}" for k, v in settings.items()))
    return out


def _authority(c: Constitution, level: str, declared: list[ast.Span]) -> list[str]:
    if level not in c.authority or not declared:
        return [f"undefined authority level `{level}`"]
    principles = [pid for pid, p in c.principles.items() if p.authority is not None and p.authority.name == level]
    deployments = [name for name, d in c.deployments.items() if d.authority == level]
    return [
        f"**authority level** `{level}` ({_where(declared[0], c.root)})",
        f"- levels, highest first: `{' > '.join(c.authority)}`",
        f"- principles changeable from it: {_names(principles)}",
        f"- deployments at it: {_names(deployments)}",
    ]


def hover_text(index: SymbolIndex, key: Key) -> str | None:
    """Markdown describing ``key``, or None for names hover says nothing about."""
    c = index.constitution
    kind = key[0]
    if kind == "principle":
        lines = _principle(c, key[1])
    elif kind == "behavior":
        lines = _behavior(c, key[1])
    elif kind == "facet":
        lines = _facet(c, key[1])
    elif kind == "value":
        lines = _facet(c, key[1], key[2])
    elif kind == "deployment":
        lines = _deployment(c, key[1])
    elif kind == "deployments":
        matched = [k[1] for k in index.expand(key)]
        lines = [f"**deployment glob** `{key[1]}`", f"- matches {len(matched)} deployment(s): {_names(matched)}"]
    elif kind == "authority":
        lines = _authority(c, key[1], index.definitions(key))
    elif kind in ("group", "glob", "tag"):
        label = {"group": f"**group** `{key[1]}`", "glob": f"**glob** `{key[1]}`", "tag": f"**tag** `#{key[1]}`"}
        selected = [k[1] for k in index.expand(key)]
        lines = [label[kind], f"- selects {len(selected)} principle(s): {_names(selected)}"]
    elif kind == "file":
        file = c.files.get(key[1])
        title = file.header.name.value if file is not None and file.header is not None else None
        lines = [f"**import** `{key[1]}`" + (f": {title}" if title else "")]
        if file is None:
            lines.append("- not loaded (missing or has errors)")
    else:
        return None
    return "\n\n".join([lines[0], "\n".join(lines[1:])]) if len(lines) > 1 else lines[0]
