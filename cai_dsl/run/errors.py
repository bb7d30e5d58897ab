"""The execution layer's user-facing errors (the message says what to fix; no traceback)."""

from __future__ import annotations

from collections.abc import Mapping

from cai_dsl.core.errors import EXIT_DIAGNOSTICS, CaiError

__all__ = ["RLAIFError", "SFTError", "SLCompileError", "SLError"]


class SLError(CaiError):
    """Bad input or setup for an SL-CAI job; the message is meant for the user (no traceback)."""


class SLCompileError(SLError):
    """The constitution does not compile; ``diagnostics`` and ``sources`` are for printing (exit code 1)."""

    exit_code = EXIT_DIAGNOSTICS

    def __init__(self, diagnostics: list, sources: Mapping[str, str]):
        super().__init__(f"{len([d for d in diagnostics if d.is_error])} error(s) in the constitution")
        self.diagnostics = diagnostics
        self.sources = dict(sources)


class SFTError(CaiError):
    """Bad input for fine-tuning (missing run files, no examples); the message is for the user."""


class RLAIFError(CaiError):
    """A user-facing problem in an RL-CAI job (bad input file, missing model, ...); the message says what to fix."""
