"""Prompt templates: structured concatenation of literal parts and named slots (no format strings).

Slot values are inserted verbatim, never interpreted (no ``str.format``, no Jinja), so ``{``,
``}``, ``{{ }}``, ``{%``, ``$`` in principle text, prompts or responses are plain characters;
callers neutralise control tokens in them first (:mod:`cai_dsl.compile.escaping`). The compiler's
built-in templates (the paper's request and multiple-choice formats) are defined here too.
"""

from __future__ import annotations

from typing import Mapping

from cai_dsl.compile.base import Compact, Frozen

__all__ = [
    "CLASSIFIER_INTRO",
    "CLASSIFIER_TEMPLATE",
    "COMPARISON_INTRO",
    "COMPARISON_TEMPLATE",
    "CRITIQUE_REQUEST_PREFIX",
    "REVISION_REQUEST_PREFIX",
    "REVISION_TEMPLATE",
    "Template",
    "TemplatePart",
    "critique_template",
    "template",
]


class TemplatePart(Compact):
    """A literal piece of text (fixed by the compiler) or a named slot, never both."""

    text: str | None = None
    slot: str | None = None


class Template(Frozen):
    """Structured concatenation of literal parts and slots (no format strings)."""

    parts: tuple[TemplatePart, ...]

    @property
    def slots(self) -> tuple[str, ...]:
        return tuple(p.slot for p in self.parts if p.slot is not None)

    def render(self, values: Mapping[str, str]) -> str:
        """Join the parts; each slot's value is inserted verbatim (callers neutralise it first)."""
        out: list[str] = []
        for part in self.parts:
            if part.slot is not None:
                value = values[part.slot]
                if not isinstance(value, str):
                    raise TypeError(f"slot `{part.slot}` needs text, got {type(value).__name__}")
                out.append(value)
            else:
                out.append(part.text or "")
        return "".join(out)

    def display(self) -> str:
        """A human-readable form, slots shown as ``[SLOT]`` (for docs and `cai compile --explain`)."""
        return "".join(f"[{p.slot.upper()}]" if p.slot is not None else (p.text or "") for p in self.parts)


def template(*pieces: str | tuple[str]) -> Template:
    """Build a Template: plain strings are literal text, 1-tuples ``("slot",)`` are slots."""
    parts = []
    for piece in pieces:
        if isinstance(piece, tuple):
            parts.append(TemplatePart(slot=piece[0]))
        else:
            parts.append(TemplatePart(text=piece))
    return Template(parts=tuple(parts))


# ---------------------------------------------------------------- the built-in templates

CRITIQUE_REQUEST_PREFIX = "CritiqueRequest: "
REVISION_REQUEST_PREFIX = "RevisionRequest: "
COMPARISON_INTRO = "Consider the following conversation between a human and an assistant:\n\n"
CLASSIFIER_INTRO = "Read the request below and answer one question about it.\n\nRequest:\n"


def critique_template(stop) -> Template:
    """The critique request; with the stop rule's instruction when it is enabled (``stop``: a StopRule)."""
    if stop.enabled:
        return template(CRITIQUE_REQUEST_PREFIX, ("critique",), "\n" + stop.instruction)
    return template(CRITIQUE_REQUEST_PREFIX, ("critique",))


REVISION_TEMPLATE = template(REVISION_REQUEST_PREFIX, ("revise",))
COMPARISON_TEMPLATE = template(
    COMPARISON_INTRO,
    ("conversation",),
    "\n\n",
    ("principle",),
    "\nOptions:\n(A) ",
    ("response_a",),
    "\n(B) ",
    ("response_b",),
)
CLASSIFIER_TEMPLATE = template(CLASSIFIER_INTRO, ("prompt",), "\n\nQuestion: ", ("question",))
