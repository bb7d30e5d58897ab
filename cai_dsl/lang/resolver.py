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

from pathlib import Path
from typing import Mapping

from cai_dsl.diagnostics import Related, rules
from cai_dsl.diagnostics.dedupe import dedupe
from cai_dsl.lang import ast
from cai_dsl.lang.flatten import flatten, priority_edges
from cai_dsl.lang.loading import load_closure
from cai_dsl.lang.observe import validate_observe
from cai_dsl.lang.project import load_project, vocabulary_limits
from cai_dsl.lang.resolved import Constitution, PriorityEdge, ResolvedDeployment, matching_deployments
from cai_dsl.lang.scope import NameChecker, Scope, did_you_mean

__all__ = ["Constitution", "PriorityEdge", "ResolvedDeployment", "resolve"]


def resolve(path: str | Path, text: str | None = None, overlay: Mapping[str, str] | None = None) -> Constitution:
    """Parse ``path`` (or ``text`` as if read from it) with its imports and resolve everything;
    ``overlay`` maps normalised paths to in-memory sources that take precedence over the disk."""
    root = str(path)
    project = load_project(root)
    files, sources, diagnostics = load_closure(root, text, overlay, project)
    scope = Scope(files, root, diagnostics)
    checker = NameChecker(scope)
    diagnostics.extend(vocabulary_limits(scope.facets, project))

    for behavior in scope.behaviors.values():
        diagnostics.extend(validate_observe(behavior))
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
    global_edges = [edge for priority in scope.priorities for edge in priority_edges(checker, priority)]
    scope.authority.check_top_level(global_edges, scope.conflicts)
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
        flatten(name, scope, checker, global_edges, cache)
    deployments = {name: d for name, d in cache.items() if d is not None}
    deployments = {name: deployments[name] for name in scope.deployments if name in deployments}

    for case in [*scope.tests, *scope.properties]:
        if not matching_deployments(case.deployment.name, scope.deployments):
            diagnostics.append(
                rules.UNDEFINED_DEPLOYMENT(
                    f"no deployment matches `{case.deployment.name}`"
                    if "*" in case.deployment.name
                    else f"undefined deployment `{case.deployment.name}`",
                    case.deployment.span,
                    help=did_you_mean(case.deployment.name, scope.deployments),
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
        authority=scope.authority.levels,
        examples=tuple(scope.examples),
        deployments=deployments,
        deployment_decls=scope.deployments,
        tests=tuple(scope.tests),
        properties=tuple(scope.properties),
        diagnostics=tuple(dedupe(diagnostics)),
    )


def _unused(scope: Scope, checker: NameChecker, root: str) -> None:
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
