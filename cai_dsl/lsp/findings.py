"""The two findings only the language server makes: a check that ran past its time
budget, and an internal error while analysing a buffer (never a crash of the server)."""

from __future__ import annotations

from cai_dsl.core.source import Span
from cai_dsl.diagnostics import Diagnostic

UNDECIDED_CODE = "LSP001"
INTERNAL_ERROR_CODE = "LSP002"


def undecided(deployment: str | None, span: Span | None, seconds: float) -> Diagnostic:
    """Information: the semantic checks of ``deployment`` (None: the wording lints of the
    file) did not finish within the budget."""
    what = (
        f"the semantic checks of deployment `{deployment}` (contradictions, cycles, shadowing)"
        if deployment is not None
        else "the wording lints (CAI3xx) of this file"
    )
    return Diagnostic(
        code=UNDECIDED_CODE,
        name="undecided-within-budget",
        severity="info",
        message=f"could not decide within {seconds:g} s: {what} ran out of time and are not shown",
        span=span,
        deployment=deployment,
        help="run `cai lint` for the full answer, simplify the conditions, or raise the budget "
        "(`cai lsp --budget SECONDS` or the `budget` initialization option)",
    )


def internal_error(path: str, exc: BaseException) -> Diagnostic:
    """An exception raised while analysing ``path``: reported, never fatal."""
    return Diagnostic(
        code=INTERNAL_ERROR_CODE,
        name="internal-error",
        severity="error",
        message=f"internal error while analysing this file: {type(exc).__name__}: {exc}"[:500],
        span=Span(file=path, line=1, column=1, end_line=1, end_column=1),
        help="please report this as a bug in cai-dsl, with the file",
    )
