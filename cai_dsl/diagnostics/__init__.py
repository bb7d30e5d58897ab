"""Diagnostics: one model for every error and warning (:mod:`.model`), the rule registry
with stable codes (:mod:`.rules`), the one de-duplication pass by rule scope
(:mod:`.dedupe`), and one renderer per output format (:mod:`.render`)."""

from cai_dsl.diagnostics.model import Diagnostic, DiagnosticError, Related, Rule, Scope, Severity

__all__ = ["Diagnostic", "DiagnosticError", "Related", "Rule", "Scope", "Severity"]
