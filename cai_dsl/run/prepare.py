"""Preparing an SL-CAI job: resolve, check and compile a deployment for a target, keeping the source texts."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cai_dsl.compile.ir import Program
from cai_dsl.semantics.budget import Budget
from cai_dsl.run.errors import SLCompileError, SLError

__all__ = ["Job", "prepare_job"]


@dataclass(frozen=True)
class Job:
    """A compiled deployment ready to run: the program, where it came from, and its source texts."""

    program: Program
    source: Path
    deployment: str
    target: str
    sources: dict[str, str] = field(default_factory=dict)
    """Every loaded `.const` file: path relative to the root file's directory -> text (for the model card)."""
    constitution: Any = field(default=None, compare=False, repr=False)
    """The resolved :class:`~cai_dsl.lang.resolver.Constitution` (SL-CAI's gate scores against its policy)."""


def prepare_job(
    source: str | os.PathLike[str],
    deployment: str,
    target: str | None = None,
    *,
    seed: int | None = None,
    smt_budget: Budget | None = None,
) -> Job:
    """Resolve, check (SMT within ``smt_budget``, default a fresh :class:`Budget`) and compile ``deployment``
    of ``source`` for ``target``.

    Raises :class:`SLError` for a missing file, an unknown deployment or target, and
    :class:`SLCompileError` (with the diagnostics) when the constitution has errors.
    """
    from cai_dsl.compile.compiler import CompileError, check_constitution, compile_program
    from cai_dsl.lang.resolver import resolve
    from cai_dsl.compile.targets import TargetError, load_target

    path = Path(source)
    if not path.is_file():
        raise SLError(f"{source}: no such file")
    if seed is not None and seed < 0:
        raise SLError("--seed must be >= 0")
    try:
        tgt = load_target(target)
    except TargetError as exc:
        raise SLError(str(exc)) from None
    constitution = resolve(str(path))
    if deployment not in constitution.deployment_decls:
        errors = [d for d in constitution.diagnostics if d.is_error]
        if errors:
            raise SLCompileError(errors, constitution.sources)
        known = ", ".join(constitution.deployment_decls) or "none"
        raise SLError(f"{source} has no deployment `{deployment}` (deployments: {known})")
    diagnostics = check_constitution(constitution, [deployment], smt_budget)
    if any(d.is_error for d in diagnostics):
        raise SLCompileError([d for d in diagnostics if d.is_error], constitution.sources)
    try:
        program = compile_program(constitution, deployment, tgt, seed=seed, diagnostics=diagnostics)
    except CompileError as exc:
        raise SLCompileError(list(exc.diagnostics), constitution.sources) from None
    root = path.parent
    texts: dict[str, str] = {}
    for rel, _sha in program.provenance.files:
        try:
            texts[rel] = (root / rel).read_text(encoding="utf-8")
        except OSError:
            continue
    return Job(
        program=program, source=path, deployment=deployment, target=tgt.name, sources=texts, constitution=constitution
    )
