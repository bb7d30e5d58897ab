"""Run the `cai` command line in-process (fast) and capture what a user would see."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str
    seconds: float

    @property
    def text(self) -> str:
        return self.out + self.err


def run_cai(*args: str, cwd: str | None = None) -> Outcome:
    """``cai ARGS`` in this process: its exit code, stdout, stderr and wall time."""
    from cai_dsl.cli import main

    out, err = io.StringIO(), io.StringIO()
    old_argv, old_cwd = sys.argv, os.getcwd()
    os.environ["CAI_NO_PROGRESS"] = "1"
    sys.argv = ["cai", *args]
    start = time.monotonic()
    code = 0
    try:
        if cwd:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    finally:
        sys.argv = old_argv
        os.chdir(old_cwd)
    return Outcome(code, out.getvalue(), err.getvalue(), time.monotonic() - start)


def assert_plain(outcome: Outcome, bound_s: float = 120.0) -> None:
    """The hostile-input property: exit 0/1/2, a plain message, no traceback or internal error, bounded time."""
    assert outcome.code in (0, 1, 2), (outcome.code, outcome.text[-2000:])
    assert "Traceback" not in outcome.text, outcome.text[-4000:]
    assert "internal error" not in outcome.text, outcome.text[-2000:]
    if outcome.code != 0:
        assert outcome.text.strip(), "a failure must say why"
    assert outcome.seconds < bound_s, f"took {outcome.seconds:.0f} s"
