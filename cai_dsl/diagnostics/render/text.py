"""Ruff-style text: ``severity[CODE] name: message``, ``--> file:line:col``, the source
line with carets, then witness, notes and help."""

from __future__ import annotations

from typing import Iterable, Mapping

from cai_dsl.diagnostics.model import Diagnostic


#: Text output shows at most this many diagnostics (then a count); JSON and SARIF show every one.
MAX_SHOWN = 500


class _Lines:
    """Source lines split once per file, on ``\n`` only (the parser's line numbering: a form feed,
    U+2028 or U+0085 inside a line does not start a new one)."""

    def __init__(self, sources: Mapping[str, str]):
        self._sources = sources
        self._split: dict[str, list[str]] = {}

    def get(self, file: str, line: int) -> str | None:
        if file not in self._split:
            text = self._sources.get(file)
            self._split[file] = [] if text is None else text.split("\n")
        lines = self._split[file]
        return lines[line - 1].rstrip("\r") if 0 < line <= len(lines) else None


def _caret_block(d: Diagnostic, lines: _Lines, label_width: int = 0) -> list[str]:
    span = d.span
    if span is None or span.line <= 0:
        return []
    raw = lines.get(span.file, span.line)
    if raw is None:
        return []
    line_text = raw
    width = max(len(str(span.line)), label_width)
    start = max(span.column - 1, 0)
    if len(line_text) > 120:  # show a window around the column of very long lines
        cut = max(start - 40, 0)
        line_text = ("..." if cut else "") + line_text[cut : cut + 100] + "..."
        start = start - cut + (3 if cut else 0)
    # tabs and control characters (a terminal escape, a form feed) print as one space each
    line_text = "".join(" " if c < " " or c == "\x7f" else c for c in line_text)
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
    """Every diagnostic as a block of lines, each block followed by an empty line."""
    out: list[str] = []
    lines = _Lines(sources)
    diagnostics = list(diagnostics)
    for d in diagnostics[:MAX_SHOWN]:
        where = f" [{d.deployment}]" if d.deployment else ""
        out.append(f"{d.severity}[{d.code}] {d.name}: {d.message}{where}")
        if d.span is not None and d.span.line > 0:
            out.append(f"  --> {d.span.file}:{d.span.line}:{d.span.column}")
        out.extend(_caret_block(d, lines))
        if d.witness:
            out.append("  = witness: " + ", ".join(f"{k}={v}" for k, v in d.witness.items()))
        for r in d.related:
            out.append(f"  = note: {r.message} at {r.span.file}:{r.span.line}:{r.span.column}")
        if d.help:
            out.append(f"  = help: {d.help}")
        out.append("")
    if len(diagnostics) > MAX_SHOWN:
        out.append(f"... and {len(diagnostics) - MAX_SHOWN} more diagnostics not shown (`--format json` lists all)")
        out.append("")
    return "\n".join(out)
