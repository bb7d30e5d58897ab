"""Building blocks of the IR: frozen model bases, source locations, canonical JSON."""

from __future__ import annotations

from typing import Annotated, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, model_serializer

from cai_dsl.core.hashing import canonical_json, sha256_text

from cai_dsl.core.gc import gc_paused

__all__ = ["Compact", "Frozen", "LOC_PATTERN", "Loc", "SourceLoc", "canonical_json", "gc_paused", "sha256_text"]


class Frozen(BaseModel):
    """A frozen pydantic model that rejects unknown fields (every IR section is one)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Compact(Frozen):
    """Serialised without its null and empty fields (they are the defaults)."""

    @model_serializer(mode="wrap")
    def _compact(self, handler):
        data = handler(self)
        return {k: v for k, v in data.items() if v is not None and v != [] and v != ()}


LOC_PATTERN = r"^.+:\d+:\d+-\d+:\d+$"
Loc = Annotated[str, Field(pattern=LOC_PATTERN)]
"""A source location as ``file:line:column-end_line:end_column`` (1-based, end exclusive); ``file``
is relative to the root file's directory, with ``/`` separators. Compact on purpose: a large
program has tens of thousands of them. :meth:`SourceLoc.parse` reads one."""


class SourceLoc(NamedTuple):
    """A parsed :data:`Loc`."""

    file: str
    line: int
    column: int
    end_line: int
    end_column: int

    @classmethod
    def parse(cls, loc: str) -> "SourceLoc":
        head, end = loc.rsplit("-", 1)
        file, line, column = head.rsplit(":", 2)
        end_line, end_column = end.split(":")
        return cls(file, int(line), int(column), int(end_line), int(end_column))

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}-{self.end_line}:{self.end_column}"

