"""The one place the CLI turns an exception into what the user sees and an exit code.

A :class:`~cai_dsl.core.errors.CaiError` is a problem the user can act on: its diagnostics are printed
(when it carries them, e.g. a constitution that does not compile) or its message as one line, and the
exit code is :func:`~cai_dsl.core.errors.exit_code_for` (1 with diagnostics, 2 otherwise). Anything
else is an internal error (exit 2; ``CAI_DEBUG=1`` shows the traceback).
"""

from __future__ import annotations

import sys
from typing import TextIO

from cai_dsl.cli.common import print_diagnostics
from cai_dsl.core.errors import exit_code_for

__all__ = ["report_error", "report_internal_error"]


def report_error(exc: BaseException, prog: str = "cai", stream: TextIO | None = None) -> int:
    """Print a user-facing error (its diagnostics, or ``PROG: error: MESSAGE``); return its exit code."""
    stream = stream or sys.stderr
    diagnostics = getattr(exc, "diagnostics", None)
    if diagnostics is not None:
        print_diagnostics(list(diagnostics), dict(getattr(exc, "sources", None) or {}), stream=stream)
    else:
        print(f"{prog}: error: {exc}", file=stream)
    return exit_code_for(exc)


def report_internal_error(exc: BaseException, stream: TextIO | None = None) -> int:
    """Print an unexpected exception plainly (no traceback) and return exit code 2."""
    stream = stream or sys.stderr
    print(f"cai: internal error: {type(exc).__name__}: {exc}", file=stream)
    print("rerun with CAI_DEBUG=1 for a traceback, and please report it", file=stream)
    return exit_code_for(exc)
