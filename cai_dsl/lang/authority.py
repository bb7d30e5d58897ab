"""Authority: the declared levels, each principle's level, and who may change what
(docs/language.md, "Who may change what").

A principle's level is the lowest level allowed to change it (its ``authority``; the
highest level without one, and always for a ``final`` principle). A deployment at level
L may exclude, override or rank below another principle (through its own ``priority``
lines) only principles at level L or lower that no ancestor locked; nobody may change a
``final`` principle, and the top-level priorities and conflict rules may not rank one
below another principle. Each violation is an error naming both spans.
"""

from __future__ import annotations

from cai_dsl.core.source import Span
from cai_dsl.diagnostics import Diagnostic, Related, rules
from cai_dsl.lang import ast


class Authority:
    """The merged ``authority`` declaration of a scope and the permission checks over it."""

    def __init__(self, decls: list[ast.AuthorityDecl], principles: dict[str, ast.Principle], diagnostics: list[Diagnostic]):
        self.diagnostics = diagnostics
        self.principles = principles
        self.decl: ast.AuthorityDecl | None = decls[0] if decls else None
        self.levels: tuple[str, ...] = tuple(v.name for v in self.decl.levels) if self.decl else ()
        for other in decls[1:]:
            if tuple(v.name for v in other.levels) != self.levels:
                diagnostics.append(
                    rules.INVALID_AUTHORITY(
                        "a second, different `authority` declaration",
                        other.span,
                        related=[Related(span=self.decl.span, message="first declared here")],
                        help="declare the levels once (identical declarations in imported files merge)",
                    )
                )
        if len(set(self.levels)) != len(self.levels):
            diagnostics.append(rules.INVALID_AUTHORITY("an authority level is listed twice", self.decl.span))
        self.ranks: dict[str, int] = {}
        for pid, principle in principles.items():
            if principle.final is not None and principle.authority is not None:
                diagnostics.append(
                    rules.INVALID_AUTHORITY(
                        f"final principle `{pid}` cannot also have an `authority`",
                        principle.authority.span,
                        related=[Related(span=principle.final.span, message="marked final here")],
                        help="a final principle may be changed by no deployment: remove one of the two",
                    )
                )
            elif principle.authority is not None:
                rank = self.level(principle.authority)
                if rank:
                    self.ranks[pid] = rank

    def level(self, ident: ast.Ident) -> int | None:
        """The rank of a level name (0 is the highest), or None (reported) when undeclared."""
        if ident.name in self.levels:
            return self.levels.index(ident.name)
        declared = ", ".join(self.levels) if self.levels else "none (add `authority A > B > ...`)"
        self.diagnostics.append(
            rules.UNDEFINED_AUTHORITY_LEVEL(
                f"undefined authority level `{ident.name}`", ident.span, help=f"declared levels: {declared}"
            )
        )
        return None

    def name(self, rank: int) -> str:
        return self.levels[rank] if rank < len(self.levels) else "highest"

    def rank(self, pid: str) -> int:
        return self.ranks.get(pid, 0)

    def check_change(
        self,
        deployment: str,
        level: int,
        level_span: Span,
        pid: str,
        what: str,
        span: Span,
        locked: dict[str, tuple[str, Span]],
    ) -> None:
        """Report ``deployment`` (at ``level``) doing ``what`` to ``pid`` at ``span`` if it may not."""
        principle = self.principles.get(pid)
        if principle is None:
            return
        if principle.final is not None:
            reason, related = f"`{pid}` is final", Related(span=principle.final.span, message="marked final here")
        elif pid in locked:
            by, lock_span = locked[pid]
            reason, related = f"`{pid}` is locked by `{by}`", Related(span=lock_span, message="locked here")
        elif self.rank(pid) < level:
            where = principle.authority.span if principle.authority is not None else principle.id.span
            reason = f"`{pid}` is at level `{self.name(self.rank(pid))}`, above the deployment's `{self.name(level)}`"
            related = Related(span=where, message=f"`{pid}` may be changed from level `{self.name(self.rank(pid))}`")
        else:
            return
        self.diagnostics.append(
            rules.AUTHORITY_VIOLATION(
                f"deployment `{deployment}` {what} `{pid}`, which it may not change: {reason}",
                span,
                related=[related, Related(span=level_span, message=f"`{deployment}` is at level `{self.name(level)}`")],
                deployment=deployment,
                principles=[pid],
                help="only principles at the deployment's level or lower, neither final nor locked, may be changed",
            )
        )

    def check_top_level(self, edges: list, conflicts: list[ast.Conflict]) -> None:
        """Top-level priorities and conflict rules may not rank a final principle below another."""
        for edge in edges:
            principle = self.principles.get(edge.lower)
            higher = self.principles.get(edge.higher)
            if principle is not None and principle.final is not None and higher is not None and higher.final is None:
                self.diagnostics.append(
                    rules.AUTHORITY_VIOLATION(
                        f"`priority` ranks `{edge.higher}` above final principle `{edge.lower}`",
                        edge.span,
                        related=[Related(span=principle.final.span, message="marked final here")],
                        principles=[edge.higher, edge.lower],
                        help="a final principle may be outranked by nothing; drop it from this priority level",
                    )
                )
        for rule in conflicts:
            for final_id, other in ((rule.left.name, rule.right.name), (rule.right.name, rule.left.name)):
                principle = self.principles.get(final_id)
                rival = self.principles.get(other)
                if principle is None or principle.final is None or rival is None or rival.final is not None:
                    continue
                winners = [b.winner for b in rule.branches] + ([rule.otherwise] if rule.otherwise else [])
                for winner in winners:
                    if winner.name == other:
                        self.diagnostics.append(
                            rules.AUTHORITY_VIOLATION(
                                f"conflict rule lets `{other}` win over final principle `{final_id}`",
                                winner.span,
                                related=[Related(span=principle.final.span, message="marked final here")],
                                principles=[final_id, other],
                                help="a final principle must win every clash; pick it in every branch",
                            )
                        )
