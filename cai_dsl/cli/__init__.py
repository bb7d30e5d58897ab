"""The `cai` command line: one typer app, one module per command group.

Exit codes for every command: 0 clean, 1 diagnostics with errors (or a failed
check), 2 usage or internal failure, 130 interrupted. This package is the only code
that prints or exits; exceptions become exit codes in one place
(:mod:`cai_dsl.cli.errors`, from :class:`~cai_dsl.core.errors.CaiError`). Bad input
never produces a traceback; set ``CAI_DEBUG=1`` to see one.
"""

from __future__ import annotations

import os
import sys

try:  # Ctrl-C while the command modules load: one line and 130, never a traceback
    import typer

    from cai_dsl.cli import checking, compiling, editor, execution, language, pipeline, rlaif
    from cai_dsl.cli.errors import report_error, report_internal_error
    from cai_dsl.core.errors import EXIT_INTERRUPTED, CaiError, interrupted
    from cai_dsl.core.memory import keep_freed_memory
except KeyboardInterrupt:
    sys.stderr.write("interrupted\n")
    raise SystemExit(130) from None

app = typer.Typer(
    name="cai",
    help="cai-dsl: write, lint, test, compile and train Constitutional AI constitutions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for _group in (language, checking, compiling, execution, pipeline, rlaif, editor):
    _group.register(app)


def main() -> None:
    """Entry point of the `cai` console script."""
    keep_freed_memory()  # before any model loads: training and decoding steps reuse mapped memory
    try:
        app(standalone_mode=True)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except CaiError as exc:  # a problem the user can act on: its diagnostics or message, no traceback
        if os.environ.get("CAI_DEBUG"):
            raise
        sys.exit(report_error(exc))
    except Exception as exc:  # an internal error: report it plainly
        if os.environ.get("CAI_DEBUG"):
            raise
        if interrupted(exc):  # Ctrl-C caught and wrapped by a library (pydantic serialization, ...)
            print("interrupted", file=sys.stderr)
            sys.exit(EXIT_INTERRUPTED)
        sys.exit(report_internal_error(exc))
