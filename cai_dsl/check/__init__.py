"""The check stage: names, SMT semantics and operationalizability lints, the tests runner, explain.

The package is callable: ``cai_dsl.check(constitution)`` returns every diagnostic (see :func:`check`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from cai_dsl.core.facade import make_callable

if TYPE_CHECKING:
    from cai_dsl.diagnostics import Diagnostic
    from cai_dsl.lang.resolver import Constitution
    from cai_dsl.semantics.budget import Budget


def check(
    constitution: "Constitution", deployments: Iterable[str] | None = None, *, budget: "Budget | None" = None
) -> "list[Diagnostic]":
    """Every diagnostic of a loaded constitution (resolution's, SMT semantics, lints), suppressions applied, sorted.

    Every SMT query runs within ``budget`` (default: a fresh :class:`~cai_dsl.semantics.budget.Budget`, 10 s per
    query and 300 s in all, as the CLI's defaults): a query that runs out is a "could not decide" diagnostic
    (CAI220), never a hang."""
    from cai_dsl.check.checker import check as check_all
    from cai_dsl.semantics.budget import Budget

    return list(check_all(constitution, deployments, budget=budget if budget is not None else Budget()))


make_callable(__name__, check)
