"""`cai eval detectors`: how well a constitution's behavior detectors agree with hand labels.

Per behavior and detector kind: precision, recall and F1 with n and 95% Wilson intervals; Cohen's kappa
between kinds; the quality checks' ``degenerate`` verdict against the records' ``degenerate`` label.
Exit codes: 0 the report was produced; 1 the constitution has errors (printed as diagnostics); 2 usage
errors and unreadable or malformed label files (one ``cai eval detectors: error: FILE:LINE: ...`` line).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Optional

import typer

COMMAND = "eval detectors"
KIND_CHOICES = ("markers", "judge", "both", "all")
FORMATS = ("text", "json")


def _fail(message: str, code: int = 2) -> None:
    print(f"cai {COMMAND}: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def _vocabulary() -> str:
    """The standard library's vocabulary (every standard behavior is declared there)."""
    import importlib.resources

    return str(importlib.resources.files("cai_dsl.stdlib").joinpath("vocabulary.const"))


def _specs(path: str, deployment: Optional[str], behaviors: tuple[str, ...]) -> tuple[Any, Any]:
    """The behavior specs to measure and the program (None without ``deployment``), or exit 1/2."""
    from cai_dsl.cli.common import lint_config, print_diagnostics
    from cai_dsl.compile.compiler import compile_file
    from cai_dsl.lang.resolver import resolve
    from cai_dsl.run.policy.detectors import BehaviorSpec
    from cai_dsl.run.policy.labelled import declared_specs

    if not Path(path).is_file():
        _fail(f"no such file: {path}")
    constitution = resolve(path)
    errors = [d for d in constitution.diagnostics if d.is_error]
    if errors:
        print_diagnostics(errors, constitution.sources)
        raise SystemExit(1)
    if deployment is None:
        return declared_specs(constitution, behaviors), None
    if deployment not in constitution.deployment_decls:
        known = ", ".join(constitution.deployment_decls) or "none"
        _fail(f"{path} has no deployment `{deployment}` (deployments: {known})")
    program, diagnostics = compile_file(path, deployment, budget=lint_config(None, None).budget())
    if program is None:
        print_diagnostics([d for d in diagnostics if d.is_error], constitution.sources)
        raise SystemExit(1)
    return tuple(BehaviorSpec.from_ir(b) for b in program.behaviors if b.name in behaviors), program


class _ScoreCache:
    """A backend that scores each (prompt, continuations) once: `--kind all` asks the judge questions for
    the ``judge`` and the ``both`` detectors."""

    def __init__(self, backend: Any):
        self.backend = backend
        self.name = getattr(backend, "name", "judge")
        self._seen: dict[Any, list[float]] = {}

    def score(self, prompts: Any, continuations: Any) -> list[list[float]]:
        keys = [(p, tuple(continuations)) for p in prompts]
        todo = list(dict.fromkeys(k for k in keys if k not in self._seen))
        if todo:
            for key, row in zip(todo, self.backend.score([k[0] for k in todo], continuations)):
                self._seen[key] = row
        return [self._seen[k] for k in keys]


def _judge_backend(program: Any, model: Optional[str]) -> tuple[Any, str]:
    """The judge's backend (the program's execution context, else CPU or a GPU when there is one) and model."""
    from cai_dsl.run.context import ExecutionContext
    from cai_dsl.run.loading import DEFAULT_MODEL

    context = ExecutionContext.of(program) if program is not None else ExecutionContext.create("auto")
    spec = model or DEFAULT_MODEL
    return _ScoreCache(context.backend(spec)), spec


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _with_ci(value: float | None, ci: tuple[float, float] | None) -> str:
    return "-" if value is None or ci is None else f"{value:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]"


def render_text(payload: dict[str, Any]) -> str:
    """The report as the table `cai eval detectors` prints."""
    lines = [
        f"labels: {payload['labels']} ({payload['records']} records, split {payload['split']})",
        f"detectors: {payload['constitution']}"
        + (f" -d {payload['deployment']}" if payload["deployment"] else "")
        + f"; kinds: {', '.join(payload['kinds'])}",
        "",
        f"{'behavior':<24} {'kind':<8} {'n':>4} {'pos':>4} {'precision [95% CI]':<20} {'recall [95% CI]':<20} {'F1':>5}",
    ]
    for behavior, kinds in payload["metrics"].items():
        for kind, m in kinds.items():
            lines.append(
                f"{behavior:<24} {kind:<8} {m['n']:>4} {m['tp'] + m['fn']:>4} "
                f"{_with_ci(m['precision'], m['precision_ci']):<20} {_with_ci(m['recall'], m['recall_ci']):<20} "
                f"{_num(m['f1']):>5}"
            )
    if payload["agreement"]:
        lines += ["", "agreement between kinds (Cohen's kappa):"]
        lines += [
            f"  {a['behavior']:<24} {a['kinds'][0]} vs {a['kinds'][1]}: kappa {_num(a['kappa'])} (n {a['n']})"
            for a in payload["agreement"]
        ]
    deg = payload["degeneration"]
    if deg is not None:
        lines += [
            "",
            f"degeneration check (quality checks' `degenerate` vs the label): n {deg['n']}, pos {deg['tp'] + deg['fn']}, "
            f"precision {_with_ci(deg['precision'], deg['precision_ci'])}, recall {_with_ci(deg['recall'], deg['recall_ci'])}",
        ]
    if payload["unobserved"]:
        lines += ["", f"labelled but not observed by these detectors: {', '.join(payload['unobserved'])}"]
    if payload["seconds"].get("judge") is not None:
        lines += ["", f"judge: {payload['judge_model']}, {payload['seconds']['judge']:.0f} s"]
    return "\n".join(lines)


def eval_detectors_command(
    path: Optional[str] = typer.Argument(None, help="the `.const` file whose behaviors are measured [default: the standard library's vocabulary.const]"),
    deployment: Optional[str] = typer.Option(None, "--deployment", "-d", help="measure the behaviors of this deployment's compiled program (default: every behavior the file declares)"),
    labels: Optional[Path] = typer.Option(None, "--labels", help="labelled responses JSONL ({id, prompt, response, labels: {behavior: bool}, degenerate}) [default: the packaged set]"),
    kind: str = typer.Option("markers", "--kind", help="markers | judge (the judge questions, scored by a model) | both (either fires) | all (each of the three)"),
    split: str = typer.Option("all", "--split", help="all | dev | test (by sha256 of the id; markers are tuned on dev)"),
    model: Optional[str] = typer.Option(None, "--model", help="judge model [default: the embedded SmolLM2-135M-Instruct]"),
    fmt: str = typer.Option("text", "--format", help="text | json"),
    out: Optional[Path] = typer.Option(None, "--out", help="also write the JSON report to this file"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
) -> None:
    """Precision/recall of the behavior detectors against hand labels (packaged set by default)."""
    from cai_dsl.core.errors import CaiError
    from cai_dsl.core.files import write_json_atomic
    from cai_dsl.core.progress import progress
    from cai_dsl.run.policy.detectors import DetectorSet
    from cai_dsl.run.policy.evaluate import evaluate_detectors
    from cai_dsl.run.policy.labelled import SPLITS, load_labelled

    if kind not in KIND_CHOICES:
        _fail(f"--kind must be one of {', '.join(KIND_CHOICES)}, not {kind!r}")
    if split not in SPLITS:
        _fail(f"--split must be one of {', '.join(SPLITS)}, not {split!r}")
    if fmt not in FORMATS:
        _fail(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    path = path or _vocabulary()
    try:
        labelled = load_labelled(labels)
        records = labelled.split(split)  # type: ignore[arg-type]
        specs, program = _specs(path, deployment, labelled.behaviors)
        kinds = ["markers", "judge", "both"] if kind == "all" else [kind]
        seconds: dict[str, float | None] = {"judge": None}
        backend, judge_model = _judge_backend(program, model) if kind != "markers" else (None, None)
        sets = {k: DetectorSet(specs, kind=k, backend=backend) for k in kinds}  # type: ignore[arg-type]
        judged = any(s.judges for s in sets.values())
        start = time.perf_counter()
        with progress(len(records) * sum(bool(s.judges) for s in sets.values()), "judge questions",
                      unit="record", enabled=judged and not quiet) as advance:
            report = evaluate_detectors(records, sets, records_per_call=1 if judged else None, progress=advance)
        if judged:
            seconds["judge"] = time.perf_counter() - start
    except CaiError as exc:
        _fail(str(exc), exc.exit_code)
    for warning in labelled.warnings:
        print(f"cai {COMMAND}: warning: {warning}", file=sys.stderr)
    observed = {n for s in sets.values() for n in s.behaviors}
    payload = {
        "labels": str(labelled.path),
        "split": split,
        "constitution": path,
        "deployment": deployment,
        "kinds": kinds,
        "judge_model": judge_model,
        "seconds": seconds,
        "unobserved": [b for b in labelled.behaviors if b not in observed],
        **report.to_json(),
    }
    if out is not None:
        write_json_atomic(out, payload)
    print(json.dumps(payload, indent=2) if fmt == "json" else render_text(payload))
