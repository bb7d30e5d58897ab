"""The `cai` command line: one typer app, one module per command group.

Exit codes for every command: 0 clean, 1 diagnostics with errors (or a failed
check), 2 usage or internal failure. Bad input never produces a traceback; set
``CAI_DEBUG=1`` to see one for internal errors.
"""

from __future__ import annotations

import os
import sys

import typer

from cai_dsl.cli import language

app = typer.Typer(
    name="cai",
    help="cai-dsl: write, lint, test, compile and train Constitutional AI constitutions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
language.register(app)


def _register_optional() -> None:
    """Command groups of later pipeline stages register themselves when present."""
    import importlib

    for module in ("checking", "compiling", "execution", "pipeline", "rlaif"):
        try:
            mod = importlib.import_module(f"cai_dsl.cli.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"cai_dsl.cli.{module}":
                raise
            continue
        mod.register(app)


_register_optional()


def main() -> None:
    """Entry point of the `cai` console script."""
    try:
        app(standalone_mode=True)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # an internal error: report it plainly
        if os.environ.get("CAI_DEBUG"):
            raise
        print(f"cai: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        print("rerun with CAI_DEBUG=1 for a traceback, and please report it", file=sys.stderr)
        sys.exit(2)
