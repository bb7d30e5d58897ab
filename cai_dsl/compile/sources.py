"""Source files of a compiled program: locations relative to the root file, and the source hash."""

from __future__ import annotations

import hashlib
import os

from cai_dsl.core.hashing import sha256_text
from cai_dsl.lang import ast
from cai_dsl.lang.resolver import Constitution

__all__ = ["Locator", "source_hash"]


class Locator:
    """Spans -> source locations relative to the root file's directory (cached per file string)."""

    def __init__(self, root: str):
        self.base = os.path.dirname(os.path.abspath(root))
        self.cache: dict[str, str] = {}

    def rel(self, file: str) -> str:
        r = self.cache.get(file)
        if r is None:
            if file.startswith("<"):
                r = file
            else:
                r = os.path.relpath(os.path.abspath(file), self.base).replace(os.sep, "/")
            self.cache[file] = r
        return r

    def loc(self, span: ast.Span | None) -> str | None:
        if span is None or span.line <= 0:
            return None
        return f"{self.rel(span.file)}:{span.line}:{span.column}-{span.end_line}:{span.end_column}"


def source_hash(constitution: Constitution) -> tuple[str, list[tuple[str, str]]]:
    """sha256 over the sorted (relative path, text) of all loaded files, and each file's own sha256.

    Each path and text is length-prefixed, so no two different file sets hash alike; paths are
    relative to the root file's directory, so the hash does not depend on the checkout location.
    """
    locator = Locator(constitution.root)
    pairs = sorted((locator.rel(path), text) for path, text in constitution.sources.items())
    h = hashlib.sha256()
    for rel, text in pairs:
        for part in (rel.encode("utf-8"), text.encode("utf-8")):
            h.update(len(part).to_bytes(8, "big"))
            h.update(part)
    return h.hexdigest(), [(rel, sha256_text(text)) for rel, text in pairs]
