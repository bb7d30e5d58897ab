"""``--format json``: ``{"diagnostics": [...], "summary": {...}}``."""

from __future__ import annotations

import json
from typing import Iterable

from cai_dsl.diagnostics.model import Diagnostic, summarize


def render_json(diagnostics: Iterable[Diagnostic]) -> str:
    """The diagnostics as flat JSON objects (:meth:`Diagnostic.to_json`) with their summary."""
    diagnostics = list(diagnostics)
    return json.dumps(
        {"diagnostics": [d.to_json() for d in diagnostics], "summary": summarize(diagnostics)},
        indent=2,
        ensure_ascii=False,
    )
