"""Judge-question scoring with prefix sharing vs one row per (prompt, answer), side by side in one run.

    .venv/bin/python bench/bench_judge_scoring.py [--responses 16] [--behaviors refuse,detailed_instructions]

The responses are the first ``--responses`` of the hand-labelled set (``cai_dsl/data/labelled_responses.jsonl``),
each with its request; the questions are the standard library's judge questions of ``--behaviors`` (each asked in
two phrasings, each scored for " Yes" and " No"), as ``cai eval models`` asks them. Both paths run the same
fast attention; "plain" scores every (prompt, answer) as its own row (``prefix_cache=False``), "shared" runs
every shared token once (:mod:`cai_dsl.run.backends.prefix_scoring`). Prints the time, the tokens run through
the model, the ratio and the largest difference in P(yes); the load average says whether the machine was idle.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "cai_dsl", "data", "labelled_responses.jsonl")
VOCABULARY = os.path.join(HERE, "..", "constitutions", "vocabulary.const")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--responses", type=int, default=16)
    parser.add_argument("--behaviors", default="refuse,detailed_instructions")
    parser.add_argument("--model", default="embedded:smollm2-135m")
    args = parser.parse_args()

    import torch

    from cai_dsl.lang.resolver import resolve
    from cai_dsl.run.backends import shared_prefix
    from cai_dsl.run.backends.transformers_backend import TransformersBackend
    from cai_dsl.run.loading import load_model
    from cai_dsl.run.policy.detectors import DetectorSet
    from cai_dsl.run.policy.labelled import declared_specs

    torch.set_num_threads(os.cpu_count() or 1)
    with open(DATA, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()][: args.responses]
    specs = declared_specs(resolve(VOCABULARY), tuple(args.behaviors.split(",")))
    loaded = load_model(args.model)
    backends = {
        "plain": TransformersBackend(loaded, prefix_cache=False),
        "shared": TransformersBackend(loaded),
    }
    columns: list[int] = []
    forward = shared_prefix.forward

    def counting(model, state, input_ids, position_ids, keep):
        columns.append(int(input_ids.numel()))
        return forward(model, state, input_ids, position_ids, keep)

    shared_prefix.forward = counting
    responses = [r["response"] for r in records]
    requests = [r["prompt"] for r in records]
    questions = sum(len(s.judges) for s in specs)
    print(f"{len(records)} responses x {questions} questions x 2 phrasings x 2 answers "
          f"({len(records) * questions * 4} scored sequences); load average {os.getloadavg()[0]:.2f}")
    results, times, tokens = {}, {}, {}
    DetectorSet(specs, kind="judge", backend=backends["shared"]).detect_batch(responses[:1], requests[:1])  # warm-up
    for name, backend in backends.items():
        columns.clear()
        t = time.perf_counter()
        results[name] = DetectorSet(specs, kind="judge", backend=backend).detect_batch(responses, requests)
        times[name], tokens[name] = time.perf_counter() - t, sum(columns)
    diff = max(abs(a[b].probability - c[b].probability)
               for a, c in zip(results["shared"], results["plain"]) for b in a)
    print(f"{'path':<8}{'seconds':>10}{'tokens run':>12}{'responses/s':>13}")
    for name in backends:
        print(f"{name:<8}{times[name]:>10.2f}{tokens[name]:>12}{len(records) / times[name]:>13.2f}")
    print(f"speed-up {times['plain'] / times['shared']:.2f}x, tokens {tokens['plain'] / max(1, tokens['shared']):.2f}x "
          f"fewer; max |P(yes) shared - plain| = {diff:.2e}; load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
