"""`cai parse` and `cai fmt`: the language front end on the command line."""

from __future__ import annotations

import json
import sys
from typing import List

import typer

from cai_dsl.cli.common import const_files, fail_missing, print_diagnostics


def register(app: typer.Typer) -> None:
    app.command("parse")(parse_command)
    app.command("fmt")(fmt_command)


def parse_command(
    paths: List[str] = typer.Argument(..., help="`.const` files or directories"),
    as_json: bool = typer.Option(False, "--json", help="print the typed AST and resolved deployments as JSON"),
    warnings: bool = typer.Option(False, "--warnings", help="also show name-level warnings"),
) -> None:
    """Parse and resolve constitutions (imports, deployments, selectors); report errors."""
    from cai_dsl.lang.resolver import resolve

    files, missing = const_files(paths)
    fail_missing(missing)
    errors = 0
    dumps = []
    for path in files:
        constitution = resolve(path)
        shown = [d for d in constitution.diagnostics if warnings or d.is_error]
        print_diagnostics(shown, constitution.sources)
        errors += sum(d.is_error for d in constitution.diagnostics)
        if as_json:
            root = constitution.files.get(path)
            dumps.append(
                {
                    "path": path,
                    "ast": root.model_dump(mode="json") if root else None,
                    "deployments": {
                        name: d.model_dump(mode="json") for name, d in constitution.deployments.items()
                    },
                    "diagnostics": [d.to_json() for d in constitution.diagnostics],
                }
            )
        elif not shown:
            print(
                f"{path}: ok ({len(constitution.principles)} principles, {len(constitution.deployments)} deployments)"
            )
    if as_json:
        json.dump(dumps[0] if len(dumps) == 1 else dumps, sys.stdout, indent=2, ensure_ascii=False)
        print()
    raise SystemExit(1 if errors else 0)


def fmt_command(
    paths: List[str] = typer.Argument(..., help="`.const` files or directories"),
    check: bool = typer.Option(False, "--check", help="write nothing; exit 1 if a file would change"),
    diff: bool = typer.Option(False, "--diff", help="print a unified diff instead of writing"),
) -> None:
    """Format constitutions in the one canonical layout (re-parsed and verified before writing)."""
    from cai_dsl.lang.formatter import fmt_paths

    raise SystemExit(fmt_paths(list(paths), check=check, diff=diff, stdout=sys.stdout, stderr=sys.stderr))
