"""One base class for the project's exceptions, and the one map from an exception to an exit code.

Exit codes everywhere: 0 clean, 1 diagnostics with errors (or failed tests), 2 usage or internal error,
130 interrupted. A :class:`CaiError`'s message is meant for the user (no traceback); a subclass sets
``exit_code`` to 1 when it carries diagnostics.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_DIAGNOSTICS = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CaiError(Exception):
    """A problem the user can act on; ``exit_code`` is what the CLI exits with (2 unless diagnostics)."""

    exit_code: int = EXIT_USAGE


def interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` is, or wraps, a Ctrl-C: a ``KeyboardInterrupt`` in its cause/context chain, or a
    library error that caught one and kept only its text (pydantic's ``PydanticSerializationError``)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt) or "KeyboardInterrupt" in type(current).__name__:
            return True
        if type(current).__name__ == "PydanticSerializationError" and "KeyboardInterrupt" in str(current):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def exit_code_for(exc: BaseException) -> int:
    """The CLI exit code for ``exc``: a :class:`CaiError`'s own code, 130 on Ctrl-C (also wrapped), 2 for anything else."""
    if interrupted(exc):
        return EXIT_INTERRUPTED
    if isinstance(exc, SystemExit):
        return exc.code if isinstance(exc.code, int) else (EXIT_OK if exc.code is None else EXIT_USAGE)
    if isinstance(exc, CaiError):
        return exc.exit_code
    return EXIT_USAGE
