"""Progress bars (rich, on stderr) behind one small interface.

``with progress(total, "label", unit="pair") as advance: ... advance(1, loss="0.31")`` draws a bar; the
keyword fields are shown after it. ``advance.task(desc, total)`` adds a nested bar on the same display.
Nothing is drawn when ``enabled`` is false, ``CAI_NO_PROGRESS`` is set or stderr is not a terminal:
``advance`` is then a no-op, so callers never branch on whether a bar is shown.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any


def progress_enabled(enabled: bool = True) -> bool:
    """Whether a bar would be drawn: asked for, not turned off by ``CAI_NO_PROGRESS``, stderr a terminal."""
    return enabled and not os.environ.get("CAI_NO_PROGRESS") and sys.stderr.isatty()


def _columns() -> list[Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, ProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.text import Text

    class Rate(ProgressColumn):
        """Items per second (or per minute when slow), or the rate of a separate count (tokens)."""

        def render(self, task: Any) -> Text:
            elapsed = task.elapsed or 0.0
            if elapsed <= 0:
                return Text("")
            fields = task.fields
            if fields.get("_rate_unit"):
                return Text(f"{fields.get('_rate', 0) / elapsed:6.1f} {fields['_rate_unit']}/s", style="progress.data.speed")
            per_second = (task.completed - fields.get("_start", 0)) / elapsed
            if per_second >= 1:
                return Text(f"{per_second:5.1f} {fields['_unit']}/s", style="progress.data.speed")
            return Text(f"{per_second * 60:5.1f} {fields['_unit']}/min", style="progress.data.speed")

    class Status(ProgressColumn):
        """The caller's keyword fields, ``name=value``."""

        def render(self, task: Any) -> Text:
            return Text(" ".join(f"{k}={v}" for k, v in task.fields.items() if not k.startswith("_")))

    return [TextColumn("{task.description:<24}"), BarColumn(), MofNCompleteColumn(), Rate(), Status(),
            TimeElapsedColumn(), TimeRemainingColumn()]


class Advance:
    """Advances one bar: ``advance(n, **fields)``; ``rate`` adds to the count a ``rate_unit`` bar shows."""

    def __init__(self, display: Any = None, task: Any = None):
        self._display = display
        self._task = task
        self._rate = 0

    def __call__(self, n: int = 1, *, rate: int = 0, **fields: Any) -> None:
        if self._display is None:
            return
        if rate:
            self._rate += rate
            fields["_rate"] = self._rate
        self._display.update(self._task, advance=n, **fields)

    @contextlib.contextmanager
    def task(self, desc: str, total: int | None, *, unit: str = "it", rate_unit: str = "") -> Iterator["Advance"]:
        """A nested bar on the same display, removed when the block ends."""
        if self._display is None:
            yield Advance()
            return
        task = self._display.add_task(desc, total=total, _unit=unit, _rate_unit=rate_unit, _rate=0)
        try:
            yield Advance(self._display, task)
        finally:
            self._display.remove_task(task)


@contextlib.contextmanager
def progress(
    total: int | None, desc: str, *, unit: str = "it", done: int = 0, rate_unit: str = "", enabled: bool = True
) -> Iterator[Advance]:
    """A progress bar for ``total`` items (``done`` already finished) while the block runs."""
    if not progress_enabled(enabled):
        yield Advance()
        return
    from rich.console import Console
    from rich.progress import Progress

    display = Progress(*_columns(), console=Console(stderr=True))
    task = display.add_task(desc, total=total, completed=done, _start=done, _unit=unit, _rate_unit=rate_unit, _rate=0)
    with display:
        yield Advance(display, task)
