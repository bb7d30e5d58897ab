"""Pausing the cyclic garbage collector around allocation-heavy passes over a large AST or program."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["gc_paused"]


@contextmanager
def gc_paused() -> Iterator[None]:
    """Disable automatic collection for the block, re-enabling it afterwards if it was enabled.

    Building, dumping or linting a large constitution allocates many short-lived, acyclic containers while a
    large AST is alive; each automatic collection would traverse all of it again (for 5,000 principles,
    collections took most of the time). Reference counting frees those allocations.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
