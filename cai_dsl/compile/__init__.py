"""The compile stage: a checked constitution + a deployment + a target -> a :class:`~cai_dsl.compile.ir.Program`.

``ir`` (the data model, with the mixins ``prompts`` and ``voting``), ``compiler``, ``targets``, ``interop``.
The package is callable: ``cai_dsl.compile(constitution, "base", target="smollm2-cpu")``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cai_dsl.core.facade import make_callable

if TYPE_CHECKING:
    from cai_dsl.compile.ir import Program
    from cai_dsl.compile.targets import Target
    from cai_dsl.lang.resolver import Constitution


def compile(  # noqa: A001 - the public verb (``cai_dsl.compile(...)``)
    constitution: "Constitution", deployment: str, target: "Target | str | None" = None, *, seed: int | None = None
) -> "Program":
    """Compile one deployment of a loaded constitution for ``target`` (default ``smollm2-cpu``).

    Raises :class:`~cai_dsl.compile.compiler.CompileError` (a CaiError with the diagnostics) when
    the constitution has errors or has no such deployment, and ``TargetError`` for a bad target.
    """
    from cai_dsl.compile.compiler import compile_program

    return compile_program(constitution, deployment, target, seed=seed)


make_callable(__name__, compile)
