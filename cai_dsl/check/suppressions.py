"""``# cai: ignore[CODE, ...]`` comments: the regions they cover and the diagnostics they hide.

A comment on the line before a declaration covers the whole declaration; a trailing
comment, or one before a line that starts no declaration, covers that line. A finding
is hidden when its span, or the span of one of its principles, lies in a region that
names its code or rule name. Errors that leave the file meaningless (input, syntax, names;
:func:`~cai_dsl.diagnostics.rules.unsuppressible`) are never hidden.
"""

from __future__ import annotations

import re
from typing import Iterable

from cai_dsl.diagnostics import Diagnostic
from cai_dsl.diagnostics.rules import unsuppressible
from cai_dsl.lang import ast
from cai_dsl.lang.resolver import Constitution

#: A span and the codes (or rule names) suppressed in it.
Region = tuple[ast.Span, set[str]]

_IGNORE_RE = re.compile(r"#\s*cai:\s*ignore\[([A-Za-z0-9_,\s-]+)\]")


def suppression_regions(constitution: Constitution) -> list[Region]:
    """Regions where codes are suppressed by ``# cai: ignore[CODE, ...]`` comments."""
    regions: list[Region] = []
    for path, file in constitution.files.items():
        for comment in file.comments:
            match = _IGNORE_RE.search(comment.text)
            if not match:
                continue
            codes = {c.strip() for c in match.group(1).split(",") if c.strip()}
            target_line = comment.span.line if comment.trailing else comment.span.line + 1
            region = ast.Span(file=path, line=target_line, column=1, end_line=target_line, end_column=10**6)
            for item in file.items:  # a comment before a declaration covers the whole declaration
                if item.span.line == target_line:
                    region = item.span
                    break
            regions.append((region, codes))
    return regions


def is_suppressed(d: Diagnostic, regions: list[Region], constitution: Constitution) -> bool:
    for region, codes in regions:
        if d.code not in codes and d.name not in codes:
            continue
        spans = [d.span] if d.span else []
        spans += [constitution.principles[p].span for p in d.principles if p in constitution.principles]
        for s in spans:
            if s.file == region.file and region.line <= s.line <= region.end_line:
                return True
    return False


def apply_suppressions(diagnostics: Iterable[Diagnostic], constitution: Constitution) -> list[Diagnostic]:
    """``diagnostics`` without those the constitution's ignore comments suppress."""
    regions = suppression_regions(constitution)
    return [d for d in diagnostics if unsuppressible(d.code) or not is_suppressed(d, regions, constitution)]
