"""Callable packages: ``cai_dsl.check(...)`` and ``cai_dsl.compile(...)`` are both a stage's package and its verb.

Importing ``cai_dsl.compile.compiler`` binds the *package* ``cai_dsl.compile`` as an attribute of
``cai_dsl``, so a facade function of that name would be shadowed; instead the package itself is made
callable (its module class gets a ``__call__`` that forwards to one function of that package).
"""

from __future__ import annotations

import sys
import types
from typing import Any, Callable

__all__ = ["make_callable"]


def make_callable(module_name: str, function: Callable[..., Any]) -> None:
    """Make the (already imported) module ``module_name`` callable as ``function``."""
    module = sys.modules[module_name]

    class CallableModule(types.ModuleType):
        __call__ = staticmethod(function)

    CallableModule.__doc__ = module.__doc__
    module.__class__ = CallableModule
