"""`cai sl`, `cai sft`, `cai revise`, `cai serve`, `cai batch run`: running a compiled constitution.

Exit codes: 0 success; 1 the constitution has errors (printed as diagnostics); 2 usage errors and
bad inputs (missing file, malformed prompts line, unknown deployment or target, a run directory
written with other arguments, a model that cannot be loaded); 3 requests are waiting in a batch file
(target backend `batch`: run it, e.g. with `cai batch run`, and rerun). Progress bars go to stderr,
results to stdout.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from cai_dsl.core.errors import CaiError


def register(app: typer.Typer) -> None:
    app.command("sl")(sl_command)
    app.command("sft")(sft_command)
    app.command("revise")(revise_command)
    app.command("serve")(serve_command)
    batch = typer.Typer(help="OpenAI batch files: run one against a server", no_args_is_help=True)
    batch.command("run")(batch_run_command)
    app.add_typer(batch, name="batch")


def _usage(message: str) -> None:
    print(f"cai: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _prepare(path: str, deployment: Optional[str], target: Optional[str], seed: Optional[int] = None):
    """Compile or exit: diagnostics -> exit 1, bad input -> exit 2."""
    from cai_dsl.cli.common import lint_config, print_diagnostics
    from cai_dsl.run.sl import SLCompileError, SLError, prepare_job

    if not deployment:
        _usage("name a deployment with --deployment")
    try:
        return prepare_job(path, deployment, target, seed=seed, smt_budget=lint_config(None, None).budget())
    except SLCompileError as exc:
        print_diagnostics(exc.diagnostics, exc.sources)
        raise SystemExit(1)
    except SLError as exc:
        _usage(str(exc))


def _positive(name: str, value: Optional[int], minimum: int = 1) -> None:
    if value is not None and value < minimum:
        _usage(f"{name} must be at least {minimum}")


def sl_command(
    path: str = typer.Argument(..., help="the `.const` file"),
    deployment: Optional[str] = typer.Option(None, "--deployment", "-d", help="the deployment to run"),
    target: Optional[str] = typer.Option(None, "--target", "-t", help="packaged target name or .toml path (default: smollm2-cpu)"),
    prompts: Optional[str] = typer.Option(None, "--prompts", help="prompts JSONL (default: a sample of the packaged red-team and helpful prompts)"),
    limit: Optional[int] = typer.Option(None, "--limit", "-n", help="use the first N prompts (of the default sample: N prompts)"),
    out: Path = typer.Option(Path("runs/sl"), "--out", "-o", help="output directory"),
    no_train: bool = typer.Option(False, "--no-train", help="generate the data only, no LoRA fine-tuning"),
    seed: Optional[int] = typer.Option(None, "--seed", help="override the deployment's `set seed`"),
    rounds: Optional[int] = typer.Option(None, "--rounds", help="critique/revision rounds (default: the program's)"),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", help="token budget per generated turn (default: the target's)"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="rows per generation batch (default: the target's)"),
    chunk_size: Optional[int] = typer.Option(None, "--chunk-size", help="prompts processed together, the unit of resumption (default: 4 batches)"),
    no_history: bool = typer.Option(False, "--no-history", help="critique only the latest revision (default: all earlier rounds in context, as in the paper)"),
    no_gate: bool = typer.Option(False, "--no-gate", help="keep every non-empty revision (no quality/policy gate, no canonical openings)"),
    revisions: str = typer.Option("final", "--revisions", help="SFT on the `final` revision or on `all` rounds' revisions"),
    no_helpful: bool = typer.Option(False, "--no-helpful", help="SFT without the helpful prompts' responses"),
    sft_steps: Optional[int] = typer.Option(None, "--sft-steps", help="stop fine-tuning after N optimizer steps (default: the target's epochs)"),
    no_progress: bool = typer.Option(False, "--no-progress", help="no progress bars"),
) -> None:
    """SL-CAI: generate, critique and revise responses with a compiled constitution, then LoRA fine-tune on the revisions."""
    from cai_dsl.run.backends.base import BackendError
    from cai_dsl.run.train.sft import SFTError, SFTOptions, train_sft
    from cai_dsl.run.sl import SLError, SLOptions, default_prompts, load_prompts, run_sl

    _positive("--limit", limit)
    _positive("--rounds", rounds, 0)
    _positive("--max-new-tokens", max_new_tokens)
    _positive("--batch-size", batch_size)
    _positive("--chunk-size", chunk_size)
    _positive("--sft-steps", sft_steps)
    if revisions not in ("final", "all"):
        _usage(f"--revisions must be `final` or `all`, not `{revisions}`")
    if prompts is not None and not Path(prompts).exists():
        _usage(f"no such file: {prompts}")
    job = _prepare(path, deployment, target, seed)
    options = SLOptions(
        rounds=rounds,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        chunk_size=chunk_size,
        history=not no_history,
        gate=not no_gate,
    )
    try:
        items = load_prompts(prompts, limit, facets=job.program.facets) if prompts else default_prompts(limit, seed=job.program.provenance.seed)
        result = run_sl(job, items, out, options=options, progress=not no_progress)
    except (SLError, BackendError) as exc:
        _usage(str(exc))
    revised = sum(1 for r in result.records if any(t.get("revision") for t in r["rounds"]))
    print(
        f"sl-data: {result.path} ({len(result.records)} records, {revised} revised; {result.new} new, "
        f"{result.resumed} resumed) in {result.seconds:.1f} s, {result.tokens_per_second:.1f} generated tok/s"
    )
    if result.gated:
        rates = ", ".join(f"{a.principle} {a.accepted}/{a.proposed}" for a in result.acceptance.values()) or "none"
        print(f"gate: revisions accepted per principle: {rates}; {result.openings} from canonical openings; "
              f"{result.excluded} records without an accepted response (not trained on)")
    if no_train:
        raise SystemExit(0)
    try:
        sft = train_sft(
            out,
            options=SFTOptions(revisions=revisions, include_helpful=not no_helpful, max_steps=sft_steps),
            progress=not no_progress,
        )
    except SFTError as exc:
        _usage(str(exc))
    _print_sft(sft)
    raise SystemExit(0)


def _print_sft(sft) -> None:
    """The adapter line of `cai sl` / `cai sft` (or why there is none: 0 accepted targets, exit 0)."""
    if not sft.trained:
        print(sft.no_targets)
        return
    what = "up to date" if sft.skipped else f"{sft.steps} steps, loss {sft.loss}, {sft.seconds:.1f} s"
    print(f"adapter: {sft.adapter} ({sft.examples} examples; {what})")


def sft_command(
    run_dir: Path = typer.Argument(..., help="a directory written by `cai sl`"),
    revisions: str = typer.Option("final", "--revisions", help="`final` revision or `all` rounds' revisions"),
    no_helpful: bool = typer.Option(False, "--no-helpful", help="without the helpful prompts' responses"),
    helpful_repeats: int = typer.Option(1, "--helpful-repeats", help="each helpful/look-alike answer this many times (class balance)"),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="stop after N optimizer steps"),
    epochs: Optional[int] = typer.Option(None, "--epochs"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="examples per step and process"),
    learning_rate: Optional[float] = typer.Option(None, "--learning-rate"),
    base_model: Optional[str] = typer.Option(None, "--base-model", help="model spec (default: the program's policy model)"),
    no_progress: bool = typer.Option(False, "--no-progress"),
) -> None:
    """LoRA SFT on the SL-CAI data of RUN_DIR (one process; see docs/execution.md for torchrun/accelerate)."""
    from cai_dsl.run.train.sft import SFTError, SFTOptions, train_sft

    if revisions not in ("final", "all"):
        _usage(f"--revisions must be `final` or `all`, not `{revisions}`")
    _positive("--max-steps", max_steps)
    _positive("--epochs", epochs)
    _positive("--batch-size", batch_size)
    _positive("--helpful-repeats", helpful_repeats)
    options = SFTOptions(
        revisions=revisions,
        include_helpful=not no_helpful,
        helpful_repeats=helpful_repeats,
        max_steps=max_steps,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
    )
    try:
        sft = train_sft(run_dir, options=options, base_model=base_model, progress=not no_progress)
    except SFTError as exc:
        _usage(str(exc))
    _print_sft(sft)
    raise SystemExit(0)


def revise_command(
    path: str = typer.Argument(..., help="the `.const` file"),
    prompt: str = typer.Argument(..., help="the user's prompt"),
    deployment: Optional[str] = typer.Option(None, "--deployment", "-d"),
    response: Optional[str] = typer.Option(None, "--response", help="critique this response instead of generating one"),
    target: Optional[str] = typer.Option(None, "--target", "-t"),
    rounds: Optional[int] = typer.Option(None, "--rounds", help="critique/revision rounds (default: the program's)"),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens"),
    seed: Optional[int] = typer.Option(None, "--seed"),
) -> None:
    """The constitutional loop at inference time: generate, critique and revise one answer, printing each step."""
    from cai_dsl.run.backends.base import BackendError
    from cai_dsl.run.sl import ModelSet, SLError, SLOptions, revise_once

    _positive("--rounds", rounds, 0)
    _positive("--max-new-tokens", max_new_tokens)
    if not prompt.strip():
        _usage("the prompt is empty")
    job = _prepare(path, deployment, target, seed)
    options = SLOptions(rounds=rounds, max_new_tokens=max_new_tokens)
    models = ModelSet(job.program, batch_size=1)

    def show(kind: str, _index: int, data: dict) -> None:
        if kind == "initial":
            label = "response (given)" if response is not None else "response"
            print(f"{label}:\n  {data['response']}\n", flush=True)
        elif kind == "critique":
            print(f"round {data['round'] + 1} - principle {data['principle']}", flush=True)
            print(f"  critique: {data['critique']}", flush=True)
            if data["satisfied"]:
                print("  (no issues: stop)", flush=True)
        else:
            print(f"  revision: {data['revision']}\n", flush=True)

    print(f"prompt:\n  {prompt}\n", flush=True)
    try:
        result = revise_once(job.program, models, prompt, response=response, options=options, on_step=show)
    except (SLError, BackendError) as exc:
        _usage(str(exc))
    print(f"final ({result['stopped']}):\n  {result['final']}")
    raise SystemExit(0)


def serve_command(
    model: Optional[str] = typer.Option(None, "--model", help="model spec or adapter directory (default: the constitution's policy model, else the embedded model)"),
    adapter: Optional[str] = typer.Option(None, "--adapter", help="a LoRA adapter directory to apply to --model"),
    lora: Optional[List[str]] = typer.Option(None, "--lora", help="NAME=DIR: also serve LoRA adapter DIR as model NAME (repeatable; like vLLM's --lora-modules)"),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port"),
    constitution: Optional[str] = typer.Option(None, "--constitution", help="critique and revise every answer with this `.const` file"),
    deployment: Optional[str] = typer.Option(None, "--deployment", "-d", help="the deployment of --constitution"),
    target: Optional[str] = typer.Option(None, "--target", "-t", help="target of --constitution (default: smollm2-cpu)"),
    rounds: Optional[int] = typer.Option(None, "--rounds", help="critique/revision rounds per answer (default: the program's)"),
    batch_size: int = typer.Option(16, "--batch-size", help="rows per forward pass; concurrent chat requests are batched up to this"),
    api_key_env: Optional[str] = typer.Option(None, "--api-key-env", help="require `Authorization: Bearer $NAME` (the variable's name, not the key)"),
    api_key_opt: Optional[str] = typer.Option(None, "--api-key", help="require `Authorization: Bearer KEY` (visible in `ps`: prefer --api-key-env); needed for a non-loopback --host"),
    max_body_bytes: int = typer.Option(1 << 20, "--max-body-bytes", help="refuse request bodies larger than this (413)"),
    max_tokens: int = typer.Option(4096, "--max-tokens", help="the largest max_tokens a request may ask for"),
    max_prompts: int = typer.Option(32, "--max-prompts", help="the most prompts in one /v1/completions request"),
    timeout: float = typer.Option(30.0, "--timeout", help="socket timeout in seconds (a half-sent request is dropped)"),
) -> None:
    """An OpenAI-compatible server; with --constitution every answer goes through the deployment's critique/revise loop."""
    import os

    from cai_dsl.run.backends.base import BackendError
    from cai_dsl.run.loading import DEFAULT_MODEL, ModelError, load_model
    from cai_dsl.run.serve import ServeError, ServeLimits, require_api_key

    if not 0 <= port <= 65535:
        _usage("--port must be in 0..65535")
    _positive("--batch-size", batch_size)
    _positive("--rounds", rounds, 0)
    if (constitution is None) != (deployment is None):
        _usage("--constitution and --deployment go together")
    api_key = api_key_opt
    if api_key_env and api_key_opt:
        _usage("--api-key and --api-key-env are exclusive")
    if api_key_env:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            _usage(f"the environment variable {api_key_env} is not set")
    for name, value in (("--max-body-bytes", max_body_bytes), ("--max-tokens", max_tokens), ("--max-prompts", max_prompts)):
        _positive(name, value)
    if not timeout > 0:
        _usage("--timeout must be positive")
    limits = ServeLimits(max_body_bytes, max_tokens, max_prompts, timeout_s=timeout, max_batch=batch_size)
    loras = _lora_modules(lora or [])
    if loras and (adapter is not None or constitution is not None):
        _usage("--lora serves adapters next to the plain base model: not with --adapter or --constitution")
    try:
        require_api_key(host, api_key)
    except ServeError as exc:
        _usage(str(exc))
    job = _prepare(constitution, deployment, target) if constitution else None
    spec = model or (job.program.run.models.policy if job else DEFAULT_MODEL)
    if job is None and adapter is None:
        from cai_dsl.run.serve import run_server

        try:
            run_server(spec, host, port, batch_size, api_key=api_key, limits=limits, adapters=loras)
        except (BackendError, ModelError, CaiError) as exc:
            _usage(str(exc))
        except OSError as exc:
            _usage(f"cannot serve on {host}:{port}: {exc}")
        raise SystemExit(0)
    from cai_dsl.run.backends.transformers_backend import TransformersBackend
    from cai_dsl.run.prompts import PromptRenderer
    from cai_dsl.run.serve import is_loopback, make_server, serve_forever
    from cai_dsl.run.sl import SLOptions, make_transform

    try:
        backend = TransformersBackend(load_model(spec, adapter=adapter), batch_size=batch_size)
    except (BackendError, ModelError) as exc:
        _usage(str(exc))
    transform = make_transform(job.program, backend, options=SLOptions(rounds=rounds)) if job else None
    try:
        renderer = PromptRenderer.of(job.program) if job else None
        server = make_server(
            backend, host, port, transform=transform, api_key=api_key, renderer=renderer, limits=limits
        )
    except OSError as exc:
        _usage(f"cannot serve on {host}:{port}: {exc}")
    if not is_loopback(host):
        print(f"warning: serving on {host}, reachable from other machines", file=sys.stderr)
    loop = f", answers revised by {job.source.name} [{job.deployment}]" if job else ""
    print(f"serving {backend.name} at {server.url}{loop} (Ctrl-C to stop)", file=sys.stderr)
    serve_forever(server)
    raise SystemExit(0)


def _lora_modules(specs: list[str]) -> dict[str, str]:
    """``NAME=DIR`` options as a mapping, with a usage error for a malformed or repeated name."""
    out: dict[str, str] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name.strip() or not path.strip():
            _usage(f"--lora {spec!r}: expected NAME=DIR")
        if name in out:
            _usage(f"--lora: the name {name!r} is given twice")
        out[name.strip()] = path.strip()
    return out


def batch_run_command(
    requests: Path = typer.Argument(..., help="the batch file (JSONL request lines with custom_id, url, body)"),
    url: str = typer.Option(..., "--url", help="the server's API root, e.g. http://127.0.0.1:8000/v1 (`cai serve`, vLLM)"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="results file (default: results.jsonl beside REQUESTS)"),
    concurrency: int = typer.Option(16, "--concurrency", help="requests in flight at once"),
    api_key_env: Optional[str] = typer.Option(None, "--api-key-env", help="send `Authorization: Bearer $NAME`"),
) -> None:
    """Send every request of an OpenAI batch file to a server and write the results file (resumable: answered
    requests are skipped); the `batch` target backend reads it back on the next run."""
    import os

    from cai_dsl.core.progress import progress
    from cai_dsl.run.backends.base import BackendError
    from cai_dsl.run.backends.batch_file import run_batch

    _positive("--concurrency", concurrency)
    if not requests.is_file():
        _usage(f"no such file: {requests}")
    api_key = os.environ.get(api_key_env) if api_key_env else None
    if api_key_env and not api_key:
        _usage(f"the environment variable {api_key_env} is not set")
    output = output or requests.with_name("results.jsonl")
    with progress(None, "batch", unit="request") as bar:
        try:
            sent, failed = run_batch(requests, url, output, api_key=api_key, concurrency=concurrency,
                                     on_result=lambda done, total: bar(1))
        except BackendError as exc:
            _usage(str(exc))
    print(f"{sent} requests sent, {failed} failed; results: {output}")
    raise SystemExit(1 if failed else 0)
