"""cai-dsl: a declarative language and compiler for Constitutional AI.

The scripting API (imports stay lazy, so ``import cai_dsl`` is cheap)::

    import cai_dsl

    constitution = cai_dsl.load("constitutions/anthropic-2022.const")   # parse + resolve (LoadError)
    diagnostics = cai_dsl.check(constitution)                            # list[Diagnostic]
    program = cai_dsl.compile(constitution, "base", target="smollm2-cpu")  # Program (CompileError)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

__all__ = ["LoadError", "__version__", "check", "compile", "load"]


def __getattr__(name: str) -> Any:
    """Resolve the API lazily: ``check``/``compile`` are the callable stage packages, ``load`` lives in ``api``."""
    if name in ("check", "compile"):
        return importlib.import_module(f"{__name__}.{name}")
    if name in ("load", "LoadError"):
        return getattr(importlib.import_module(f"{__name__}.api"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
