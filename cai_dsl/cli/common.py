"""Helpers shared by the CLI command modules: finding files, printing diagnostics."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterable

from cai_dsl.diagnostics import Diagnostic
from cai_dsl.diagnostics.render import RenderContext, render


def const_files(paths: Iterable[str]) -> tuple[list[str], list[str]]:
    """Expand directories into their ``*.const`` files (sorted); also return missing paths."""
    found: list[str] = []
    missing: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(str(p) for p in sorted(path.rglob("*.const")))
        elif path.exists():
            found.append(str(path))
        else:
            missing.append(raw)
    return found, missing


def fail_missing(missing: list[str]) -> None:
    for m in missing:
        print(f"cai: error: no such file or directory: {m}", file=sys.stderr)
    if missing:
        raise SystemExit(2)


def print_diagnostics(diagnostics: list[Diagnostic], sources: dict[str, str], fmt: str = "text", stream=None) -> None:
    """Print sorted diagnostics in ``fmt`` (a name of ``FORMATS``; text prints nothing when there are none)."""
    stream = stream or sys.stderr
    ordered = sorted(diagnostics, key=Diagnostic.sort_key)
    if ordered or fmt != "text":
        print(render(fmt, ordered, RenderContext(sources=sources)), file=stream)
