"""The scripting API behind ``cai_dsl.load`` (``cai_dsl.check`` and ``cai_dsl.compile`` are the callable
stage packages :mod:`cai_dsl.check` and :mod:`cai_dsl.compile`)."""

from __future__ import annotations

import os
from typing import Mapping

from cai_dsl.diagnostics import Diagnostic, DiagnosticError
from cai_dsl.lang.resolver import Constitution, resolve

__all__ = ["LoadError", "load"]


class LoadError(DiagnosticError):
    """The file does not parse or resolve; ``diagnostics`` (errors only) and ``sources`` are for printing."""

    def __init__(self, diagnostics: list[Diagnostic], sources: Mapping[str, str]):
        super().__init__(diagnostics)
        self.sources = dict(sources)


def load(path: str | os.PathLike[str]) -> Constitution:
    """Parse and resolve a `.const` file (imports, ``extends``, selectors); raises :class:`LoadError` on errors."""
    constitution = resolve(os.fspath(path))
    errors = [d for d in constitution.diagnostics if d.is_error]
    if errors:
        raise LoadError(errors, constitution.sources)
    return constitution
