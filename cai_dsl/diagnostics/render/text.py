"""Ruff-style text: ``severity[CODE] name: message``, ``--> file:line:col``, the source
line with carets, then witness, notes and help."""

from __future__ import annotations

from typing import Iterable, Mapping

from cai_dsl.diagnostics.model import Diagnostic


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
    """Every diagnostic as a block of lines, each block followed by an empty line."""
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
