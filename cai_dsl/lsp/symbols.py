"""The outline of a buffer (textDocument/documentSymbol): its declarations, nested."""

from __future__ import annotations

from lsprotocol import types

from cai_dsl.lang import ast
from cai_dsl.lsp.convert import Converter

K = types.SymbolKind


def _symbol(convert: Converter, name: str, kind, node: ast.Node, name_node: ast.Node, detail=None, children=None):
    full = convert.range(node.span)
    selection = convert.range(name_node.span)
    if (selection.start.line, selection.start.character) < (full.start.line, full.start.character):
        selection = full
    return types.DocumentSymbol(
        name=name or "?", kind=kind, range=full, selection_range=selection, detail=detail, children=children or None
    )


def _item_symbol(convert: Converter, item) -> types.DocumentSymbol | None:
    if isinstance(item, ast.Facet):
        values = [_symbol(convert, v.name, K.EnumMember, v, v) for v in item.values]
        detail = (" < " if item.ordered else " | ").join(v.name for v in item.values)
        if item.bounds is not None:
            detail = f"number [{item.bounds.low.value} .. {item.bounds.high.value}]"
        return _symbol(convert, item.name.name, K.Enum, item, item.name, detail, values)
    if isinstance(item, ast.Behavior):
        detail = item.description.value if item.description else None
        return _symbol(convert, item.name.name, K.Event, item, item.name, detail)
    if isinstance(item, ast.Principle):
        text = item.compare or item.critique or item.revise
        return _symbol(convert, item.id.name, K.Function, item, item.id, text.value if text else None)
    if isinstance(item, ast.Group):
        return _symbol(convert, item.name.name, K.Array, item, item.name)
    if isinstance(item, ast.Conflict):
        return _symbol(convert, f"{item.left.name} vs {item.right.name}", K.Operator, item, item.left, "conflict")
    if isinstance(item, ast.Deployment):
        children = [
            _symbol(convert, sub.target.name, K.Method, sub, sub.target, "override")
            for sub in item.items
            if isinstance(sub, ast.Override)
        ]
        detail = f"extends {item.extends.name}" if item.extends else None
        return _symbol(convert, item.name.name, K.Module, item, item.name, detail, children)
    if isinstance(item, (ast.TestCase, ast.PropertyCase)):
        kind = "test" if isinstance(item, ast.TestCase) else "property"
        return _symbol(convert, item.name.value, K.Method, item, item.name, f"{kind} in {item.deployment.name}")
    if isinstance(item, ast.Import):
        return _symbol(convert, item.path.value, K.File, item, item.path, "import")
    if isinstance(item, ast.Header):
        return _symbol(convert, item.name.value, K.Package, item, item.name, "constitution")
    return None


def document_symbols(file: ast.ConstitutionFile, convert: Converter) -> list[types.DocumentSymbol]:
    """One symbol per declaration of ``file`` (facet values and overrides nested)."""
    return [s for s in (_item_symbol(convert, item) for item in file.items) if s is not None]
