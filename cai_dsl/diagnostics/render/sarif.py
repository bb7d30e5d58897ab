"""``--format sarif``: a SARIF 2.1.0 log for code-scanning tools."""

from __future__ import annotations

import json
from typing import Iterable

from cai_dsl.diagnostics.model import Diagnostic, Rule

_LEVEL = {"error": "error", "warning": "warning", "info": "note"}


def _region(span, full: bool) -> dict:
    region = {"startLine": span.line, "startColumn": span.column}
    if full:
        region.update(endLine=span.end_line, endColumn=span.end_column)
    return region


def _result(d: Diagnostic, index: dict[str, int]) -> dict:
    result: dict = {
        "ruleId": d.code,
        "ruleIndex": index.get(d.code, -1),
        "level": _LEVEL[d.severity],
        "message": {"text": d.message + (f" (help: {d.help})" if d.help else "")},
    }
    if d.span is not None and d.span.line > 0:
        result["locations"] = [
            {"physicalLocation": {"artifactLocation": {"uri": d.span.file}, "region": _region(d.span, True)}}
        ]
    if d.related:
        result["relatedLocations"] = [
            {
                "id": i,
                "message": {"text": r.message},
                "physicalLocation": {"artifactLocation": {"uri": r.span.file}, "region": _region(r.span, False)},
            }
            for i, r in enumerate(d.related)
        ]
    props: dict = {}
    if d.deployment:
        props["deployment"] = d.deployment
    if d.witness is not None:
        props["witness"] = d.witness
    if d.principles:
        props["principles"] = list(d.principles)
    if props:
        result["properties"] = props
    return result


def render_sarif(diagnostics: Iterable[Diagnostic], rules: Iterable[Rule], tool_version: str) -> str:
    """One run of tool ``cai`` with every rule of ``rules`` and one result per diagnostic."""
    rule_list = sorted(rules, key=lambda r: r.code)
    index = {r.code: i for i, r in enumerate(rule_list)}
    driver = {
        "name": "cai",
        "version": tool_version,
        "rules": [
            {
                "id": r.code,
                "name": r.name,
                "shortDescription": {"text": r.summary},
                "helpUri": r.doc,
                "defaultConfiguration": {"level": _LEVEL[r.severity]},
            }
            for r in rule_list
        ],
    }
    log = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{"tool": {"driver": driver}, "results": [_result(d, index) for d in diagnostics]}],
    }
    return json.dumps(log, indent=2, ensure_ascii=False)
