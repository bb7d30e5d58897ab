"""Decoding against the memory-bandwidth roofline, side by side with the naive one-at-a-time loop.

    .venv/bin/python bench/bench_roofline.py [--rows 16] [--tokens 48] [--model embedded:smollm2-135m] [--dtype float32]

Measures the machine's read bandwidth (best of a few sums over a 512 MiB buffer), then runs each
configuration in its own process (so peak RSS is per configuration):

* naive: ``model.generate`` one critique prompt at a time (the reference path, ``fast_decode=False``);
* b1 / b1-preamble: batch 1 through the fast decoder, plain prompts / critique prompts after the shared
  few-shot preamble (its KV computed once);
* b16 / b16-preamble: the same at batch ``--rows``.

Critique prompts are the compiled paper constitution's (deployment ``base``), so the preamble is the real
one. ``--dtype bfloat16`` loads the weights in bfloat16 (the default CPU target's ``auto`` on a CPU with native
bfloat16): half the bytes per step, so half the floor's time. The floor of a configuration is
``rows * bandwidth / bytes read per decode step`` (the weights, plus the K/V a step reads: the preamble once
when shared, once per row otherwise); tokens/s counts every generated token over the whole call (prefill
included). The load average is printed: on a shared machine the figures
are lower bounds of what the code does.
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
HERE = os.path.dirname(os.path.abspath(__file__))
PAPER = os.path.join(HERE, "..", "constitutions", "anthropic-2022.const")
CONFIGS = ("naive", "b1", "b1-preamble", "b16", "b16-preamble")


def read_bandwidth(mib: int = 512, repeats: int = 5) -> float:
    """Bytes per second of the best full read of a ``mib`` MiB float32 tensor."""
    import torch

    buf = torch.ones(mib * (1 << 20) // 4)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        buf.sum()
        best = min(best, time.perf_counter() - t)
    return buf.numel() * 4 / best


def _prompts(args: argparse.Namespace, with_preamble: bool) -> list:
    from cai_dsl.run.sl import default_prompts, prepare_job
    from cai_dsl.run.backends.base import Prompt

    items = [i for i in default_prompts(None, seed=0) if not i.helpful][: args.rows]
    if not with_preamble:
        return [Prompt.user(i.prompt) for i in items]
    program = prepare_job(PAPER, "base").program
    answer = "Sure, here is what you asked for."
    return [
        Prompt.from_chat(program.critique_messages(i.prompt, answer, program.select_principles(0, i.scenario, program.rng(i.id, 0))[0]))
        for i in items
    ]


def _child(args: argparse.Namespace) -> dict:
    import torch

    from cai_dsl.run.backends.base import GenerationParams
    from cai_dsl.run.backends.transformers_backend import TransformersBackend
    from cai_dsl.run.generation import BatchedGenerator
    from cai_dsl.run.loading import load_model

    cfg = args.child
    preamble = cfg == "naive" or cfg.endswith("preamble")
    batch = 1 if cfg in ("naive", "b1", "b1-preamble") else args.rows
    prompts = _prompts(args, preamble)
    loaded = load_model(args.model, dtype=getattr(torch, args.dtype))
    backend = TransformersBackend(loaded, batch_size=batch, fast_decode=cfg != "naive")
    params = GenerationParams(max_new_tokens=args.tokens, temperature=0.0, seed=0)
    gen = BatchedGenerator(backend, batch_size=batch, prefix_cache=preamble and cfg != "naive")
    rows = [backend.encode_prompt(p) for p in prompts]
    if batch == 1 and preamble and cfg != "naive":
        gen.generate_ids(rows[:2], GenerationParams(max_new_tokens=1))  # caches the shared preamble once
    t0 = time.perf_counter()
    out = gen.generate_ids(rows, params) if cfg != "naive" else [backend.generate_ids([r], params)[0] for r in rows]
    wall = time.perf_counter() - t0
    shared = 0
    while shared < min(map(len, rows)) and all(r[shared] == rows[0][shared] for r in rows):
        shared += 1
    weights = sum(p.numel() * p.element_size() for p in loaded.model.parameters())
    c = loaded.model.config
    kv_per_token = (2 * c.num_hidden_layers * c.num_key_value_heads * (c.hidden_size // c.num_attention_heads)
                    * torch.finfo(getattr(torch, args.dtype)).bits // 8)
    mean_len = sum(map(len, rows)) / len(rows) + args.tokens / 2
    if preamble and cfg != "naive":
        kv = kv_per_token * (shared + batch * (mean_len - shared))
    else:
        kv = kv_per_token * batch * mean_len
    tokens = sum(g.completion_tokens for g in out)
    return {
        "config": cfg, "rows": len(rows), "batch": batch, "tokens": tokens, "seconds": wall, "tok_per_s": tokens / wall,
        "bytes_per_step": weights + kv, "prompt_tokens": round(sum(map(len, rows)) / len(rows)), "shared_prefix": shared,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "threads": torch.get_num_threads(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--model", default="embedded:smollm2-135m")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        from cai_dsl.core.memory import keep_freed_memory

        keep_freed_memory()  # as the `cai` command does (CAI_MALLOC_DEFAULT=1: glibc's defaults)
        print(json.dumps(_child(args)))
        return
    bw = read_bandwidth()
    load = os.getloadavg()
    malloc = "glibc defaults" if os.environ.get("CAI_MALLOC_DEFAULT") == "1" else "freed memory kept"
    print(f"malloc: {malloc}; weights {args.dtype}; read bandwidth {bw / 1e9:.1f} GB/s; load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; {os.cpu_count()} CPUs")
    results = {}
    for cfg in args.configs.split(","):
        cmd = [sys.executable, __file__, "--child", cfg, "--rows", str(args.rows), "--tokens", str(args.tokens), "--model", args.model,
               "--dtype", args.dtype]
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            print(f"{cfg}: failed\n{res.stderr[-2000:]}")
            continue
        r = json.loads(res.stdout.strip().splitlines()[-1])
        r["floor"] = r["batch"] * bw / r["bytes_per_step"]
        results[cfg] = r
    print(f"{'config':<14}{'batch':>6}{'prompt':>8}{'shared':>8}{'tokens':>8}{'tok/s':>9}{'floor':>9}{'of floor':>10}{'RSS MB':>9}")
    for cfg, r in results.items():
        print(f"{cfg:<14}{r['batch']:>6}{r['prompt_tokens']:>8}{r['shared_prefix']:>8}{r['tokens']:>8}{r['tok_per_s']:>9.1f}"
              f"{r['floor']:>9.1f}{r['tok_per_s'] / r['floor']:>9.0%}{r['peak_rss_mb']:>9.0f}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    naive, b1, best = results.get("naive"), results.get("b1"), results.get("b16-preamble")
    checks = []
    if b1:
        checks.append(("batch 1 at >= 80% of its floor", b1["tok_per_s"] >= 0.8 * b1["floor"]))
    if best:
        checks.append(("batched critique >= 200 tokens/s", best["tok_per_s"] >= 200))
    if best and naive:
        checks.append((f"batched >= 10x naive ({best['tok_per_s'] / naive['tok_per_s']:.1f}x)", best["tok_per_s"] >= 10 * naive["tok_per_s"]))
        checks.append((f"batched peak RSS <= 1.5x naive ({best['peak_rss_mb'] / naive['peak_rss_mb']:.2f}x)",
                       best["peak_rss_mb"] <= 1.5 * naive["peak_rss_mb"]))
    for text, ok in checks:
        print(f"  [{'met' if ok else 'NOT met'}] {text}")


if __name__ == "__main__":
    main()
