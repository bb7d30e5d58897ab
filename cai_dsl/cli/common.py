"""Helpers shared by the CLI command modules: finding files, printing diagnostics, the SMT budget options."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterable

import typer

from cai_dsl.diagnostics import Diagnostic
from cai_dsl.diagnostics.render import RenderContext, render


#: The SMT budget options of every command that runs the checker (defaults: ``[tool.cai]``, then 10 s / 300 s).
SMT_TIMEOUT = typer.Option(None, "--smt-timeout", min=0.001, help="seconds per SMT query [default: 10, or \\[tool.cai] smt-timeout]")
SMT_BUDGET = typer.Option(None, "--smt-budget", min=0.001, help="seconds of SMT for the whole run [default: 300, or \\[tool.cai] smt-budget]")


def lint_config(smt_timeout: float | None, smt_budget: float | None, select: tuple[str, ...] = (), ignore: tuple[str, ...] = ()):
    """``[tool.cai]`` of the working directory with the command line's SMT budgets and rule selection on top."""
    from cai_dsl.check.config import LintConfig, load_lint_config

    config = load_lint_config()
    return LintConfig(
        select=select or config.select,
        ignore=config.ignore + ignore,
        severity=config.severity,
        smt_timeout=smt_timeout or config.smt_timeout,
        smt_budget=smt_budget or config.smt_budget,
    )


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
