"""Diagnostics and spans as LSP objects: the same codes, ranges and help text as `cai lint`.

A diagnostic located in an imported file is shown on the `import` statement that loads
it, with the real location as related information.
"""

from __future__ import annotations

import os

from lsprotocol import types
from pygls.uris import from_fs_path

from cai_dsl.core.source import Span
from cai_dsl.diagnostics import Diagnostic
from cai_dsl.lsp.analysis import Analysis
from cai_dsl.lsp.positions import LineIndex

_SEVERITY = {
    "error": types.DiagnosticSeverity.Error,
    "warning": types.DiagnosticSeverity.Warning,
    "info": types.DiagnosticSeverity.Information,
}
_UNNECESSARY = frozenset({"CAI112", "CAI113", "CAI205", "CAI207"})


def uri_of(path: str) -> str:
    return from_fs_path(path) or path


class Converter:
    """Spans of one analysis (its buffer and every file it loaded) to LSP ranges."""

    def __init__(self, analysis: Analysis, encoding: str = "utf-16"):
        self.analysis = analysis
        self.encoding = encoding
        self.sources = dict(analysis.constitution.sources) if analysis.constitution else {}
        self.sources[analysis.path] = analysis.text
        self._lines: dict[str, LineIndex] = {}

    def lines(self, path: str) -> LineIndex:
        if path not in self._lines:
            text = self.sources.get(path)
            if text is None:
                try:
                    with open(path, encoding="utf-8", errors="replace") as handle:
                        text = handle.read(4 * 2**20)
                except OSError:
                    text = ""
            self._lines[path] = LineIndex(text, self.encoding)
        return self._lines[path]

    def range(self, span: Span | None) -> types.Range:
        return self.lines(span.file if span else self.analysis.path).range(span)

    def location(self, span: Span) -> types.Location:
        return types.Location(uri=uri_of(span.file), range=self.range(span))

    def diagnostic(self, d: Diagnostic, anchors: dict[str, Span]) -> types.Diagnostic:
        """One LSP diagnostic; ``anchors`` maps imported files to the root's import statement."""
        message = d.message + (f" [{d.deployment}]" if d.deployment else "")
        related = [types.DiagnosticRelatedInformation(self.location(r.span), r.message) for r in d.related]
        span = d.span
        if span is not None and span.file != self.analysis.path:
            where = f"{os.path.relpath(span.file, os.path.dirname(self.analysis.path))}:{span.line}:{span.column}"
            message = f"in imported file {where}: {message}"
            related.insert(0, types.DiagnosticRelatedInformation(self.location(span), d.message))
            span = anchors.get(span.file)
        if d.witness:
            message += "\nwitness: " + ", ".join(f"{k}={v}" for k, v in d.witness.items())
        if d.help:
            message += f"\nhelp: {d.help}"
        return types.Diagnostic(
            range=self.range(span) if span is not None else self.lines(self.analysis.path).range(None),
            message=message,
            severity=_SEVERITY.get(d.severity, types.DiagnosticSeverity.Information),
            code=d.code,
            source="cai",
            related_information=related or None,
            tags=[types.DiagnosticTag.Unnecessary] if d.code in _UNNECESSARY else None,
            data={"name": d.name, "deployment": d.deployment, "principles": list(d.principles), "help": d.help},
        )
