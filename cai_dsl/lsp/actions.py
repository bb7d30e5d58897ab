"""Edits the server proposes: `cai fmt`'s layout (only when its AST check passes) and the
`priority` line that resolves an unresolved clash (CAI201)."""

from __future__ import annotations

import re

from lsprotocol import types

from cai_dsl.diagnostics import rules
from cai_dsl.lang import ast
from cai_dsl.lang.formatter import format_text
from cai_dsl.lsp.positions import LineIndex

_CLASH = re.compile(r"^`([^`]+)` and `([^`]+)` clash")


def formatting_edits(text: str, path: str, encoding: str) -> list[types.TextEdit]:
    """One edit replacing the buffer with its canonical layout; none when it does not
    parse, is already canonical, or the formatter's self-check fails."""
    result = format_text(text, path)
    if not result.ok or result.output == text:
        return []
    lines = LineIndex(text, encoding)
    whole = types.Range(start=types.Position(line=0, character=0), end=lines.end())
    return [types.TextEdit(range=whole, new_text=result.output)]


def clash_pair(diagnostic: types.Diagnostic) -> tuple[str, str] | None:
    """The two principles of an unresolved-clash diagnostic, from its data or its message."""
    if diagnostic.code != rules.CONTRADICTION.code:
        return None
    data = diagnostic.data if isinstance(diagnostic.data, dict) else {}
    pair = data.get("principles") or []
    if len(pair) == 2:
        return pair[0], pair[1]
    match = _CLASH.match(diagnostic.message)
    return (match.group(1), match.group(2)) if match else None


def _insertion(file: ast.ConstitutionFile, text: str) -> tuple[int, str, str]:
    """Where a new top-level `priority` goes (0-based line) and the text around it."""
    priorities = file.of_kind(ast.Priority)
    if priorities:
        return priorities[-1].span.end_line, "", "\n"
    deployments = file.deployments
    if deployments:
        return deployments[0].span.line - 1, "", "\n\n"
    lines = text.split("\n")
    if text and not text.endswith("\n"):
        return len(lines) - 1, "\n\n", "\n"
    return len(lines) - 1, "\n" if text.strip() else "", "\n"


def priority_actions(
    uri: str, file: ast.ConstitutionFile | None, text: str, diagnostics: list[types.Diagnostic], encoding: str
) -> list[types.CodeAction]:
    """For each unresolved clash, the two `priority` lines that resolve it (first one preferred)."""
    if file is None:
        return []
    lines = LineIndex(text, encoding)
    actions: list[types.CodeAction] = []
    for diagnostic in diagnostics:
        pair = clash_pair(diagnostic)
        if pair is None:
            continue
        row, before, after = _insertion(file, text)
        if before.startswith("\n\n") or row >= len(lines.lines):  # no final newline: append at the end
            position, before = lines.end(), before or "\n"
        else:
            position = types.Position(line=row, character=0)
        for i, (high, low) in enumerate((pair, pair[::-1])):
            edit = types.TextEdit(
                range=types.Range(start=position, end=position), new_text=f"{before}priority {high} > {low}{after}"
            )
            actions.append(
                types.CodeAction(
                    title=f"Add `priority {high} > {low}`",
                    kind=types.CodeActionKind.QuickFix,
                    diagnostics=[diagnostic],
                    is_preferred=i == 0,
                    edit=types.WorkspaceEdit(changes={uri: [edit]}),
                )
            )
    return actions
