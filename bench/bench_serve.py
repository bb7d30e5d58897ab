"""`cai serve` micro-batching: 16 concurrent chat completions from the official `openai` client vs the same 16
sent one after another, against one server in this process.

    .venv/bin/python bench/bench_serve.py [--clients 16] [--tokens 48] [--model embedded:smollm2-135m]

Prints completion tokens/s of both runs, their ratio (target >= 5x), the batch sizes the worker ran and whether
the greedy answers were identical; the load average says whether the machine was idle.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROMPTS = [
    "How do I reverse a list in Python?", "What causes the seasons on Earth?", "Give me a tip for a job interview.",
    "How do plants make food?", "What is a good name for a cat?", "Explain what an API is.",
    "How do I boil an egg?", "Why is the sea salty?", "What is the capital of Canada?",
    "How can I sleep better?", "What is a prime number?", "How do I make a cup of tea?",
    "Suggest a weekend hobby.", "What does a CPU do?", "How do vaccines work?", "Why do cats purr?",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--model", default="embedded:smollm2-135m")
    args = parser.parse_args()

    import openai
    import torch

    from cai_dsl.run.backends.transformers_backend import TransformersBackend
    from cai_dsl.run.serve import ServeLimits, make_server

    torch.set_num_threads(os.cpu_count() or 1)
    backend = TransformersBackend(args.model, batch_size=args.clients)
    server = make_server(backend, limits=ServeLimits(max_batch=args.clients))  # the server's default window
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    client = openai.OpenAI(base_url=server.url, api_key="unused", timeout=600, max_retries=0)
    prompts = [PROMPTS[i % len(PROMPTS)] + ("" if i < len(PROMPTS) else f" ({i})") for i in range(args.clients)]

    def ask(q: str) -> tuple[str, int]:
        r = client.chat.completions.create(model=server.model_name, messages=[{"role": "user", "content": q}],
                                           max_tokens=args.tokens, temperature=0)
        return r.choices[0].message.content, r.usage.completion_tokens

    ask("warm up")
    print(f"{args.clients} chat completions, {args.tokens} max tokens, greedy; load average {os.getloadavg()[0]:.2f}")
    t = time.perf_counter()
    one_by_one = [ask(q) for q in prompts]
    seq_s = time.perf_counter() - t
    before = server.worker.stats.batches
    t = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.clients) as pool:
        together = list(pool.map(ask, prompts))
    con_s = time.perf_counter() - t
    batches = server.worker.stats.batches - before
    seq_tok, con_tok = sum(n for _, n in one_by_one), sum(n for _, n in together)
    print(f"{'run':<12}{'seconds':>9}{'tokens':>8}{'tok/s':>8}")
    print(f"{'sequential':<12}{seq_s:>9.2f}{seq_tok:>8}{seq_tok / seq_s:>8.1f}")
    print(f"{'concurrent':<12}{con_s:>9.2f}{con_tok:>8}{con_tok / con_s:>8.1f}")
    ratio = (con_tok / con_s) / (seq_tok / seq_s)
    same = sum(a == b for (a, _), (b, _) in zip(one_by_one, together))
    print(f"ratio {ratio:.2f}x (target >= 5: {'met' if ratio >= 5 else 'NOT met'}); {batches} batches (largest {server.worker.stats.largest_batch}); "
          f"identical answers {same}/{len(prompts)}; load average {os.getloadavg()[0]:.2f}")
    server.shutdown()
    server.server_close()


if __name__ == "__main__":
    main()
