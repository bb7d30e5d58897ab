"""Time budgets for SMT queries: one per query and one for a whole run (``cai lint`` over many files).

A :class:`Budget` is shared by every :class:`~cai_dsl.semantics.smt.DeploymentModel` of a run; each
solver call gets ``min(per query, what is left of the run)`` as its z3 timeout. A query that runs out
is recorded as an :class:`Undecided` (which principles, which deployment), never a hang: the checker
turns them into "could not decide within N s" diagnostics and goes on with the rest.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

#: Defaults (seconds), overridable in ``[tool.cai]`` (``smt-timeout``, ``smt-budget``) and on the command line.
QUERY_SECONDS = 10.0
RUN_SECONDS = 300.0


@dataclass(frozen=True)
class Undecided:
    """A query the solver could not decide in time: what it asked, about which principles, where."""

    query: str
    principles: tuple[str, ...]
    deployment: str
    seconds: float
    run_exhausted: bool = False


@dataclass
class Budget:
    """Seconds per query and for the whole run; the run's clock starts at the first question asked."""

    query_seconds: float = QUERY_SECONDS
    run_seconds: float = RUN_SECONDS
    _deadline: float | None = None

    def left(self) -> float:
        """Seconds left of the run (wall clock, so the work around the solver counts too)."""
        now = time.monotonic()
        if self._deadline is None:
            self._deadline = now + self.run_seconds
        return max(self._deadline - now, 0.0)

    def exhausted(self) -> bool:
        return self.left() <= 0.0

    def timeout_ms(self) -> int:
        """The z3 timeout of the next query, in milliseconds (at least 1)."""
        return max(int(min(self.query_seconds, self.left()) * 1000), 1)
