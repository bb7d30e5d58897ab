"""`cai run`: the main job, end to end on the embedded default model.

Stages that exist run in order and each prints a one-line summary:
1. check the standard library: parse, resolve, lint (zero errors) and run its tests;
2. compile every deployment of the chosen constitution for the target;
3. SL-CAI on a small prompt sample, LoRA fine-tuning, and a before/after summary;
4. RLAIF: AI feedback labels, a preference model, PPO, evaluation and an HTML report.
Every stage resumes: rerunning with the same --out skips finished work.
"""

from __future__ import annotations

import importlib.resources
import time
from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)


def stdlib_dir() -> Path:
    """The standard library of constitutions shipped with the package."""
    return Path(str(importlib.resources.files("cai_dsl.stdlib")))


def check_stdlib(directory: Path) -> tuple[int, int, int, int]:
    """Lint and test every `.const` file: (files, errors, tests passed, tests failed)."""
    from cai_dsl.check.checker import check
    from cai_dsl.cli.common import print_diagnostics
    from cai_dsl.lang.resolver import resolve
    from cai_dsl.check.tests import failures_as_diagnostics, run_tests

    files = sorted(directory.rglob("*.const"))
    errors = passed = failed = 0
    for path in files:
        constitution = resolve(str(path))
        diagnostics = [d for d in check(constitution) if d.is_error]
        if not diagnostics:
            results = run_tests(constitution)
            passed += sum(r.passed and not r.vacuous for r in results)
            failed += sum(not (r.passed and not r.vacuous) for r in results)
            diagnostics = [d for d in failures_as_diagnostics(results) if d.is_error]
        print_diagnostics(diagnostics, constitution.sources)
        errors += len(diagnostics)
    return len(files), errors, passed, failed


def run_command(
    out: Path = typer.Option(Path("runs/default"), "--out", help="output directory"),
    constitution: Optional[str] = typer.Option(None, "--constitution", help="default: the standard library's anthropic-2022.const"),
    deployment: str = typer.Option("base", "--deployment", "-d"),
    target: str = typer.Option("smollm2-cpu", "--target"),
) -> None:
    """Run the main job: check the standard library, compile, then train where available."""
    start = time.perf_counter()
    library = stdlib_dir()
    n_files, n_errors, passed, failed = check_stdlib(library)
    print(f"[1] standard library: {n_files} files linted, {n_errors} errors; tests {passed} passed, {failed} failed")
    if n_errors or failed:
        raise SystemExit(1)
    source = Path(constitution) if constitution else library / "anthropic-2022.const"
    try:
        from cai_dsl.compile.compiler import compile_file
    except ImportError:
        print("[2] compiler not installed: stopping after the checks")
        raise SystemExit(0)
    out.mkdir(parents=True, exist_ok=True)
    program, diagnostics = compile_file(str(source), deployment, target)
    if program is None:
        from cai_dsl.cli.common import print_diagnostics

        print_diagnostics(list(diagnostics), {})
        raise SystemExit(1)
    program_path = out / f"{deployment}.program.json"
    tmp = program_path.with_suffix(".tmp")
    tmp.write_text(program.to_json(), encoding="utf-8")
    tmp.replace(program_path)
    print(f"[2] compiled {source.name} [{deployment}] for {target}: {program_path} ({len(program.principles)} principles)")
    try:
        from cai_dsl.run.sl import run_sl_job  # the execution layer (SL-CAI + LoRA SFT)
    except ImportError:
        print(f"done in {time.perf_counter() - start:.1f} s (the SL-CAI stage is not installed yet)")
        raise SystemExit(0)
    print("[3] SL-CAI: generate -> critique -> revise -> LoRA SFT")
    code = run_sl_job(source=str(source), deployment=deployment, target=target, out=out)
    if code != 0:
        raise SystemExit(code)
    try:
        from cai_dsl.pipeline.rlaif import run_rlaif_job  # AI feedback, preference model, PPO, evaluation, report
    except ImportError:
        print(f"done in {time.perf_counter() - start:.1f} s (the RLAIF stage is not installed yet)")
        raise SystemExit(0)
    print("[4] RLAIF: AI feedback labels -> preference model -> PPO -> evaluation -> report")
    adapter = out / "adapter"
    code = run_rlaif_job(source, deployment, target, out, adapter if adapter.is_dir() else None)
    print(f"done in {time.perf_counter() - start:.1f} s")
    raise SystemExit(code)
