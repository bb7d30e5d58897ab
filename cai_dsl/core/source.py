"""Source locations shared by every stage."""

from __future__ import annotations

import functools

from pydantic import BaseModel, ConfigDict


@functools.cache
def _all_fields() -> set[str]:
    """The fields-set of every trusted span: one set, never changed in place (spans are frozen, and
    pydantic copies it before a ``model_copy`` update)."""
    return {"file", "line", "column", "end_line", "end_column"}


_new = object.__new__
_setattr = object.__setattr__  # a frozen model's own __setattr__ refuses


class Span(BaseModel):
    """A region of a source file; lines and columns are 1-based, end exclusive."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    file: str
    line: int
    column: int
    end_line: int
    end_column: int

    @classmethod
    def trusted(cls, file: str, line: int, column: int, end_line: int, end_column: int) -> "Span":
        """A span from values already known to be right (the parser's), without validation: what
        ``model_construct`` makes, three times faster (spans are the most numerous models)."""
        span = _new(cls)
        _setattr(span, "__dict__", {"file": file, "line": line, "column": column, "end_line": end_line, "end_column": end_column})
        _setattr(span, "__pydantic_fields_set__", _all_fields())
        _setattr(span, "__pydantic_extra__", None)
        _setattr(span, "__pydantic_private__", None)
        return span

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"
