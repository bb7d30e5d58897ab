"""Flattening a deployment through ``extends``: its principle set (include/exclude
with ids, globs, ``#tags`` and groups expanded), assumptions, priority edges,
overrides and settings."""

from __future__ import annotations

from cai_dsl.diagnostics import Related, rules
from cai_dsl.lang import ast
from cai_dsl.lang.authority import Authority
from cai_dsl.lang.project import MAX_EXTENDS_DEPTH
from cai_dsl.lang.resolved import PriorityEdge, ResolvedDeployment
from cai_dsl.lang.scope import NameChecker, Scope, did_you_mean
from cai_dsl.lang.settings import DeploymentSettings, validate_setting


def priority_edges(checker: NameChecker, priority: ast.Priority) -> list[PriorityEdge]:
    levels = [frozenset().union(*(checker.select(s) for s in level)) for level in priority.levels]
    edges = []
    for i, higher in enumerate(levels):
        for lower in levels[i + 1 :]:
            for h in sorted(higher):
                for low in sorted(lower):
                    edges.append(PriorityEdge(higher=h, lower=low, span=priority.span))
    return edges


def apply_override(principle: ast.Principle, override: ast.Override) -> ast.Principle:
    """The principle with the override's fields; ``narrow when E`` makes its condition ``when and E``."""
    update = {}
    for name in ("critique", "revise", "compare", "when", "weight", "tags"):
        value = getattr(override, name)
        if value is not None:
            update[name] = value
    if override.narrow is not None:
        base = update.get("when", principle.when)
        update["when"] = (
            override.narrow if base is None else ast.And(operands=(base, override.narrow), span=override.narrow.span)
        )
    if override.effects:
        update["effects"] = override.effects
    if override.examples:
        update["examples"] = override.examples
    return principle.model_copy(update=update)


def flatten(
    name: str,
    scope: Scope,
    checker: NameChecker,
    global_edges: list[PriorityEdge],
    cache: dict[str, ResolvedDeployment | None],
) -> ResolvedDeployment | None:
    """The resolved deployment ``name`` (None when it takes part in an ``extends`` cycle), cached.

    Iterative: the ``extends`` chain is walked first, then flattened from its far end, so chains
    of any length (and cycles of any length) need no recursion."""
    if name in cache:
        return cache[name]
    chain = [name]
    while True:
        decl = scope.deployments[chain[-1]]
        pname = decl.extends.name if decl.extends is not None else None
        if pname is None or pname not in scope.deployments or pname in cache:
            break
        if len(chain) >= MAX_EXTENDS_DEPTH:
            checker.diagnostics.append(
                rules.LIMIT_EXCEEDED(
                    f"deployment `{name}` extends a chain of more than {MAX_EXTENDS_DEPTH} deployments",
                    decl.extends.span,
                    help="extend a common base deployment directly instead of chaining",
                )
            )
            cache[chain.pop()] = None
            break
        if pname in chain:
            cycle = " -> ".join([*chain[chain.index(pname) :], pname])
            checker.diagnostics.append(
                rules.DEPLOYMENT_CYCLE(f"deployment cycle: {cycle}", decl.extends.span, help="remove one `extends`")
            )
            cache[chain.pop()] = None
            break
        chain.append(pname)
    for current in reversed(chain):
        cache[current] = _flatten_one(current, scope, checker, global_edges, cache)
    return cache[name]


def _level(
    decl: ast.Deployment, parent: ResolvedDeployment | None, authority: Authority, checker: NameChecker
) -> tuple[int, ast.Span]:
    """The deployment's level rank (its own `authority`, else its parent's, else the highest)
    and the span that sets it; declaring a level above the parent's is an error."""
    parent_level = parent.level if parent else 0
    parent_span = parent.level_span if parent and parent.level_span else decl.name.span
    own = next((i for i in decl.items if isinstance(i, ast.DeploymentAuthority)), None)
    rank = authority.level(own.level) if own is not None else None
    if rank is None:
        return parent_level, parent_span
    if rank < parent_level:
        checker.diagnostics.append(
            rules.AUTHORITY_VIOLATION(
                f"deployment `{decl.name.name}` declares level `{own.level.name}`, above its parent's "
                f"`{authority.name(parent_level)}`",
                own.span,
                related=[Related(span=parent_span, message="the parent's level")],
                deployment=decl.name.name,
                help="a deployment may not declare a level above its parent's",
            )
        )
        return parent_level, parent_span
    return rank, own.span


def _flatten_one(
    name: str,
    scope: Scope,
    checker: NameChecker,
    global_edges: list[PriorityEdge],
    cache: dict[str, ResolvedDeployment | None],
) -> ResolvedDeployment:
    """Flatten ``name`` onto its parent, which is already in ``cache`` (None: no parent)."""
    decl = scope.deployments[name]
    parent: ResolvedDeployment | None = None
    if decl.extends is not None:
        pname = decl.extends.name
        if pname not in scope.deployments:
            checker.diagnostics.append(
                rules.UNDEFINED_DEPLOYMENT(
                    f"deployment `{name}` extends undefined deployment `{pname}`",
                    decl.extends.span,
                    help=did_you_mean(pname, scope.deployments),
                )
            )
        else:
            parent = cache.get(pname)

    selected: set[str] = set(parent.principle_ids) if parent else set()
    excluded: set[str] = set()
    assumptions = list(parent.assumptions) if parent else []
    edges = list(parent.priorities) if parent else list(global_edges)
    settings_values = parent.settings.model_dump(exclude_unset=True) if parent else {}
    setting_spans = dict(parent.setting_spans) if parent else {}
    own_overrides: list[ast.Override] = []
    authority = scope.authority
    level, level_span = _level(decl, parent, authority, checker)
    locked = dict(parent.locked) if parent else {}
    own_locks: dict[str, tuple[str, ast.Span]] = {}
    exclude_spans: dict[str, ast.Span] = {}

    def may_change(pid: str, what: str, span: ast.Span) -> None:
        authority.check_change(name, level, level_span, pid, what, span, locked)

    for item in decl.items:
        if isinstance(item, ast.Include):
            for sel in item.selectors:
                selected |= checker.select(sel)
        elif isinstance(item, ast.Exclude):
            for sel in item.selectors:
                found = checker.select(sel)
                exclude_spans.update({pid: sel.span for pid in found if pid not in exclude_spans})
                excluded |= found
        elif isinstance(item, ast.Lock):
            for sel in item.selectors:
                own_locks.update({pid: (name, item.span) for pid in sorted(checker.select(sel))})
        elif isinstance(item, ast.Assume):
            checker.expr(item.condition)
            assumptions.append(item.condition)
        elif isinstance(item, ast.Priority):
            own_edges = priority_edges(checker, item)
            for pid in sorted({e.lower for e in own_edges}):
                may_change(pid, "ranks below another principle", item.span)
            edges.extend(own_edges)
        elif isinstance(item, ast.Override):
            if checker.principle_ref(item.target):
                checker.body(item)
                checker.expr(item.narrow)
                may_change(item.target.name, "overrides", item.target.span)
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
    for pid in sorted(excluded & selected):  # excluding what is not there changes nothing
        may_change(pid, "excludes", exclude_spans[pid])
    selected -= excluded
    try:
        settings = DeploymentSettings.model_validate(settings_values)
    except Exception as exc:  # cross-field rule (e.g. clamp order)
        checker.diagnostics.append(rules.INVALID_SETTING_VALUE(f"invalid settings: {exc}", decl.name.span))
        settings = DeploymentSettings()
    ordered_ids = [pid for pid in scope.principles if pid in selected]
    # every override of the chain applies, ancestors' first, also to a principle an ancestor
    # excluded and this deployment includes again
    overrides = (*(parent.overrides if parent else ()), *own_overrides)
    principles = []
    for pid in ordered_ids:
        principle = scope.principles[pid]
        for ov in overrides:
            if ov.target.name == pid:
                principle = apply_override(principle, ov)
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
        authority=authority.name(level) if authority.levels else None,
        level=level,
        level_span=level_span,
        ranks={pid: authority.rank(pid) for pid in ordered_ids if authority.rank(pid)},
        locked={**locked, **own_locks},
        overrides=overrides,
    )
    return resolved
