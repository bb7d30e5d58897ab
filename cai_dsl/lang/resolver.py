"""Resolution: load a file and its imports, build one scope, flatten deployments.

``resolve(path)`` parses the root file and, transitively, every file it imports
(relative to the importing file; each file once; cycles are errors), merges their
declarations into one scope, checks every name, and flattens each of the root
file's deployments through ``extends``: principle set (include/exclude with ids,
globs, ``#tags`` and groups expanded), assumptions, priority edges, overrides and
settings. Imported files contribute vocabulary, principles, groups, priorities and
conflicts; their deployments, tests and properties stay theirs.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from cai_dsl.lang import ast

from cai_dsl.diagnostics import rules
from cai_dsl.diagnostics.base import Diagnostic, Related
from cai_dsl.lang.parser import parse_file, parse_text
from cai_dsl.lang.settings import DeploymentSettings, validate_setting


class PriorityEdge(BaseModel):
    """``higher`` outranks ``lower``, as stated at ``span``."""

    model_config = ConfigDict(frozen=True)

    higher: str
    lower: str
    span: ast.Span


class ResolvedDeployment(BaseModel):
    """A deployment flattened through ``extends``, with overrides applied."""

    model_config = ConfigDict(frozen=True)

    name: str
    span: ast.Span
    chain: tuple[str, ...]  # this deployment, its parent, its grandparent...
    principles: tuple[ast.Principle, ...]
    assumptions: tuple[ast.Expr, ...]
    priorities: tuple[PriorityEdge, ...]
    conflicts: tuple[ast.Conflict, ...]
    settings: DeploymentSettings
    setting_spans: dict[str, ast.Span] = {}

    @property
    def principle_ids(self) -> tuple[str, ...]:
        return tuple(p.id.name for p in self.principles)

    def principle(self, pid: str) -> ast.Principle | None:
        for p in self.principles:
            if p.id.name == pid:
                return p
        return None


class Constitution(BaseModel):
    """Everything in scope of one root file, checked for names, deployments flattened."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    root: str
    files: dict[str, ast.ConstitutionFile]  # every loaded file, root first
    sources: dict[str, str]
    facets: dict[str, ast.Facet]
    behaviors: dict[str, ast.Behavior]
    exclusives: tuple[ast.Exclusive, ...]
    principles: dict[str, ast.Principle]  # in declaration order
    groups: dict[str, ast.Group]
    priorities: tuple[ast.Priority, ...]
    conflicts: tuple[ast.Conflict, ...]
    deployments: dict[str, ResolvedDeployment]  # the root file's
    deployment_decls: dict[str, ast.Deployment]
    tests: tuple[ast.TestCase, ...]
    properties: tuple[ast.PropertyCase, ...]
    diagnostics: tuple[Diagnostic, ...]

    @property
    def root_file(self) -> ast.ConstitutionFile:
        return self.files[self.root]

    @property
    def has_errors(self) -> bool:
        return any(d.is_error for d in self.diagnostics)


# ---------------------------------------------------------------- loading


def _load_closure(root: str, root_text: str | None) -> tuple[dict[str, ast.ConstitutionFile], dict[str, str], list[Diagnostic]]:
    """Parse ``root`` and every file it imports, depth first, each file once."""
    files: dict[str, ast.ConstitutionFile] = {}
    sources: dict[str, str] = {}
    diagnostics: list[Diagnostic] = []
    done: set[str] = set()

    def key(path: str) -> str:
        return os.path.realpath(path)

    def visit(path: str, chain: list[str], via: ast.Import | None, text: str | None) -> None:
        k = key(path)
        chain_keys = [key(p) for p in chain]
        if k in chain_keys:
            loop = [*chain[chain_keys.index(k) :], path]
            diagnostics.append(
                rules.IMPORT_CYCLE(
                    "import cycle: " + " -> ".join(os.path.relpath(p) for p in loop),
                    via.span if via else None,
                    help="move the shared declarations into a file that both import",
                )
            )
            return
        if k in done:
            return
        done.add(k)
        if text is not None:
            result = parse_text(text, path)
        else:
            if via is not None and not os.path.isfile(path):
                chain_text = " -> ".join(os.path.relpath(p) for p in [*chain, path])
                diagnostics.append(
                    rules.IMPORT_NOT_FOUND(
                        f"imported file `{via.path.value}` not found ({chain_text})",
                        via.path.span,
                        help="import paths are relative to the importing file",
                    )
                )
                return
            result = parse_file(path)
        sources[path] = result.text
        diagnostics.extend(result.diagnostics)
        if result.file is None:
            return
        files[path] = result.file
        for imp in result.file.imports:
            target = os.path.normpath(os.path.join(os.path.dirname(path), imp.path.value))
            visit(target, [*chain, path], imp, None)

    visit(root, [], None, root_text)
    # root first, then imports in load order
    ordered = {root: files[root]} if root in files else {}
    ordered.update(files)
    return ordered, sources, diagnostics


# ---------------------------------------------------------------- scope


class _Scope:
    """Declarations of every loaded file, with duplicate detection."""

    def __init__(self, files: dict[str, ast.ConstitutionFile], root: str, diagnostics: list[Diagnostic]):
        self.diagnostics = diagnostics
        self.facets: dict[str, ast.Facet] = {}
        self.behaviors: dict[str, ast.Behavior] = {}
        self.principles: dict[str, ast.Principle] = {}
        self.groups: dict[str, ast.Group] = {}
        self.exclusives: list[ast.Exclusive] = []
        self.priorities: list[ast.Priority] = []
        self.conflicts: list[ast.Conflict] = []
        self.deployments: dict[str, ast.Deployment] = {}
        self.tests: list[ast.TestCase] = []
        self.properties: list[ast.PropertyCase] = []
        # imported files first so that the root's duplicates point at the root
        for path in [p for p in files if p != root] + ([root] if root in files else []):
            self._add_file(files[path], is_root=path == root)

    def _define(self, table: dict, name: ast.Ident, node, what: str) -> None:
        if name.name in table:
            first = table[name.name]
            first_span = getattr(first, "span", None)
            self.diagnostics.append(
                rules.DUPLICATE_DEFINITION(
                    f"{what} `{name.name}` is defined twice",
                    name.span,
                    related=[Related(span=first_span, message="first defined here")] if first_span else [],
                    help="rename one of them, or remove the duplicate",
                )
            )
            return
        table[name.name] = node

    def _add_file(self, file: ast.ConstitutionFile, is_root: bool) -> None:
        for item in file.items:
            if isinstance(item, ast.Facet):
                self._define(self.facets, item.name, item, "facet")
                seen: set[str] = set()
                for v in item.values:
                    if v.name in seen:
                        self.diagnostics.append(
                            rules.DUPLICATE_VALUE(f"value `{v.name}` appears twice in facet `{item.name.name}`", v.span)
                        )
                    seen.add(v.name)
            elif isinstance(item, ast.Behavior):
                self._define(self.behaviors, item.name, item, "behavior")
            elif isinstance(item, ast.Principle):
                self._define(self.principles, item.id, item, "principle")
            elif isinstance(item, ast.Group):
                if item.name.name in self.principles:
                    self.diagnostics.append(
                        rules.DUPLICATE_DEFINITION(
                            f"group `{item.name.name}` has the name of a principle", item.name.span
                        )
                    )
                self._define(self.groups, item.name, item, "group")
            elif isinstance(item, ast.Exclusive):
                self.exclusives.append(item)
            elif isinstance(item, ast.Priority):
                self.priorities.append(item)
            elif isinstance(item, ast.Conflict):
                self.conflicts.append(item)
            elif is_root and isinstance(item, ast.Deployment):
                self._define(self.deployments, item.name, item, "deployment")
            elif is_root and isinstance(item, ast.TestCase):
                self.tests.append(item)
            elif is_root and isinstance(item, ast.PropertyCase):
                self.properties.append(item)


# ---------------------------------------------------------------- names


class _NameChecker:
    """Checks every reference in scope and expands selectors."""

    def __init__(self, scope: _Scope):
        self.scope = scope
        self.diagnostics = scope.diagnostics
        self.used_facets: set[str] = set()
        self.used_behaviors: set[str] = set()
        self._group_cache: dict[str, frozenset[str]] = {}

    # -- expressions
    def expr(self, expr: ast.Expr | None) -> None:
        if expr is None:
            return
        for node in ast.iter_expr(expr):
            if isinstance(node, ast.Comparison):
                facet = self._facet(node.facet)
                if facet is not None:
                    self._value(facet, node.value)
                    if node.op not in ("==", "!=") and not facet.ordered:
                        self.diagnostics.append(
                            rules.ORDERED_COMPARISON_ON_UNORDERED(
                                f"`{node.op}` needs an ordered facet, but `{facet.name.name}` is unordered",
                                node.span,
                                help="use `==`, `!=` or `in {{...}}`, or declare the facet with `<` between values",
                                related=[Related(span=facet.span, message="facet declared here")],
                            )
                        )
            elif isinstance(node, ast.Membership):
                facet = self._facet(node.facet)
                if facet is not None:
                    for v in node.values:
                        self._value(facet, v)

    def _facet(self, ident: ast.Ident) -> ast.Facet | None:
        facet = self.scope.facets.get(ident.name)
        if facet is None:
            self.diagnostics.append(
                rules.UNDEFINED_FACET(
                    f"undefined facet `{ident.name}`", ident.span, help=_did_you_mean(ident.name, self.scope.facets)
                )
            )
            return None
        self.used_facets.add(ident.name)
        return facet

    def _value(self, facet: ast.Facet, value: ast.Ident) -> None:
        names = [v.name for v in facet.values]
        if value.name not in names:
            self.diagnostics.append(
                rules.UNDEFINED_FACET_VALUE(
                    f"`{value.name}` is not a value of facet `{facet.name.name}`",
                    value.span,
                    help=f"values are: {', '.join(names)}",
                    related=[Related(span=facet.span, message="facet declared here")],
                )
            )

    # -- behaviors and principles
    def behavior(self, ident: ast.Ident) -> bool:
        if ident.name not in self.scope.behaviors:
            self.diagnostics.append(
                rules.UNDEFINED_BEHAVIOR(
                    f"undefined behavior `{ident.name}`",
                    ident.span,
                    help=_did_you_mean(ident.name, self.scope.behaviors) or f"declare it: behavior {ident.name} \"...\"",
                )
            )
            return False
        return True

    def principle_ref(self, ident: ast.Ident) -> bool:
        if ident.name not in self.scope.principles:
            self.diagnostics.append(
                rules.UNDEFINED_PRINCIPLE(
                    f"undefined principle `{ident.name}`",
                    ident.span,
                    help=_did_you_mean(ident.name, self.scope.principles),
                )
            )
            return False
        return True

    def body(self, body: ast.PrincipleBody) -> None:
        self.expr(body.when)
        for effect in body.effects:
            for b in effect.behaviors:
                if self.behavior(b):
                    self.used_behaviors.add(b.name)

    # -- selectors
    def select(self, selector: ast.Selector, _stack: tuple[str, ...] = ()) -> frozenset[str]:
        ids = self.scope.principles
        if selector.form == "glob":
            found = frozenset(p for p in ids if fnmatch.fnmatchcase(p, selector.text))
            if not found:
                self.diagnostics.append(
                    rules.SELECTOR_MATCHES_NOTHING(f"glob `{selector.text}` matches no principle", selector.span)
                )
            return found
        if selector.form == "tag":
            found = frozenset(pid for pid, p in ids.items() if selector.text in p.tag_names)
            if not found:
                self.diagnostics.append(
                    rules.SELECTOR_MATCHES_NOTHING(f"no principle is tagged `#{selector.text}`", selector.span)
                )
            return found
        if selector.text in ids:
            return frozenset([selector.text])
        if selector.text in self.scope.groups:
            return self.group(selector.text, selector.span, _stack)
        self.diagnostics.append(
            rules.UNDEFINED_NAME(
                f"`{selector.text}` is neither a principle nor a group",
                selector.span,
                help=_did_you_mean(selector.text, {**ids, **self.scope.groups}),
            )
        )
        return frozenset()

    def group(self, name: str, span: ast.Span, _stack: tuple[str, ...] = ()) -> frozenset[str]:
        if name in self._group_cache:
            return self._group_cache[name]
        if name in _stack:
            cycle = " -> ".join([*_stack[_stack.index(name) :], name])
            self.diagnostics.append(rules.GROUP_CYCLE(f"group cycle: {cycle}", span))
            return frozenset()
        group = self.scope.groups[name]
        members: set[str] = set()
        for sel in group.members:
            members |= self.select(sel, (*_stack, name))
        if not members:
            self.diagnostics.append(rules.SELECTOR_MATCHES_NOTHING(f"group `{name}` selects no principle", group.name.span))
        result = frozenset(members)
        self._group_cache[name] = result
        return result


def _did_you_mean(name: str, candidates) -> str | None:
    import difflib

    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.75)
    return f"did you mean `{close[0]}`?" if close else None


# ---------------------------------------------------------------- flattening


def _priority_edges(checker: _NameChecker, priority: ast.Priority) -> list[PriorityEdge]:
    levels = [frozenset().union(*(checker.select(s) for s in level)) for level in priority.levels]
    edges = []
    for i, higher in enumerate(levels):
        for lower in levels[i + 1 :]:
            for h in sorted(higher):
                for low in sorted(lower):
                    edges.append(PriorityEdge(higher=h, lower=low, span=priority.span))
    return edges


def _apply_override(principle: ast.Principle, override: ast.Override) -> ast.Principle:
    update = {}
    for name in ("critique", "revise", "compare", "when", "weight", "tags"):
        value = getattr(override, name)
        if value is not None:
            update[name] = value
    if override.effects:
        update["effects"] = override.effects
    if override.examples:
        update["examples"] = override.examples
    return principle.model_copy(update=update)


def _flatten(
    name: str,
    scope: _Scope,
    checker: _NameChecker,
    global_edges: list[PriorityEdge],
    cache: dict[str, ResolvedDeployment | None],
    stack: tuple[str, ...],
) -> ResolvedDeployment | None:
    if name in cache:
        return cache[name]
    decl = scope.deployments[name]
    parent: ResolvedDeployment | None = None
    if decl.extends is not None:
        pname = decl.extends.name
        if pname not in scope.deployments:
            checker.diagnostics.append(
                rules.UNDEFINED_DEPLOYMENT(
                    f"deployment `{name}` extends undefined deployment `{pname}`",
                    decl.extends.span,
                    help=_did_you_mean(pname, scope.deployments),
                )
            )
        elif pname in stack or pname == name:
            loop = [*stack[stack.index(pname) :], name, pname] if pname in stack else [name, pname]
            cycle = " -> ".join(loop)
            checker.diagnostics.append(
                rules.DEPLOYMENT_CYCLE(f"deployment cycle: {cycle}", decl.extends.span, help="remove one `extends`")
            )
            cache[name] = None
            return None
        else:
            parent = _flatten(pname, scope, checker, global_edges, cache, (*stack, name))

    selected: set[str] = set(parent.principle_ids) if parent else set()
    excluded: set[str] = set()
    assumptions = list(parent.assumptions) if parent else []
    edges = list(parent.priorities) if parent else list(global_edges)
    settings_values = parent.settings.model_dump(exclude_unset=True) if parent else {}
    setting_spans = dict(parent.setting_spans) if parent else {}
    overrides: dict[str, ast.Principle] = {p.id.name: p for p in parent.principles} if parent else {}
    own_overrides: list[ast.Override] = []
    for item in decl.items:
        if isinstance(item, ast.Include):
            for sel in item.selectors:
                selected |= checker.select(sel)
        elif isinstance(item, ast.Exclude):
            for sel in item.selectors:
                excluded |= checker.select(sel)
        elif isinstance(item, ast.Assume):
            checker.expr(item.condition)
            assumptions.append(item.condition)
        elif isinstance(item, ast.Priority):
            edges.extend(_priority_edges(checker, item))
        elif isinstance(item, ast.Override):
            if checker.principle_ref(item.target):
                checker.body(item)
                own_overrides.append(item)
        elif isinstance(item, ast.Setting):
            problem = validate_setting(item.key.name, item.value)
            if problem is not None:
                rule = rules.UNKNOWN_SETTING if problem.startswith("unknown") else rules.INVALID_SETTING_VALUE
                checker.diagnostics.append(
                    rule(
                        problem,
                        item.span,
                        help=("known settings: " + ", ".join(DeploymentSettings.model_fields))
                        if rule is rules.UNKNOWN_SETTING
                        else DeploymentSettings.model_fields[item.key.name].description,
                    )
                )
            else:
                settings_values[item.key.name] = item.value
                setting_spans[item.key.name] = item.span
    selected -= excluded
    try:
        settings = DeploymentSettings.model_validate(settings_values)
    except Exception as exc:  # cross-field rule (e.g. clamp order)
        checker.diagnostics.append(rules.INVALID_SETTING_VALUE(f"invalid settings: {exc}", decl.name.span))
        settings = DeploymentSettings()
    ordered_ids = [pid for pid in scope.principles if pid in selected]
    principles = []
    for pid in ordered_ids:
        principle = overrides.get(pid, scope.principles[pid])
        for ov in own_overrides:
            if ov.target.name == pid:
                principle = _apply_override(principle, ov)
        principles.append(principle)
    for ov in own_overrides:
        if ov.target.name not in selected:
            checker.diagnostics.append(
                rules.EXCLUDED_PRINCIPLE_OVERRIDDEN(
                    f"deployment `{name}` overrides `{ov.target.name}`, which it does not include", ov.target.span
                )
            )
    resolved = ResolvedDeployment(
        name=name,
        span=decl.span,
        chain=(name, *(parent.chain if parent else ())),
        principles=tuple(principles),
        assumptions=tuple(assumptions),
        priorities=tuple(edges),
        conflicts=tuple(scope.conflicts),
        settings=settings,
        setting_spans=setting_spans,
    )
    cache[name] = resolved
    return resolved


# ---------------------------------------------------------------- entry point


def resolve(path: str | Path, text: str | None = None) -> Constitution:
    """Parse ``path`` (or ``text`` as if read from it) with its imports and resolve everything."""
    root = str(path)
    files, sources, diagnostics = _load_closure(root, text)
    scope = _Scope(files, root, diagnostics)
    checker = _NameChecker(scope)

    for exclusive in scope.exclusives:
        seen: set[str] = set()
        for member in exclusive.members:
            if checker.behavior(member):
                checker.used_behaviors.add(member.name)
            if member.name in seen:
                diagnostics.append(rules.DUPLICATE_VALUE(f"`{member.name}` appears twice in `exclusive`", member.span))
            seen.add(member.name)
    for principle in scope.principles.values():
        checker.body(principle)
    for group in scope.groups.values():
        checker.group(group.name.name, group.name.span)
    global_edges = [edge for priority in scope.priorities for edge in _priority_edges(checker, priority)]
    rule_pairs: dict[frozenset[str], ast.Conflict] = {}
    for conflict in scope.conflicts:
        pair = frozenset((conflict.left.name, conflict.right.name))
        if pair in rule_pairs:
            diagnostics.append(
                rules.DUPLICATE_DEFINITION(
                    f"a second conflict rule for `{conflict.left.name}` vs `{conflict.right.name}`",
                    conflict.span,
                    related=[Related(span=rule_pairs[pair].span, message="first rule for this pair")],
                    help="merge the branches into one rule (branches are tried in order)",
                )
            )
        rule_pairs.setdefault(pair, conflict)
        if len(pair) == 1:
            diagnostics.append(
                rules.INVALID_CONFLICT_WINNER("a conflict rule needs two different principles", conflict.span)
            )
        ok = checker.principle_ref(conflict.left) & checker.principle_ref(conflict.right)
        for branch in conflict.branches:
            checker.expr(branch.condition)
        winners = [b.winner for b in conflict.branches] + ([conflict.otherwise] if conflict.otherwise else [])
        for winner in winners:
            if ok and winner.name not in (conflict.left.name, conflict.right.name):
                diagnostics.append(
                    rules.INVALID_CONFLICT_WINNER(
                        f"`{winner.name}` is not one of `{conflict.left.name}` and `{conflict.right.name}`",
                        winner.span,
                    )
                )

    cache: dict[str, ResolvedDeployment | None] = {}
    for name in scope.deployments:
        _flatten(name, scope, checker, global_edges, cache, ())
    deployments = {name: d for name, d in cache.items() if d is not None}
    deployments = {name: deployments[name] for name in scope.deployments if name in deployments}

    for case in [*scope.tests, *scope.properties]:
        if case.deployment.name not in scope.deployments:
            diagnostics.append(
                rules.UNDEFINED_DEPLOYMENT(
                    f"undefined deployment `{case.deployment.name}`",
                    case.deployment.span,
                    help=_did_you_mean(case.deployment.name, scope.deployments),
                )
            )
        checker.expr(case.given if isinstance(case, ast.TestCase) else case.forall)
        for exp in case.expectations:
            if exp.expect in ("winner", "active", "not_active"):
                checker.principle_ref(exp.subject)
                if exp.other is not None:
                    checker.principle_ref(exp.other)
            else:
                checker.behavior(exp.subject)

    root_file = files.get(root)
    if root_file is not None:
        _unused(scope, checker, root)

    return Constitution(
        root=root,
        files=files,
        sources=sources,
        facets=scope.facets,
        behaviors=scope.behaviors,
        exclusives=tuple(scope.exclusives),
        principles=scope.principles,
        groups=scope.groups,
        priorities=tuple(scope.priorities),
        conflicts=tuple(scope.conflicts),
        deployments=deployments,
        deployment_decls=scope.deployments,
        tests=tuple(scope.tests),
        properties=tuple(scope.properties),
        diagnostics=tuple(_dedupe(diagnostics)),
    )


def _unused(scope: _Scope, checker: _NameChecker, root: str) -> None:
    """Warn about facets and behaviors declared in the root file that nothing uses.

    A vocabulary file (no principles of its own) exists to be imported: its
    declarations are used by the files that import it, so it gets no warnings.
    """
    if not any(p.span.file == root for p in scope.principles.values()):
        return
    for name, facet in scope.facets.items():
        if facet.span.file == root and name not in checker.used_facets:
            checker.diagnostics.append(
                rules.UNUSED_FACET(
                    f"facet `{name}` is never used in a condition",
                    facet.name.span,
                    help="use it in a `when`, `assume` or test, or remove it",
                )
            )
    for name, behavior in scope.behaviors.items():
        if behavior.span.file == root and name not in checker.used_behaviors:
            checker.diagnostics.append(
                rules.UNUSED_BEHAVIOR(
                    f"behavior `{name}` is never required, forbidden or preferred",
                    behavior.name.span,
                    help="reference it in a principle's effects, or remove it",
                )
            )


def _dedupe(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    seen = set()
    out = []
    for d in diagnostics:
        k = (d.code, d.message, d.span)
        if k not in seen:
            seen.add(k)
            out.append(d)
    return out
