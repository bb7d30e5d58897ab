"""The check stage: names, SMT semantics and operationalizability lints, the tests runner, explain.

The package is callable: ``cai_dsl.check(constitution)`` returns every diagnostic (see :func:`check`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from cai_dsl.core.facade import make_callable

if TYPE_CHECKING:
    from cai_dsl.diagnostics import Diagnostic
    from cai_dsl.lang.resolver import Constitution


def check(constitution: "Constitution", deployments: Iterable[str] | None = None) -> "list[Diagnostic]":
    """Every diagnostic of a loaded constitution (resolution's, SMT semantics, lints), suppressions applied, sorted."""
    from cai_dsl.check.checker import check as check_all

    return list(check_all(constitution, deployments))


make_callable(__name__, check)
