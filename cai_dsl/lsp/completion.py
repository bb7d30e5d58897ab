"""Completion: keywords of the grammar, facet values, behavior, principle, facet,
deployment and authority level names, chosen by the words just before the cursor (the
buffer may not parse)."""

from __future__ import annotations

import functools
import re

from lsprotocol import types

from cai_dsl.lang.grammar import lark_parser
from cai_dsl.lang.settings import known_settings
from cai_dsl.lsp.index import SymbolIndex

_WORD = re.compile(r"[\w.#*]*$")
_VALUE = re.compile(r"(\w+)\s*(?:==|!=|<=|>=|<|>)\s*$|(\w+)\s+(?:not\s+)?in\s*\{[^}]*$")
_BEHAVIOR = re.compile(r"\b(?:require|forbid|prefer|exclusive)\s+(?:[\w.]+\s*,\s*)*$")
_PRINCIPLE = re.compile(
    r"(?:\b(?:priority|include|exclude|lock|conflict|vs|override|winner|over|active|otherwise)\s+|[>:=]\s*)"
    r"(?:[\w.#*]+\s*,\s*)*$"
)
_DEPLOYMENT = re.compile(r"\bextends\s+$|^\s*(?:test|property)\s+\"[^\"]*\"\s+in\s+$")
_FACET = re.compile(r"(?:\b(?:when|assume|given|forall|and|or|not)\s+|\(\s*)$")
_SETTING = re.compile(r"^\s*set\s+$")
_AUTHORITY = re.compile(r"\bauthority\s+(?:\w+\s*>\s*)*$")
_DOMAIN = re.compile(r"^\s*facet\s+\w+\s*:\s*$")  # `number [LOW .. HIGH]` or the values


@functools.lru_cache(maxsize=1)
def keywords() -> tuple[str, ...]:
    """Every keyword of the grammar (its alphabetic literal terminals)."""
    words = {t.pattern.value for t in lark_parser().terminals if t.pattern.type == "str"}
    return tuple(sorted(w for w in words if w.isalpha()))


def _items(names, kind: types.CompletionItemKind, detail: str) -> list[types.CompletionItem]:
    return [types.CompletionItem(label=n, kind=kind, detail=detail) for n in dict.fromkeys(names)]


def complete(prefix: str, index: SymbolIndex | None) -> list[types.CompletionItem]:
    """Candidates for the cursor after ``prefix`` (the text of its line before the cursor)."""
    before = prefix[: len(prefix) - len(_WORD.search(prefix).group(0))]
    K = types.CompletionItemKind
    names = (lambda kind: index.names(kind)) if index is not None else (lambda kind: [])
    if _AUTHORITY.search(before):
        return _items(names("authority"), K.EnumMember, "authority level")
    value = _VALUE.search(before)
    if value:
        facet = value.group(1) or value.group(2)
        values = [k[2] for k in (o.key for o in index.occurrences) if k[:2] == ("value", facet)] if index else []
        return _items(values, K.EnumMember, f"value of {facet}")
    if _DOMAIN.search(before):
        return [types.CompletionItem(label="number", kind=K.Keyword, detail="whole numbers: number [LOW .. HIGH]")]
    if _SETTING.search(before):
        return [types.CompletionItem(label=k, kind=K.Property, detail=d) for k, d in known_settings().items()]
    if _BEHAVIOR.search(before):
        return _items(names("behavior"), K.Event, "behavior")
    if _DEPLOYMENT.search(before):
        return _items(names("deployment"), K.Module, "deployment")
    if _PRINCIPLE.search(before):
        return _items(names("principle"), K.Function, "principle") + _items(names("group"), K.Class, "group")
    if _FACET.search(before):
        return _items(names("facet"), K.Enum, "facet") + _items(("not", "true", "false"), K.Keyword, "keyword")
    out = _items(keywords(), K.Keyword, "keyword")
    for kind, item_kind in (("principle", K.Function), ("behavior", K.Event), ("facet", K.Enum)):
        out += _items(names(kind), item_kind, kind)
    return out
