"""Source spans (1-based lines and code-point columns, as the parser reports them) to LSP
positions (0-based lines, columns in the negotiated encoding's code units) and back.

Lines are split on ``\\n`` only, as the parser and the LSP specification count them
(a form feed or U+2028 inside a line does not start a new one).
"""

from __future__ import annotations

from lsprotocol import types

from cai_dsl.core.source import Span


def _units(text: str, encoding: str) -> int:
    if encoding == "utf-8":
        return len(text.encode("utf-8", "surrogatepass"))
    if encoding == "utf-32":
        return len(text)
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


class LineIndex:
    """Converts between parser columns and LSP positions for one text."""

    def __init__(self, text: str, encoding: str = "utf-16"):
        self.lines = text.split("\n")
        self.encoding = str(encoding or "utf-16")

    def position(self, line: int, column: int) -> types.Position:
        """The LSP position of 1-based ``line`` and code-point ``column`` (clamped to the text)."""
        row = min(max(line - 1, 0), len(self.lines) - 1)
        text = self.lines[row]
        col = min(max(column - 1, 0), len(text))
        return types.Position(line=row, character=_units(text[:col], self.encoding))

    def range(self, span: Span | None) -> types.Range:
        """The LSP range of a span; a missing or generated span is the file's first character."""
        if span is None or span.line <= 0:
            start = types.Position(line=0, character=0)
            return types.Range(start=start, end=start)
        start = self.position(span.line, span.column)
        end = self.position(span.end_line, span.end_column)
        if (end.line, end.character) < (start.line, start.character):
            end = start
        return types.Range(start=start, end=end)

    def point(self, position: types.Position) -> tuple[int, int]:
        """The 1-based line and code-point column of an LSP position."""
        row = min(max(position.line, 0), len(self.lines) - 1)
        text = self.lines[row]
        units = 0
        for i, ch in enumerate(text):
            if units >= position.character:
                return row + 1, i + 1
            units += _units(ch, self.encoding)
        return row + 1, len(text) + 1

    def offset(self, position: types.Position) -> int:
        """The code-point offset of an LSP position in the text."""
        line, column = self.point(position)
        return sum(len(t) + 1 for t in self.lines[: line - 1]) + column - 1

    def end(self) -> types.Position:
        """The position just after the last character."""
        return types.Position(line=len(self.lines) - 1, character=_units(self.lines[-1], self.encoding))
