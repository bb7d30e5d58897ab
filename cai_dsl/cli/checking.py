"""`cai lint`, `cai test`, `cai explain`: the checker on the command line."""

from __future__ import annotations

import json
import sys
from typing import List, Optional

import typer

from cai_dsl.cli.common import SMT_BUDGET, SMT_TIMEOUT, const_files, fail_missing, lint_config, print_diagnostics
from cai_dsl.diagnostics.render import FORMATS

#: The formats of ``cai test`` (a subset of :data:`FORMATS`: its report is not diagnostics only).
TEST_FORMATS: tuple[str, ...] = ("text", "json")


def register(app: typer.Typer) -> None:
    app.command("lint")(lint_command)
    app.command("test")(test_command)
    app.command("explain")(explain_command)
    app.command("rules")(rules_command)


def _check_format(command: str, fmt: str, allowed: tuple[str, ...]) -> None:
    """Exit 2 unless ``fmt`` is one of ``allowed`` (names of :data:`FORMATS`)."""
    if fmt not in allowed:
        print(f"cai {command}: unknown --format `{fmt}` ({', '.join(allowed)})", file=sys.stderr)
        raise SystemExit(2)


def _codes(values: list[str] | None) -> tuple[str, ...]:
    return tuple(c.strip() for v in values or [] for c in v.split(",") if c.strip())


def _lint_one(path, deployment, only, config, budget, empirical, target, sources, on_stage) -> list:
    """The configured diagnostics of one file (exit 2 when its only file lacks ``deployment``)."""
    from cai_dsl.check.checker import check
    from cai_dsl.lang.resolver import resolve

    constitution = resolve(path)
    sources.update(constitution.sources)
    parsed = constitution.root in constitution.files
    if parsed and deployment is not None and deployment not in constitution.deployment_decls:
        if only:
            known = ", ".join(constitution.deployment_decls) or "none"
            print(f"cai lint: {path} has no deployment `{deployment}` (deployments: {known})", file=sys.stderr)
            raise SystemExit(2)
        return []
    diags = check(constitution, [deployment] if deployment else None, budget=budget, on_stage=on_stage)
    if empirical:
        from cai_dsl.run.empirical import empirical_lints  # loads a model

        on_stage("empirical lints (model)")
        diags += empirical_lints(constitution, deployment, target)
    return config.apply(diags)


def lint_command(
    paths: List[str] = typer.Argument(..., help="`.const` files or directories"),
    deployment: Optional[str] = typer.Option(None, "--deployment", "-d", help="check only this deployment"),
    fmt: str = typer.Option("text", "--format", help=", ".join(FORMATS)),
    select: Optional[List[str]] = typer.Option(None, "--select", help="only these codes or prefixes (comma-separated)"),
    ignore: Optional[List[str]] = typer.Option(None, "--ignore", help="skip these codes or prefixes (comma-separated)"),
    strict: bool = typer.Option(False, "--strict", help="exit 1 on warnings too"),
    empirical: bool = typer.Option(False, "--empirical", help="also measure compare principles with a model"),
    target: Optional[str] = typer.Option(None, "--target", help="target for --empirical"),
    smt_timeout: Optional[float] = SMT_TIMEOUT,
    smt_budget: Optional[float] = SMT_BUDGET,
) -> None:
    """Check constitutions: names, contradictions with witnesses (SMT), operationalizability."""
    from cai_dsl import __version__
    from cai_dsl.core.progress import progress
    from cai_dsl.diagnostics.dedupe import dedupe
    from cai_dsl.diagnostics.render import RenderContext, render
    from cai_dsl.diagnostics.rules import all_rules

    _check_format("lint", fmt, tuple(FORMATS))
    files, missing = const_files(paths)
    fail_missing(missing)
    config = lint_config(smt_timeout, smt_budget, select=_codes(select), ignore=_codes(ignore))
    budget = config.budget()
    all_diags = []
    sources: dict[str, str] = {}
    with progress(len(files), "lint", unit="file") as bar:
        for path in files:
            bar(0, step=f"{path}: parse and resolve")
            all_diags.extend(_lint_one(path, deployment, len(files) == 1, config, budget, empirical, target, sources,
                                       lambda label, path=path: bar(0, step=f"{path}: {label}")))
            bar(1, step="")
    # the same imported file reported from several roots: once
    unique = sorted(dedupe(all_diags), key=lambda d: d.sort_key())
    context = RenderContext(sources=sources, rules=all_rules(), tool_version=__version__)
    if unique or fmt != "text":
        print(render(fmt, unique, context))
    if fmt == "text":
        errors = sum(d.is_error for d in unique)
        warnings = sum(d.severity == "warning" for d in unique)
        print(f"{len(files)} file(s) checked: {errors} error(s), {warnings} warning(s)")
    errors = any(d.is_error for d in unique)
    warned = any(d.severity == "warning" for d in unique)
    raise SystemExit(1 if errors or (strict and warned) else 0)


def test_command(
    paths: List[str] = typer.Argument(..., help="`.const` files or directories"),
    fmt: str = typer.Option("text", "--format", help=" or ".join(TEST_FORMATS)),
    smt_timeout: Optional[float] = SMT_TIMEOUT,
    smt_budget: Optional[float] = SMT_BUDGET,
) -> None:
    """Run `test` and `property` blocks; failures print a counter-example and the policy there. An expectation
    the solver cannot decide within the budget is UNDECIDED (never a pass; exit 1)."""
    from cai_dsl.lang.resolver import resolve
    from cai_dsl.check.tests import describe_policy, failures_as_diagnostics, run_tests

    _check_format("test", fmt, TEST_FORMATS)
    files, missing = const_files(paths)
    fail_missing(missing)
    budget = lint_config(smt_timeout, smt_budget).budget()
    counts = {"passed": 0, "failed": 0, "undecided": 0}
    report = []
    for path in files:
        constitution = resolve(path)
        errors = [d for d in constitution.diagnostics if d.is_error]
        if errors:
            print_diagnostics(errors, constitution.sources)
            counts["failed"] += 1
            report.append({"file": path, "error": "constitution has errors", "cases": []})
            continue
        results = run_tests(constitution, budget)
        cases = []
        for r in results:
            outcome = r.outcome  # a vacuous case passes, with a warning (CAI403)
            counts[outcome] += 1
            said = {d.message: d for d in failures_as_diagnostics([r]) if d.code in ("CAI220", "CAI404")}
            cases.append(
                {
                    "name": r.name,
                    "kind": r.kind,
                    "deployment": r.deployment,
                    "line": r.case.span.line,
                    "passed": outcome == "passed",
                    "outcome": outcome,
                    "vacuous": r.vacuous,
                    "undecided": [{"code": d.code, "message": d.message} for d in said.values()],
                    "expectations": [
                        {
                            "expect": e.text,
                            "passed": e.passed,
                            "undecided": e.undecided is not None,
                            "counterexample": e.counterexample,
                            "note": e.note,
                            "policy": describe_policy(e.policy) if e.policy else None,
                        }
                        for e in r.results
                    ],
                }
            )
            if fmt == "text":
                mark = {"passed": "PASS", "failed": "FAIL", "undecided": "UNDECIDED"}[outcome]
                print(f"{mark} {path}:{r.case.span.line} {r.kind} \"{r.name}\" [{r.deployment}]")
                if r.vacuous:
                    print("     warning[CAI403]: vacuous, its given/forall matches no reachable scenario")
                if r.error:
                    print(f"     error: {r.error}")
                for d in said.values():
                    print(f"     {d.severity}[{d.code}]: {d.message}")
                for e in r.results:
                    if not e.passed and e.undecided is None:
                        print(f"     expect {e.text}: does not hold" + (f" ({e.note})" if e.note else ""))
                        print("       counter-example: " + ", ".join(f"{k}={v}" for k, v in e.counterexample.items()))
                        print("       policy there: " + describe_policy(e.policy))
                if said:
                    print(f"     help: {next(iter(said.values())).help}")
        report.append({"file": path, "cases": cases})
    if fmt == "json":
        print(json.dumps({"files": report, "summary": counts}, indent=2))
    else:
        undecided = f", {counts['undecided']} undecided" if counts["undecided"] else ""
        print(f"{counts['passed']} passed, {counts['failed']} failed{undecided}")
    raise SystemExit(1 if counts["failed"] or counts["undecided"] else 0)


def explain_command(
    path: str = typer.Argument(..., help="a `.const` file"),
    deployment: str = typer.Option(..., "--deployment", "-d", help="the deployment to explain"),
    given: str = typer.Option("", "--given", help='a scenario, e.g. "topic=medical, risk=high" (may be partial)'),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
    smt_timeout: Optional[float] = SMT_TIMEOUT,
    smt_budget: Optional[float] = SMT_BUDGET,
) -> None:
    """Print the resolved policy per behavior, the active principles, and why; what the solver could not decide
    within the budget is said so (exit 1)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from cai_dsl.check.explain import ScenarioError, explain, parse_scenario
    from cai_dsl.lang.resolver import resolve

    files, missing = const_files([path])
    fail_missing(missing)
    constitution = resolve(path)
    errors = [d for d in constitution.diagnostics if d.is_error]
    if errors:
        print_diagnostics(errors, constitution.sources)
        raise SystemExit(1)
    if deployment not in constitution.deployments:
        known = ", ".join(constitution.deployments) or "none"
        print(f"cai explain: no deployment `{deployment}` in {path} (deployments: {known})", file=sys.stderr)
        raise SystemExit(2)
    try:
        scenario = parse_scenario(given, constitution)
    except ScenarioError as exc:
        print(f"cai explain: --given: {exc}", file=sys.stderr)
        raise SystemExit(2)
    result = explain(constitution, deployment, scenario, lint_config(smt_timeout, smt_budget).budget())
    if as_json:
        print(json.dumps(result.to_json(), indent=2))
        raise SystemExit(1 if result.undecided else 0)
    console = Console(highlight=False, width=120)
    shown = ", ".join(f"{k}={v}" for k, v in scenario.items()) or "(any scenario)"
    console.print(f"deployment [bold]{deployment}[/bold], given {shown}")
    for part in result.undecided:
        console.print(f"[yellow]undecided[/yellow]: {escape(part.text)}")
    if result.undecided:
        console.print(escape("  (raise `--smt-timeout` / `--smt-budget`, or `[tool.cai] smt-timeout` / `smt-budget`)"))
    if result.reachable is None:
        raise SystemExit(1)
    if not result.reachable:
        console.print("this scenario is not reachable: it contradicts the deployment's assumptions")
        raise SystemExit(1)
    if result.policy is not None:
        policy = result.policy
        console.print("active principles: " + (", ".join(policy.active) or "none"))
        table = Table("behavior", "status", "decided by", "preferred by")
        for d in policy.decisions.values():
            table.add_row(d.behavior, d.status, ", ".join(d.reasons) or "-", ", ".join(d.preferred_by) or "-")
        console.print(table)
        for winner, loser, why in policy.wins:
            console.print(f"  {winner} wins over {loser} ({why})")
        for c in policy.unresolved:
            console.print(f"  [red]unresolved clash[/red] {c.first} vs {c.second} on {', '.join(c.behaviors)}")
        raise SystemExit(1 if policy.unresolved else 0)
    missing_facets = [f for f in constitution.facets if f not in scenario]
    console.print(f"partial scenario: open facets {', '.join(missing_facets)}")
    console.print("always active: " + (", ".join(result.always_active) or "none"))
    console.print("sometimes active: " + (", ".join(result.sometimes_active) or "none"))
    table = Table("behavior", "in every completion", "possible statuses (example completion)")
    for name, poss in result.behaviors.items():
        open_ = result.open_statuses.get(name, [])
        fixed = "undecided" if open_ else poss[0].status if len(poss) == 1 else "varies"
        detail = "; ".join(
            [f"{p.status} (e.g. {', '.join(f'{k}={v}' for k, v in p.example.items() if k not in scenario)})" for p in poss]
            + [f"{status}: undecided" for status in open_]
        )
        table.add_row(name, fixed, detail if len(poss) > 1 or open_ else "-")
    console.print(table)
    raise SystemExit(1 if result.undecided else 0)


def rules_command(
    sync_docs: Optional[str] = typer.Option(None, "--sync-docs", help="rewrite the generated parts of this docs/rules folder"),
) -> None:
    """List every rule (code, name, severity, scope, summary), or regenerate docs/rules from the registry."""
    from cai_dsl.diagnostics.docs import sync_rule_docs
    from cai_dsl.diagnostics.rules import all_rules

    if sync_docs is not None:
        for path in sync_rule_docs(sync_docs):
            print(f"wrote {path}")
        raise SystemExit(0)
    for r in all_rules():
        print(f"{r.code}  {r.name:<40} {r.severity:<8} {r.scope:<10} {r.summary}")
    raise SystemExit(0)
