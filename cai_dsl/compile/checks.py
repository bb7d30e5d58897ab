"""The checks a program needs: the checker's diagnostics, plus the compiler's own (priority cycles, weights)."""

from __future__ import annotations

import math
from typing import Iterable

from cai_dsl.check.checker import check
from cai_dsl.diagnostics import rules
from cai_dsl.diagnostics import Diagnostic, Related
from cai_dsl.lang.resolver import Constitution, ResolvedDeployment
from cai_dsl.semantics.budget import Budget

__all__ = ["check_constitution", "compiler_checks", "priority_ranks"]


def check_constitution(
    constitution: Constitution, deployments: Iterable[str] | None = None, budget: Budget | None = None
) -> list[Diagnostic]:
    """All diagnostics of the checker (names, SMT semantics, lints), resolution's included; every SMT query
    within ``budget`` (default: a fresh :class:`Budget`, 10 s per query and 300 s in all). A query that could
    hide an error and is not decided in time is an error (CAI220): the program is not compiled on a guess."""
    names = list(deployments) if deployments is not None else None
    found = list(check(constitution, deployments=names, budget=budget or Budget(), strict_undecided=True))
    seen = {(d.code, d.message, d.span) for d in found}
    # the checker includes resolution's diagnostics; keep any it might not have
    for d in constitution.diagnostics:
        if (d.code, d.message, d.span) not in seen and d.is_error:
            found.append(d)
    return found


def priority_ranks(ids: list[str], edges: list[tuple[str, str]]) -> tuple[dict[str, int], list[str]]:
    """Longest-path depth of each principle in the priority DAG; and the principles on a cycle."""
    succ: dict[str, list[str]] = {i: [] for i in ids}
    indeg = dict.fromkeys(ids, 0)
    for h, low in edges:
        succ[h].append(low)
        indeg[low] += 1
    rank = dict.fromkeys(ids, 0)
    queue = [i for i in ids if indeg[i] == 0]
    seen = 0
    while queue:
        node = queue.pop()
        seen += 1
        for nxt in succ[node]:
            if rank[node] + 1 > rank[nxt]:
                rank[nxt] = rank[node] + 1
            indeg[nxt] -= 1
            if indeg[nxt] == 0:
                queue.append(nxt)
    cyclic = [i for i in ids if indeg[i] > 0] if seen < len(ids) else []
    return rank, cyclic


def compiler_checks(deployment: ResolvedDeployment, edges: list[tuple[str, str]], cyclic: list[str]) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for p in deployment.principles:
        if p.weight is not None and (not math.isfinite(p.weight.value) or p.weight.value < 0):
            out.append(
                rules.INVALID_LITERAL(
                    f"weight of `{p.id.name}` must be a finite number >= 0, not {p.weight.literal}",
                    p.weight.span,
                    deployment=deployment.name,
                )
            )
    if cyclic:
        spans = {e.span for e in deployment.priorities if e.higher in cyclic and e.lower in cyclic}
        ordered = sorted(spans, key=lambda s: (s.file, s.line, s.column))
        out.append(
            rules.PRIORITY_CYCLE(
                "the priority order has a cycle among: " + ", ".join(sorted(cyclic)[:8]) + (" ..." if len(cyclic) > 8 else ""),
                ordered[0] if ordered else deployment.span,
                related=[Related(span=s, message="priority stated here") for s in ordered[1:4]],
                deployment=deployment.name,
                principles=sorted(cyclic)[:8],
            )
        )
    return out
