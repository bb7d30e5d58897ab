"""Where every name of a resolved constitution is defined and where it is used.

One walk over the AST of every loaded file records an :class:`Occurrence` per name:
facets and their values, behaviors, principles, groups, tags, authority levels, the root
file's deployments, selectors (a ``harm.*`` glob and a ``#tag`` stand for the principles they
select; a test's ``in *`` for the deployments it matches) and imports (a ``file`` key). Hover, go to definition, find references,
document symbols and completion all read this index; it never re-checks anything.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field

from cai_dsl.core.source import Span
from cai_dsl.lang import ast
from cai_dsl.lang.resolved import matching_deployments
from cai_dsl.lang.resolver import Constitution

Key = tuple[str, ...]  # ("principle", id), ("value", facet, value), ("glob", text), ("file", path), ...
SELECTING = ("glob", "tag", "deployments")  # keys that stand for the names they select


@dataclass(frozen=True)
class Occurrence:
    key: Key
    span: Span
    definition: bool = False


def _contains(span: Span, line: int, column: int) -> bool:
    if span.line <= 0 or not (span.line <= line <= span.end_line):
        return False
    if line == span.line and column < span.column:
        return False
    return not (line == span.end_line and column > span.end_column)


def _size(span: Span) -> tuple[int, int]:
    return (span.end_line - span.line, span.end_column - span.column)


def import_target(importer: str, imp: ast.Import) -> str:
    """The normalised path an ``import`` in ``importer`` names (as the resolver computes it)."""
    return os.path.normpath(os.path.join(os.path.dirname(importer), imp.path.value))


@dataclass
class SymbolIndex:
    """Occurrences of every name, with the selector expansions needed to follow globs and tags."""

    constitution: Constitution
    occurrences: list[Occurrence] = field(default_factory=list)

    def at(self, file: str, line: int, column: int) -> Occurrence | None:
        """The innermost occurrence under a 1-based position (just after a name counts too)."""
        hits = [o for o in self.occurrences if o.span.file == file and _contains(o.span, line, column)]
        return min(hits, key=lambda o: _size(o.span)) if hits else None

    def expand(self, key: Key) -> list[Key]:
        """The principle keys a glob, tag or group selects, the deployment keys a test's
        ``in`` glob matches; any other key stands for itself."""
        principles = self.constitution.principles
        if key[0] == "deployments":
            return [("deployment", d) for d in matching_deployments(key[1], self.constitution.deployment_decls)]
        if key[0] == "glob":
            return [("principle", p) for p in principles if fnmatch.fnmatchcase(p, key[1])]
        if key[0] == "tag":
            return [("principle", pid) for pid, p in principles.items() if key[1] in p.tag_names]
        if key[0] == "group":
            return self._group_members(key[1], set())
        return [key]

    def _group_members(self, name: str, seen: set[str]) -> list[Key]:
        group = self.constitution.groups.get(name)
        if group is None or name in seen:
            return []
        seen.add(name)
        out: list[Key] = []
        for sel in group.members:
            key = selector_key(self.constitution, sel)
            members = self._group_members(key[1], seen) if key[0] == "group" else self.expand(key)
            out.extend(k for k in members if k not in out)
        return out

    def definitions(self, key: Key) -> list[Span]:
        """Where a name is declared; a glob or tag goes to every principle it selects, a
        test's ``in`` glob to every deployment it matches."""
        if key[0] == "file":
            return [Span(file=key[1], line=1, column=1, end_line=1, end_column=1)]
        keys = self.expand(key) if key[0] in SELECTING else [key]
        spans = [o.span for o in self.occurrences if o.definition and o.key in keys]
        if key[0] == "tag" and not spans:
            spans = [o.span for o in self.occurrences if o.key == key]
        return spans

    def references(self, key: Key, include_declaration: bool = True) -> list[Span]:
        """Every use of a name; a principle is also used by the globs and tags that select it,
        a deployment by the tests' ``in`` globs that match it."""
        out = []
        for o in self.occurrences:
            if o.definition and not include_declaration:
                continue
            if o.key == key or (o.key[0] in SELECTING and key in self.expand(o.key)):
                out.append(o.span)
        return list(dict.fromkeys(out))

    def names(self, kind: str) -> list[str]:
        """Declared names of one kind (``facet``, ``behavior``, ``principle``, ``group``, ``deployment``,
        ``authority``)."""
        return list(dict.fromkeys(o.key[1] for o in self.occurrences if o.definition and o.key[0] == kind))


def deployment_ref_key(ident: ast.Ident) -> Key:
    """The key of a test's or property's ``in`` target: one deployment, or a glob over them."""
    return ("deployments", ident.name) if "*" in ident.name else ("deployment", ident.name)


def selector_key(constitution: Constitution, selector: ast.Selector) -> Key:
    if selector.form == "glob":
        return ("glob", selector.text)
    if selector.form == "tag":
        return ("tag", selector.text)
    if selector.text not in constitution.principles and selector.text in constitution.groups:
        return ("group", selector.text)
    return ("principle", selector.text)


class _Walker:
    def __init__(self, constitution: Constitution):
        self.constitution = constitution
        self.out: list[Occurrence] = []

    def add(self, key: Key, node: ast.Node | None, definition: bool = False) -> None:
        if node is not None and node.span.line > 0:
            self.out.append(Occurrence(key, node.span, definition))

    def expr(self, expr: ast.Expr | None) -> None:
        if expr is None:
            return
        for node in ast.iter_expr(expr):
            if isinstance(node, ast.Comparison):
                self.add(("facet", node.facet.name), node.facet)
                if isinstance(node.value, ast.Ident):  # a number is not a declared value
                    self.add(("value", node.facet.name, node.value.name), node.value)
            elif isinstance(node, ast.Membership):
                self.add(("facet", node.facet.name), node.facet)
                for v in node.values:
                    self.add(("value", node.facet.name, v.name), v)

    def selectors(self, selectors) -> None:
        for sel in selectors:
            self.add(selector_key(self.constitution, sel), sel)

    def body(self, body: ast.PrincipleBody) -> None:
        self.expr(body.when)
        for effect in body.effects:
            for b in effect.behaviors:
                self.add(("behavior", b.name), b)
        if body.tags is not None:
            for t in body.tags.names:
                self.add(("tag", t.name), t)

    def item(self, path: str, item, is_root: bool) -> None:
        if isinstance(item, ast.Import):
            self.add(("file", import_target(path, item)), item.path)
        elif isinstance(item, ast.Facet):
            self.add(("facet", item.name.name), item.name, True)
            for v in item.values:
                self.add(("value", item.name.name, v.name), v, True)
        elif isinstance(item, ast.Behavior):
            self.add(("behavior", item.name.name), item.name, True)
        elif isinstance(item, ast.Exclusive):
            for m in item.members:
                self.add(("behavior", m.name), m)
        elif isinstance(item, ast.AuthorityDecl):
            for level in item.levels:
                self.add(("authority", level.name), level, True)
        elif isinstance(item, ast.Principle):
            self.add(("principle", item.id.name), item.id, True)
            if item.authority is not None:
                self.add(("authority", item.authority.name), item.authority)
            self.body(item)
        elif isinstance(item, ast.Group):
            self.add(("group", item.name.name), item.name, True)
            self.selectors(item.members)
        elif isinstance(item, ast.Priority):
            for level in item.levels:
                self.selectors(level)
        elif isinstance(item, ast.Conflict):
            for ident in (item.left, item.right, item.otherwise, *(b.winner for b in item.branches)):
                if ident is not None:
                    self.add(("principle", ident.name), ident)
            for branch in item.branches:
                self.expr(branch.condition)
        elif is_root and isinstance(item, ast.Deployment):
            self.deployment(item)
        elif is_root and isinstance(item, (ast.TestCase, ast.PropertyCase)):
            self.add(deployment_ref_key(item.deployment), item.deployment)
            self.expr(item.given if isinstance(item, ast.TestCase) else item.forall)
            for exp in item.expectations:
                kind = "principle" if exp.expect in ("winner", "active", "not_active") else "behavior"
                self.add((kind, exp.subject.name), exp.subject)
                if exp.other is not None:
                    self.add(("principle", exp.other.name), exp.other)

    def deployment(self, item: ast.Deployment) -> None:
        self.add(("deployment", item.name.name), item.name, True)
        if item.extends is not None:
            self.add(("deployment", item.extends.name), item.extends)
        for sub in item.items:
            if isinstance(sub, (ast.Include, ast.Exclude, ast.Lock)):
                self.selectors(sub.selectors)
            elif isinstance(sub, ast.DeploymentAuthority):
                self.add(("authority", sub.level.name), sub.level)
            elif isinstance(sub, ast.Priority):
                for level in sub.levels:
                    self.selectors(level)
            elif isinstance(sub, ast.Assume):
                self.expr(sub.condition)
            elif isinstance(sub, ast.Override):
                self.add(("principle", sub.target.name), sub.target)
                self.expr(sub.narrow)
                self.body(sub)


def build_index(constitution: Constitution) -> SymbolIndex:
    """The index of every file loaded for ``constitution`` (deployments and tests: the root's)."""
    walker = _Walker(constitution)
    for path, file in constitution.files.items():
        for item in file.items:
            walker.item(path, item, path == constitution.root)
    return SymbolIndex(constitution, walker.out)
