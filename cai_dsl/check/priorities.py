"""CAI202 priority-cycle: one diagnostic per strongly connected component of a
deployment's priority graph, with the cycle spelled out."""

from __future__ import annotations

from cai_dsl.diagnostics import Diagnostic, Related, rules
from cai_dsl.lang import ast
from cai_dsl.lang.resolver import ResolvedDeployment


def priority_cycles(deployment: ResolvedDeployment) -> list[Diagnostic]:
    """One CAI202 per strongly connected component of the priority graph."""
    succ: dict[str, list[tuple[str, ast.Span]]] = {}
    for e in deployment.priorities:
        succ.setdefault(e.higher, []).append((e.lower, e.span))
    # Tarjan, iterative
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    sccs: list[list[str]] = []
    counter = 0
    for start in sorted(succ):
        if start in index:
            continue
        work = [(start, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            nexts = succ.get(node, [])
            if i < len(nexts):
                work.append((node, i + 1))
                child = nexts[i][0]
                if child not in index:
                    work.append((child, 0))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            if low[node] == index[node]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                if len(comp) > 1 or any(c == node for c, _ in succ.get(node, [])):
                    sccs.append(comp)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    out = []
    for comp in sccs:
        members = set(comp)
        path = _cycle_path(succ, members)
        spans = [span for a in path[:-1] for (b, span) in succ.get(a, []) if b in members]
        out.append(
            rules.PRIORITY_CYCLE(
                "priority cycle: " + " > ".join(path),
                spans[0] if spans else deployment.span,
                related=[Related(span=s, message="part of the cycle") for s in dict.fromkeys(spans[1:])],
                deployment=deployment.name,
                principles=sorted(members),
                help="priorities must form a strict partial order; remove one of these orderings",
            )
        )
    return out


def _cycle_path(succ, members: set[str]) -> list[str]:
    start = min(members)
    path = [start]
    seen = {start}
    node = start
    while True:
        nxt = sorted(b for b, _ in succ.get(node, []) if b in members)
        if not nxt:
            return path
        choice = start if start in nxt else next((n for n in nxt if n not in seen), nxt[0])
        path.append(choice)
        if choice in seen:
            return path
        seen.add(choice)
        node = choice
