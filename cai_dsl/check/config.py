"""Rule selection from ``[tool.cai]`` in ``pyproject.toml`` (``select``, ``ignore``,
``severity``; the SMT budgets ``smt-timeout`` and ``smt-budget``, in seconds) and from the command line."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from cai_dsl.diagnostics import Diagnostic
from cai_dsl.diagnostics.rules import unsuppressible
from cai_dsl.semantics.budget import QUERY_SECONDS, RUN_SECONDS, Budget


@dataclass(frozen=True)
class LintConfig:
    """Rule selection: ``select``/``ignore`` code prefixes and severity overrides."""

    select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    severity: dict = field(default_factory=dict)
    smt_timeout: float = QUERY_SECONDS
    smt_budget: float = RUN_SECONDS

    def budget(self) -> Budget:
        """A fresh run budget from ``smt-timeout`` (per query) and ``smt-budget`` (the run), in seconds."""
        return Budget(query_seconds=self.smt_timeout, run_seconds=self.smt_budget)

    def apply(self, diagnostics: list[Diagnostic]) -> list[Diagnostic]:
        out = []
        for d in diagnostics:
            if unsuppressible(d.code):  # an error that leaves the file meaningless: never hidden or downgraded
                out.append(d)
                continue
            keys = (d.code, d.name)
            if self.select and not any(k.startswith(s) for k in keys for s in self.select):
                continue
            if any(k.startswith(s) for k in keys for s in self.ignore):
                continue
            sev = self.severity.get(d.code) or self.severity.get(d.name)
            if sev in ("error", "warning", "info"):
                d = d.model_copy(update={"severity": sev})
            out.append(d)
        return out


def load_lint_config(start: str = ".") -> LintConfig:
    """``[tool.cai]`` of the nearest pyproject.toml at or above ``start``."""
    here = Path(start).resolve()
    for folder in [here, *here.parents]:
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            try:
                data = tomllib.loads(candidate.read_text(encoding="utf-8"))
            except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError):
                return LintConfig()
            section = data.get("tool", {}).get("cai", {})
            return LintConfig(
                select=tuple(section.get("select", ())),
                ignore=tuple(section.get("ignore", ())),
                severity=dict(section.get("severity", {})),
                smt_timeout=_seconds(section.get("smt-timeout"), QUERY_SECONDS),
                smt_budget=_seconds(section.get("smt-budget"), RUN_SECONDS),
            )
    return LintConfig()


def _seconds(value: object, default: float) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else default
