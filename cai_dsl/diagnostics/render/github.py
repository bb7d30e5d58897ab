"""``--format github``: GitHub Actions workflow commands (``::error file=..,line=..::msg``)."""

from __future__ import annotations

from typing import Iterable

from cai_dsl.diagnostics.model import Diagnostic

_LEVEL = {"error": "error", "warning": "warning", "info": "notice"}


def render_github(diagnostics: Iterable[Diagnostic]) -> str:
    """One workflow command per diagnostic."""
    lines = []
    for d in diagnostics:
        loc = ""
        if d.span is not None and d.span.line > 0:
            s = d.span
            loc = f" file={s.file},line={s.line},col={s.column},endLine={s.end_line},endColumn={s.end_column},"
            loc = loc.rstrip(",")
        msg = f"{d.code} {d.name}: {d.message}".replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
        lines.append(f"::{_LEVEL[d.severity]}{loc}::{msg}")
    return "\n".join(lines)
