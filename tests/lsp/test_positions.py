"""Parser columns (code points) to LSP positions in each negotiated encoding, and back."""

from __future__ import annotations

import pytest
from lsprotocol import types

from cai_dsl.core.source import Span
from cai_dsl.lsp.positions import LineIndex

TEXT = 'behavior a "\U0001f600é"  # x\fy\u2028z\nnext'


@pytest.mark.parametrize("encoding, units", [("utf-16", 16), ("utf-8", 19), ("utf-32", 15)])
def test_column_after_astral_and_accented_characters(encoding, units):
    lines = LineIndex(TEXT, encoding)
    # column 16 (1-based, code points) is just after the closing quote
    assert lines.position(1, 16) == types.Position(line=0, character=units)
    assert lines.point(types.Position(line=0, character=units)) == (1, 16)


def test_only_newline_starts_a_line():
    lines = LineIndex(TEXT)
    assert len(lines.lines) == 2
    assert lines.range(Span(file="f", line=2, column=1, end_line=2, end_column=5)).start.line == 1


def test_out_of_range_and_missing_spans_are_clamped():
    lines = LineIndex("ab\ncd")
    assert lines.position(9, 9) == types.Position(line=1, character=2)
    assert lines.range(None).start == types.Position(line=0, character=0)
    backwards = Span(file="f", line=2, column=2, end_line=1, end_column=1)
    rng = lines.range(backwards)
    assert rng.end == rng.start
    assert lines.offset(types.Position(line=1, character=1)) == 4
    assert lines.end() == types.Position(line=1, character=2)
