"""Measure the execution layer on the embedded model: cache build/reload, generation tokens/s by batch size,
and scoring with and without shared-prefix KV reuse.

    .venv/bin/python bench/bench_generation.py [--model SPEC] [--tokens 32] [--prompts 8]

Numbers depend heavily on the machine (and on other processes competing for its cores).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="embedded:smollm2-135m")
    ap.add_argument("--tokens", type=int, default=32, help="new tokens per prompt")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--batch-sizes", default="1,8")
    args = ap.parse_args(argv)

    import torch

    from cai_dsl.run.backends import GenerationParams, Prompt
    from cai_dsl.run.backends.transformers_backend import TransformersBackend
    from cai_dsl.run.loading import load_model, resolve_model_dir

    print(f"torch threads: {torch.get_num_threads()}, cpus: {os.cpu_count()}")
    t = time.perf_counter()
    resolve_model_dir(args.model)
    print(f"resolve (cache build if first run): {time.perf_counter() - t:.2f} s")
    t = time.perf_counter()
    loaded = load_model(args.model)
    print(f"load from cache: {time.perf_counter() - t:.2f} s")

    topics = ["the moon", "bread", "rivers", "chess", "volcanoes", "bees", "trains", "music", "glass", "clouds"]
    prompts = [Prompt.user(f"Write two sentences about {topics[i % len(topics)]}.") for i in range(args.prompts)]
    # min_new_tokens-like: no stop strings, and EOS may end rows early, so count the tokens actually produced
    params = GenerationParams(max_new_tokens=args.tokens)
    for bs in [int(x) for x in args.batch_sizes.split(",")]:
        backend = TransformersBackend(loaded, batch_size=bs)
        backend.generate(prompts[:1], GenerationParams(max_new_tokens=2))  # warm-up
        t = time.perf_counter()
        gens = backend.generate(prompts, params)
        dt = time.perf_counter() - t
        produced = sum(g.completion_tokens for g in gens)
        print(f"generate batch_size={bs}: {produced} tokens in {dt:.2f} s = {produced / dt:.1f} tokens/s")

    preamble = "Answer the questions. " + " ".join(
        f"Question: which is larger, {i} or {i + 3}? Answer: {i + 3}." for i in range(25)
    )
    score_prompts = [
        Prompt.user(f"{preamble}\nQuestion: which is larger, {n} or {n + 7}?", assistant_prefix="Answer:")
        for n in range(args.prompts)
    ]
    options = [f" {n}" for n in range(4)]
    for cache in (False, True):
        backend = TransformersBackend(loaded, batch_size=8, prefix_cache=cache)
        backend.score(score_prompts[:1], options[:1])
        t = time.perf_counter()
        backend.score(score_prompts, options)
        dt = time.perf_counter() - t
        n_tok = len(backend.encode_prompt(score_prompts[0]))
        print(
            f"score {len(score_prompts)} prompts x {len(options)} options (~{n_tok} prompt tokens), "
            f"prefix_cache={cache}: {dt:.2f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
