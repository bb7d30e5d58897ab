"""One scope over a file and its imports (every declaration by name, duplicates
reported), and the name checker that resolves references and selectors in it."""

from __future__ import annotations

import fnmatch

from cai_dsl.diagnostics import Diagnostic, Related, rules
from cai_dsl.lang import ast
from cai_dsl.lang.authority import Authority


class Scope:
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
        self.authorities: list[ast.AuthorityDecl] = []
        self.examples: list[ast.Example | ast.CompareExample] = []  # top-level: shared by every principle
        # imported files first so that the root's duplicates point at the root
        for path in [p for p in files if p != root] + ([root] if root in files else []):
            self._add_file(files[path], is_root=path == root)
        self.authority = Authority(self.authorities, self.principles, diagnostics)

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
            elif isinstance(item, ast.AuthorityDecl):
                self.authorities.append(item)
            elif isinstance(item, (ast.Example, ast.CompareExample)):
                self.examples.append(item)
            elif is_root and isinstance(item, ast.Deployment):
                self._define(self.deployments, item.name, item, "deployment")
            elif is_root and isinstance(item, ast.TestCase):
                self.tests.append(item)
            elif is_root and isinstance(item, ast.PropertyCase):
                self.properties.append(item)


class NameChecker:
    """Checks every reference in scope and expands selectors."""

    def __init__(self, scope: Scope):
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
                if facet is not None and self._same_kind(facet, node):
                    if facet.bounds is not None:
                        self._in_range(facet, node.value)
                        continue
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
                if facet is not None and self._same_kind(facet, node):
                    for v in node.values:
                        self._value(facet, v)

    def _same_kind(self, facet: ast.Facet, node: ast.Comparison | ast.Membership) -> bool:
        """Whether ``node`` treats ``facet`` as what it is (a number or a symbolic facet); CAI126 if not."""
        name = facet.name.name
        if isinstance(node, ast.Membership):
            if facet.bounds is None:
                return True
            message, hint = f"`in {{...}}` needs a symbolic facet, but `{name}` is a number facet", (
                f"compare it with numbers instead, e.g. `{name} >= LOW and {name} <= HIGH`"
            )
        elif (facet.bounds is not None) == isinstance(node.value, ast.Number):
            return True
        elif facet.bounds is not None:
            message, hint = f"`{name}` is a number facet: compare it with a number, not `{node.value.name}`", (
                f"its range is {facet.bounds.low.value} .. {facet.bounds.high.value}"
            )
        else:
            message, hint = f"`{name}` is not a number facet: compare it with one of its values, not a number", (
                f"values are: {', '.join(v.name for v in facet.values)}"
            )
        self.diagnostics.append(
            rules.FACET_KIND_MISMATCH(
                message, node.span, help=hint, related=[Related(span=facet.span, message="facet declared here")]
            )
        )
        return False

    def _in_range(self, facet: ast.Facet, value: ast.Number) -> None:
        low, high = facet.bounds.low.value, facet.bounds.high.value
        if not low <= value.value <= high:
            self.diagnostics.append(
                rules.NUMBER_OUT_OF_RANGE(
                    f"{value.value} is outside the range of facet `{facet.name.name}` ({low} .. {high})",
                    value.span,
                    help="widen the facet's range, or compare with a number inside it",
                    related=[Related(span=facet.span, message="facet declared here")],
                )
            )

    def _facet(self, ident: ast.Ident) -> ast.Facet | None:
        facet = self.scope.facets.get(ident.name)
        if facet is None:
            self.diagnostics.append(
                rules.UNDEFINED_FACET(
                    f"undefined facet `{ident.name}`", ident.span, help=did_you_mean(ident.name, self.scope.facets)
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
                    help=did_you_mean(ident.name, self.scope.behaviors) or f"declare it: behavior {ident.name} \"...\"",
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
                    help=did_you_mean(ident.name, self.scope.principles),
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
                help=did_you_mean(selector.text, {**ids, **self.scope.groups}),
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


def did_you_mean(name: str, candidates) -> str | None:
    import difflib

    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.75)
    return f"did you mean `{close[0]}`?" if close else None
