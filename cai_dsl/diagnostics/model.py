"""The diagnostics data model: one frozen model for every error and warning, and the
:class:`Rule` that stamps them (code, name, group, default severity, scope, summary)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal, Mapping

from pydantic import BaseModel, ConfigDict

from cai_dsl.core.errors import EXIT_DIAGNOSTICS, CaiError
from cai_dsl.core.source import Span

Severity = Literal["error", "warning", "info"]

#: How often a finding is reported when several deployments (or roots) see it:
#: ``file`` once per source location, ``deployment`` once per location and deployment.
Scope = Literal["file", "deployment"]


class Related(BaseModel):
    """A secondary location of a diagnostic."""

    model_config = ConfigDict(frozen=True)

    span: Span
    message: str


class Diagnostic(BaseModel):
    """A finding about a constitution, located in its source."""

    model_config = ConfigDict(frozen=True)

    code: str
    name: str
    severity: Severity
    message: str
    span: Span | None = None
    related: tuple[Related, ...] = ()
    help: str | None = None
    deployment: str | None = None
    principles: tuple[str, ...] = ()
    witness: dict[str, str | int] | None = None  # facet -> value name, or a number facet's number

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def sort_key(self) -> tuple:
        span = self.span
        return (span.file, span.line, span.column, self.code) if span else ("", 0, 0, self.code)

    def to_json(self) -> dict:
        """The flat JSON object of ``cai lint --format json``."""
        span = self.span
        return {
            "code": self.code,
            "name": self.name,
            "severity": self.severity,
            "message": self.message,
            "file": span.file if span else None,
            "line": span.line if span else None,
            "column": span.column if span else None,
            "end_line": span.end_line if span else None,
            "end_column": span.end_column if span else None,
            "deployment": self.deployment,
            "principles": list(self.principles),
            "witness": dict(self.witness) if self.witness is not None else None,
            "help": self.help,
            "related": [
                {"file": r.span.file, "line": r.span.line, "column": r.span.column, "message": r.message}
                for r in self.related
            ],
        }


@dataclass(frozen=True)
class Rule:
    """A diagnostic kind: stable code, kebab-case name, default severity, one-line summary,
    group (the code range it belongs to) and scope (see :data:`Scope`). Its page is
    ``docs/rules/<code>.md`` (:attr:`doc`)."""

    code: str
    name: str
    severity: Severity
    summary: str
    group: str = ""
    scope: Scope = "file"

    @property
    def doc(self) -> str:
        """The rule's documentation page, relative to the repository root."""
        return f"docs/rules/{self.code}.md"

    def __call__(
        self,
        message: str,
        span: Span | None = None,
        *,
        help: str | None = None,
        related: Iterable[Related] = (),
        deployment: str | None = None,
        principles: Iterable[str] = (),
        witness: Mapping[str, str | int] | None = None,
        severity: Severity | None = None,
    ) -> Diagnostic:
        return Diagnostic(
            code=self.code,
            name=self.name,
            severity=severity or self.severity,
            message=message,
            span=span,
            related=tuple(related),
            help=help,
            deployment=deployment,
            principles=tuple(principles),
            witness=dict(witness) if witness is not None else None,
        )


class DiagnosticError(CaiError):
    """Raised to abort a stage with diagnostics already collected (exit code 1)."""

    exit_code = EXIT_DIAGNOSTICS

    def __init__(self, diagnostics: list[Diagnostic]):
        super().__init__("; ".join(d.message for d in diagnostics))
        self.diagnostics = diagnostics


def summarize(diagnostics: Iterable[Diagnostic]) -> dict:
    """Counts per severity and per code."""
    counts = {"error": 0, "warning": 0, "info": 0}
    by_code: dict[str, int] = {}
    for d in diagnostics:
        counts[d.severity] += 1
        by_code[d.code] = by_code.get(d.code, 0) + 1
    return {"errors": counts["error"], "warnings": counts["warning"], "infos": counts["info"], "by_code": dict(sorted(by_code.items()))}
