"""The resolved constitution: the frozen models resolution hands to every later stage."""

from __future__ import annotations

import fnmatch

from pydantic import BaseModel, ConfigDict

from cai_dsl.diagnostics import Diagnostic
from cai_dsl.lang import ast
from cai_dsl.lang.settings import DeploymentSettings


def matching_deployments(pattern: str, names) -> list[str]:
    """The names ``pattern`` selects: itself, or every match of a glob, in order."""
    if "*" not in pattern:
        return [pattern] if pattern in names else []
    return [name for name in names if fnmatch.fnmatchcase(name, pattern)]


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
    authority: str | None = None  # the level of whoever writes it (None: no levels declared)
    level: int = 0  # its rank among the declared levels, 0 the highest
    level_span: ast.Span | None = None  # the `authority` line that sets the level, if any
    ranks: dict[str, int] = {}  # principle -> level rank where not 0 (the highest)
    locked: dict[str, tuple[str, ast.Span]] = {}  # principle -> (locking deployment, `lock` span)
    overrides: tuple[ast.Override, ...] = ()  # its own and its ancestors', in order of application

    def rank(self, pid: str) -> int:
        """The authority level rank of principle ``pid`` (0 the highest)."""
        return self.ranks.get(pid, 0)

    @property
    def final_ids(self) -> tuple[str, ...]:
        return tuple(p.id.name for p in self.principles if p.final is not None)

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
    authority: tuple[str, ...] = ()  # the declared levels, highest first
    # top-level examples, shared by every principle: imported files' first, then the root's, in source order
    examples: tuple[ast.Example | ast.CompareExample, ...] = ()
    deployments: dict[str, ResolvedDeployment]  # the root file's
    deployment_decls: dict[str, ast.Deployment]
    tests: tuple[ast.TestCase, ...]
    properties: tuple[ast.PropertyCase, ...]
    diagnostics: tuple[Diagnostic, ...]

    @property
    def root_file(self) -> ast.ConstitutionFile:
        return self.files[self.root]

    def deployments_for(self, case: ast.TestCase | ast.PropertyCase) -> list[str]:
        """The deployments a test or property runs in: the one it names, or every one
        its glob (``*``, ``acme*``) matches, in declaration order."""
        return matching_deployments(case.deployment.name, self.deployments)

    @property
    def has_errors(self) -> bool:
        return any(d.is_error for d in self.diagnostics)
