"""One renderer per output format, behind one registry (:data:`FORMATS`, name -> renderer).

Every renderer takes the (sorted) diagnostics and a :class:`RenderContext` and returns
the text to print; ``cai``'s ``--format`` options are checked against :data:`FORMATS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable, Mapping, Sequence

from cai_dsl.diagnostics.model import Diagnostic, Rule
from cai_dsl.diagnostics.render.github import render_github
from cai_dsl.diagnostics.render.json import render_json
from cai_dsl.diagnostics.render.sarif import render_sarif
from cai_dsl.diagnostics.render.text import render_text

__all__ = ["FORMATS", "Format", "RenderContext", "render", "render_github", "render_json", "render_sarif", "render_text"]


@dataclass(frozen=True)
class RenderContext:
    """What a renderer may need besides the diagnostics."""

    sources: Mapping[str, str] = field(default_factory=dict)
    rules: Sequence[Rule] = ()
    tool_version: str = ""


@dataclass(frozen=True)
class Format:
    """An output format: its name, a one-line description and its renderer."""

    name: str
    description: str
    render: Callable[[Sequence[Diagnostic], RenderContext], str]


FORMATS: Mapping[str, Format] = MappingProxyType(
    {
        f.name: f
        for f in (
            Format("text", "ruff-style text with source carets", lambda ds, ctx: render_text(ds, ctx.sources)),
            Format("json", "one JSON object with the diagnostics and a summary", lambda ds, ctx: render_json(ds)),
            Format(
                "sarif",
                "SARIF 2.1.0 for code scanning",
                lambda ds, ctx: render_sarif(ds, ctx.rules, ctx.tool_version),
            ),
            Format("github", "GitHub Actions workflow commands", lambda ds, ctx: render_github(ds)),
        )
    }
)


def render(fmt: str, diagnostics: Sequence[Diagnostic], context: RenderContext | None = None) -> str:
    """Render with the format named ``fmt`` (a key of :data:`FORMATS`; KeyError otherwise)."""
    return FORMATS[fmt].render(diagnostics, context or RenderContext())
