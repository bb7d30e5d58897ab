"""`cai compile`, `cai export`, `cai import`: the compiler and interop on the command line.

Exit codes: 0 success; 1 the constitution has errors (printed as diagnostics), an SMT question that
could hide an error undecided within the budget included (CAI220, ``--smt-timeout`` / ``--smt-budget``);
2 usage errors (missing file, unknown deployment, target or format, unreadable import input).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer

from cai_dsl.cli.common import SMT_BUDGET, SMT_TIMEOUT, lint_config, print_diagnostics


def register(app: typer.Typer) -> None:
    app.command("compile")(compile_command)
    app.command("export")(export_command)
    app.command("import")(import_command)


def _usage(message: str) -> None:
    print(f"cai: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _load(path: str, target_name: Optional[str]):
    """The target and the resolved constitution, or a usage error."""
    from cai_dsl.lang.resolver import resolve
    from cai_dsl.compile.targets import TargetError, load_target

    if not os.path.isfile(path):
        _usage(f"no such file: {path}")
    try:
        target = load_target(target_name)
    except TargetError as exc:
        _usage(str(exc))
    return target, resolve(path)


def _require_deployment(constitution, name: Optional[str]) -> str:
    if constitution.root not in constitution.files:  # the file itself did not parse
        print_diagnostics([d for d in constitution.diagnostics if d.is_error], constitution.sources)
        raise SystemExit(1)
    known = ", ".join(constitution.deployment_decls) or "none"
    if name is None:
        _usage(f"name a deployment with --deployment (deployments: {known}), or use --all")
    if name not in constitution.deployment_decls:
        _usage(f"{constitution.root} has no deployment `{name}` (deployments: {known})")
    return name


def _report(diagnostics, constitution, warnings: bool) -> bool:
    """Print the diagnostics (warnings only if asked); True when there are errors."""
    shown = [d for d in diagnostics if warnings or d.is_error]
    print_diagnostics(shown, constitution.sources)
    return any(d.is_error for d in diagnostics)


def compile_command(
    path: str = typer.Argument(..., help="the `.const` file"),
    deployment: Optional[str] = typer.Option(None, "--deployment", "-d", help="the deployment to compile"),
    all_: bool = typer.Option(False, "--all", help="compile every deployment into -o DIR/<deployment>.json"),
    target: Optional[str] = typer.Option(None, "--target", "-t", help="packaged target name or .toml path [default: smollm2-cpu]"),
    seed: Optional[int] = typer.Option(None, "--seed", help="override the deployment's `set seed`"),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="output file (a directory with --all); default: stdout"),
    warnings: bool = typer.Option(False, "--warnings", help="also print warnings"),
    no_check: bool = typer.Option(False, "--no-check", help="skip the semantic checker (resolution errors still stop)"),
    smt_timeout: Optional[float] = SMT_TIMEOUT,
    smt_budget: Optional[float] = SMT_BUDGET,
) -> None:
    """Compile a deployment to a deterministic prompt program (canonical JSON, hashed, source-mapped). A check
    that could hide an error and is not decided within the SMT budget stops it (CAI220, exit 1)."""
    from cai_dsl.compile.compiler import CompileError, check_constitution, compile_program
    from cai_dsl.compile.interop import write_atomic

    if seed is not None and seed < 0:
        _usage("--seed must be >= 0")
    if all_ and deployment is not None:
        _usage("use either --deployment or --all")
    if all_ and output is None:
        _usage("--all needs -o DIR")
    tgt, constitution = _load(path, target)
    names = list(constitution.deployment_decls) if all_ else [_require_deployment(constitution, deployment)]
    if no_check:
        diagnostics = list(constitution.diagnostics)
    else:
        diagnostics = check_constitution(constitution, None if all_ else names, lint_config(smt_timeout, smt_budget).budget())
    if _report(diagnostics, constitution, warnings):
        raise SystemExit(1)
    programs = {}
    for name in names:
        try:
            programs[name] = compile_program(constitution, name, tgt, seed=seed, diagnostics=diagnostics)
        except CompileError as exc:
            print_diagnostics(exc.diagnostics, constitution.sources)
            raise SystemExit(1)
    if all_:
        out_dir = Path(output)
        if out_dir.exists() and not out_dir.is_dir():
            _usage(f"{output} exists and is not a directory")
        for name, program in programs.items():
            write_atomic(out_dir / f"{name}.json", program.to_json())
        print(f"compiled {len(programs)} deployment(s) into {out_dir}", file=sys.stderr)
    else:
        program = programs[names[0]]
        if output is None or output == "-":
            sys.stdout.write(program.to_json())
        else:
            write_atomic(output, program.to_json())
            print(f"{names[0]}: {program.provenance.program_hash[:12]} -> {output}", file=sys.stderr)
    raise SystemExit(0)


def export_command(
    path: str = typer.Argument(..., help="the `.const` file"),
    deployment: Optional[str] = typer.Option(None, "--deployment", "-d", help="the deployment to export"),
    fmt: str = typer.Option(..., "--format", "-f", help="hf-cai, langchain, jsonl or anthropic"),
    output: Optional[str] = typer.Option(
        None, "--output", "-o", help="output file (anthropic: an existing directory gets the published files); default: stdout"
    ),
    target: Optional[str] = typer.Option(None, "--target", "-t", help="target (affects nothing exported; default smollm2-cpu)"),
    warnings: bool = typer.Option(False, "--warnings", help="also print warnings"),
    smt_timeout: Optional[float] = SMT_TIMEOUT,
    smt_budget: Optional[float] = SMT_BUDGET,
) -> None:
    """Export a deployment's principles: Hugging Face CAI recipe, LangChain principles, comparison JSONL, or Anthropic's
    files. Checked as by `cai compile`, within the same SMT budget."""
    from cai_dsl.compile.compiler import CompileError, check_constitution, compile_program
    from cai_dsl.compile.interop import EXPORT_FORMATS, export_files, export_text, write_atomic

    if fmt not in EXPORT_FORMATS:
        _usage(f"unknown --format `{fmt}` (formats: {', '.join(EXPORT_FORMATS)})")
    tgt, constitution = _load(path, target)
    name = _require_deployment(constitution, deployment)
    diagnostics = check_constitution(constitution, [name], lint_config(smt_timeout, smt_budget).budget())
    if _report(diagnostics, constitution, warnings):
        raise SystemExit(1)
    try:
        program = compile_program(constitution, name, tgt, diagnostics=diagnostics)
    except CompileError as exc:
        print_diagnostics(exc.diagnostics, constitution.sources)
        raise SystemExit(1)
    if fmt == "anthropic" and output is not None and os.path.isdir(output):
        for file_name, text in export_files(program, fmt).items():
            write_atomic(os.path.join(output, file_name), text)
        raise SystemExit(0)
    text = export_text(program, fmt)
    if output is None or output == "-":
        sys.stdout.write(text)
    else:
        write_atomic(output, text)
    raise SystemExit(0)


def import_command(
    path: str = typer.Argument(..., help="the file to import (for anthropic: CritiqueRevisionInstructions.json or its directory)"),
    from_: str = typer.Option(..., "--from", help="hf-cai or anthropic"),
    compare: Optional[str] = typer.Option(None, "--compare", help="anthropic: RLMadisonInstructions.json"),
    name: Optional[str] = typer.Option(None, "--name", help="the constitution's name"),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="the .const file to write; default: stdout"),
) -> None:
    """Import a Hugging Face CAI recipe or Anthropic's published prompts as a `.const` file."""
    from cai_dsl.compile.interop import IMPORT_FORMATS, InteropError, import_file, write_atomic

    if from_ not in IMPORT_FORMATS:
        _usage(f"unknown --from `{from_}` (formats: {', '.join(IMPORT_FORMATS)})")
    if not os.path.exists(path):
        _usage(f"no such file or directory: {path}")
    try:
        result = import_file(path, from_, compare_path=compare, name=name)
    except InteropError as exc:
        _usage(str(exc))
    for w in result.warnings:
        print(f"cai import: warning: {w}", file=sys.stderr)
    if output is None or output == "-":
        sys.stdout.write(result.text)
    else:
        write_atomic(output, result.text)
        count = sum(1 for item in result.file.items if item.kind == "principle")
        print(f"imported {count} principle(s) -> {output}", file=sys.stderr)
    raise SystemExit(0)
