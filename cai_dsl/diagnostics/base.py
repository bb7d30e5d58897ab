"""Diagnostics: one model for every error and warning, a rule registry with stable
codes, and renderers (ruff-style text, JSON, SARIF 2.1.0, GitHub annotations)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable, Literal, Mapping

from pydantic import BaseModel, ConfigDict

from cai_dsl.core.source import Span

Severity = Literal["error", "warning", "info"]


class Related(BaseModel):
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
    witness: dict[str, str] | None = None

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
    """A diagnostic kind: stable code, kebab-case name, default severity, one-line summary."""

    code: str
    name: str
    severity: Severity
    summary: str

    def __call__(
        self,
        message: str,
        span: Span | None = None,
        *,
        help: str | None = None,
        related: Iterable[Related] = (),
        deployment: str | None = None,
        principles: Iterable[str] = (),
        witness: Mapping[str, str] | None = None,
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


class DiagnosticError(Exception):
    """Raised to abort a stage with diagnostics already collected."""

    def __init__(self, diagnostics: list[Diagnostic]):
        super().__init__("; ".join(d.message for d in diagnostics))
        self.diagnostics = diagnostics


# ---------------------------------------------------------------- rendering


def _caret_block(d: Diagnostic, sources: Mapping[str, str], label_width: int = 0) -> list[str]:
    span = d.span
    if span is None or span.line <= 0:
        return []
    text = sources.get(span.file)
    if text is None:
        return []
    lines = text.splitlines()
    if span.line > len(lines):
        return []
    line_text = lines[span.line - 1].replace("\t", " ")
    width = max(len(str(span.line)), label_width)
    start = max(span.column - 1, 0)
    if len(line_text) > 120:  # show a window around the column of very long lines
        cut = max(start - 40, 0)
        line_text = ("..." if cut else "") + line_text[cut : cut + 100] + "..."
        start = start - cut + (3 if cut else 0)
    if span.end_line == span.line and span.end_column > span.column:
        length = span.end_column - span.column
    else:
        length = max(len(line_text) - start, 1)
    length = min(length, max(len(line_text) - start, 1))
    pad = " " * width
    return [
        f"{pad} |",
        f"{span.line:>{width}} | {line_text}",
        f"{pad} | {' ' * start}{'^' * max(length, 1)}",
        f"{pad} |",
    ]


def render_text(diagnostics: Iterable[Diagnostic], sources: Mapping[str, str]) -> str:
    """Ruff-style: ``CODE name: message``, ``--> file:line:col``, source with carets, ``help:``."""
    out: list[str] = []
    for d in diagnostics:
        where = f" [{d.deployment}]" if d.deployment else ""
        out.append(f"{d.severity}[{d.code}] {d.name}: {d.message}{where}")
        if d.span is not None and d.span.line > 0:
            out.append(f"  --> {d.span.file}:{d.span.line}:{d.span.column}")
        out.extend(_caret_block(d, sources))
        if d.witness:
            out.append("  = witness: " + ", ".join(f"{k}={v}" for k, v in d.witness.items()))
        for r in d.related:
            out.append(f"  = note: {r.message} at {r.span.file}:{r.span.line}:{r.span.column}")
        if d.help:
            out.append(f"  = help: {d.help}")
        out.append("")
    return "\n".join(out)


def summarize(diagnostics: list[Diagnostic]) -> dict:
    counts = {"error": 0, "warning": 0, "info": 0}
    for d in diagnostics:
        counts[d.severity] += 1
    by_code: dict[str, int] = {}
    for d in diagnostics:
        by_code[d.code] = by_code.get(d.code, 0) + 1
    return {"errors": counts["error"], "warnings": counts["warning"], "infos": counts["info"], "by_code": dict(sorted(by_code.items()))}


def render_json(diagnostics: list[Diagnostic]) -> str:
    return json.dumps(
        {"diagnostics": [d.to_json() for d in diagnostics], "summary": summarize(diagnostics)},
        indent=2,
        ensure_ascii=False,
    )


def render_github(diagnostics: Iterable[Diagnostic]) -> str:
    """GitHub Actions workflow commands (``::error file=..,line=..::msg``)."""
    lines = []
    for d in diagnostics:
        level = {"error": "error", "warning": "warning", "info": "notice"}[d.severity]
        loc = ""
        if d.span is not None and d.span.line > 0:
            s = d.span
            loc = f" file={s.file},line={s.line},col={s.column},endLine={s.end_line},endColumn={s.end_column},"
            loc = loc.rstrip(",")
        msg = f"{d.code} {d.name}: {d.message}".replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
        lines.append(f"::{level}{loc}::{msg}")
    return "\n".join(lines)


def render_sarif(diagnostics: list[Diagnostic], rules: Iterable[Rule], tool_version: str) -> str:
    """SARIF 2.1.0 log for code-scanning tools."""
    rule_list = sorted(rules, key=lambda r: r.code)
    index = {r.code: i for i, r in enumerate(rule_list)}
    level = {"error": "error", "warning": "warning", "info": "note"}
    results = []
    for d in diagnostics:
        result: dict = {
            "ruleId": d.code,
            "ruleIndex": index.get(d.code, -1),
            "level": level[d.severity],
            "message": {"text": d.message + (f" (help: {d.help})" if d.help else "")},
        }
        if d.span is not None and d.span.line > 0:
            result["locations"] = [
                {
                    "physicalLocation": {
                        "artifactLocation": {"uri": d.span.file},
                        "region": {
                            "startLine": d.span.line,
                            "startColumn": d.span.column,
                            "endLine": d.span.end_line,
                            "endColumn": d.span.end_column,
                        },
                    }
                }
            ]
        if d.related:
            result["relatedLocations"] = [
                {
                    "id": i,
                    "message": {"text": r.message},
                    "physicalLocation": {
                        "artifactLocation": {"uri": r.span.file},
                        "region": {"startLine": r.span.line, "startColumn": r.span.column},
                    },
                }
                for i, r in enumerate(d.related)
            ]
        props = {}
        if d.deployment:
            props["deployment"] = d.deployment
        if d.witness is not None:
            props["witness"] = d.witness
        if d.principles:
            props["principles"] = list(d.principles)
        if props:
            result["properties"] = props
        results.append(result)
    log = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "cai",
                        "version": tool_version,
                        "rules": [
                            {
                                "id": r.code,
                                "name": r.name,
                                "shortDescription": {"text": r.summary},
                                "helpUri": f"docs/rules/{r.code}.md",
                                "defaultConfiguration": {"level": level[r.severity]},
                            }
                            for r in rule_list
                        ],
                    }
                },
                "results": results,
            }
        ],
    }
    return json.dumps(log, indent=2, ensure_ascii=False)
