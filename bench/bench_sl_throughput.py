"""Critique-revision throughput: the batched SL-CAI pipeline against a naive one-example-at-a-time loop.

    .venv/bin/python bench/bench_sl_throughput.py [--prompts 16] [--rounds 1] [--tokens 48] [--batch-size 16]

Both run the same compiled program (the paper's constitution, deployment `base`), the same prompts
(a deterministic sample of the packaged red-team prompts), the same principles per prompt and round,
the same prompts text and token budget, with greedy decoding, on the embedded SmolLM2-135M:

* naive: what LangChain's ConstitutionalChain does: for each example, generate, critique, revise,
  one model call at a time (the transformers backend with batch size 1);
* batched: ``cai_dsl.run.sl.SLRunner``: one call per stage across all prompts, rows sorted by length,
  the shared few-shot preamble run once (KV reuse);
* batched-no-prefix (``--modes naive,batched,batched-no-prefix``): batching alone, no KV reuse.

Each mode runs in its own process, so its peak RSS (``resource.getrusage``) is its own. Reported:
generated tokens per second (wall clock), CPU seconds, peak RSS, and the batched/naive ratio.
Numbers depend heavily on the machine and on other processes competing for its cores.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
PAPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "constitutions", "anthropic-2022.const")


def _child(args: argparse.Namespace) -> dict:
    from cai_dsl.run.backends.base import GenerationParams, Prompt
    from cai_dsl.run.backends.transformers_backend import TransformersBackend
    from cai_dsl.compile.ir import HistoryTurn
    from cai_dsl.run.loading import load_model
    from cai_dsl.run.sl import STOP_STRINGS, ModelSet, SLOptions, SLRunner, default_prompts, prepare_job

    job = prepare_job(args.constitution, args.deployment)
    program = job.program
    items = [i for i in default_prompts(None, seed=0) if not i.helpful][: args.prompts]
    loaded = load_model(args.model)
    params = GenerationParams(max_new_tokens=args.tokens, temperature=0.0, seed=0)
    crit_params = GenerationParams(max_new_tokens=args.tokens, temperature=0.0, seed=0, stop=STOP_STRINGS)
    t0, c0 = time.perf_counter(), time.process_time()
    tokens = 0
    if args.child == "naive":
        backend = TransformersBackend(loaded, batch_size=1)
        for item in items:  # one example at a time: generate, then critique -> revise per round
            g = backend.generate([Prompt.user(item.prompt)], params)[0]
            tokens += g.completion_tokens
            initial, history = g.text.strip(), []
            for r in range(args.rounds):
                pid = program.select_principles(r, item.scenario, program.rng(item.id, r))[0]
                c = backend.generate([Prompt.from_chat(program.critique_messages(item.prompt, initial, pid, history))], crit_params)[0]
                tokens += c.completion_tokens
                if program.is_satisfied(c.text.strip()):
                    break
                rev = backend.generate(
                    [Prompt.from_chat(program.revision_messages(item.prompt, initial, pid, c.text.strip(), history))], crit_params
                )[0]
                tokens += rev.completion_tokens
                history.append(HistoryTurn(principle_id=pid, critique=c.text.strip(), revision=rev.text.strip()))
    else:
        backend = TransformersBackend(loaded, batch_size=args.batch_size)
        models = ModelSet.from_backend(program, backend, batch_size=args.batch_size)
        models.prefix_cache = args.child == "batched"
        options = SLOptions(rounds=args.rounds, max_new_tokens=args.tokens, temperature=0.0, batch_size=args.batch_size,
                            prefix_cache=args.child == "batched")
        runner = SLRunner(program, models, options)
        results = runner.run_chunk(items, "bench")
        tokens = sum(sum(r["tokens"].values()) for r in results)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"mode": args.child, "tokens": tokens, "seconds": wall, "cpu_seconds": cpu, "tok_per_s": tokens / wall,
            "peak_rss_mb": rss_kb / 1024, "prompts": len(items)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--tokens", type=int, default=48, help="max new tokens per generated turn")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--model", default="embedded:smollm2-135m")
    ap.add_argument("--constitution", default=PAPER)
    ap.add_argument("--deployment", default="base")
    ap.add_argument("--modes", default="naive,batched")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args)))
        return 0
    from cai_dsl.run.loading import resolve_model_dir

    resolve_model_dir(args.model)  # build the model cache once, outside the timings
    results = {}
    for mode in args.modes.split(","):
        cmd = [sys.executable, os.path.abspath(__file__), "--child", mode, "--prompts", str(args.prompts),
               "--rounds", str(args.rounds), "--tokens", str(args.tokens), "--batch-size", str(args.batch_size),
               "--model", args.model, "--constitution", args.constitution, "--deployment", args.deployment]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr[-4000:], file=sys.stderr)
            return 1
        results[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
        r = results[mode]
        print(f"{mode:>18}: {r['tokens']:5d} tokens in {r['seconds']:7.1f} s = {r['tok_per_s']:6.2f} tok/s "
              f"(cpu {r['cpu_seconds']:.0f} s), peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
    if "naive" in results:
        for mode, r in results.items():
            if mode != "naive":
                print(f"{mode} / naive throughput: {r['tok_per_s'] / results['naive']['tok_per_s']:.2f}x")
    print(f"({args.prompts} prompts, {args.rounds} round(s), {args.tokens} new tokens, batch size {args.batch_size}, "
          f"torch threads: {os.environ.get('OMP_NUM_THREADS', 'default')}, load average before: {os.getloadavg()[0]:.2f})")
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
