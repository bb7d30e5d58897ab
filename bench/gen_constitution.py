"""Generate a large, valid constitution for benchmarks (deterministic for a seed)."""

from __future__ import annotations

import random


def generate(n_principles: int, *, seed: int = 0, clash_fraction: float = 0.03, deployments: int = 3) -> str:
    """A constitution with ``n_principles`` principles over a realistic vocabulary.

    Behaviors are spread over a large pool so that only about ``clash_fraction``
    of the principles take part in a require/forbid clash; every clash is
    resolved by a priority so the file lints without errors.
    """
    rng = random.Random(seed)
    topics = ["general", "medical", "legal", "financial", "violence", "weapons", "drugs", "self_harm", "cyber"]
    lines = [
        'constitution "bench" version "1"',
        "facet topic: " + " | ".join(topics),
        "facet risk: low < medium < high < critical",
        "facet intent: benign | unclear | malicious",
        "facet audience: general | professional | minor",
    ]
    n_behaviors = max(20, n_principles // 4)
    lines += [f'behavior b{i} "observable behavior number {i}"' for i in range(n_behaviors)]
    clashing = set(rng.sample(range(n_principles), int(n_principles * clash_fraction) // 2 * 2))
    pairs = sorted(clashing)
    partner = {pairs[i]: pairs[i + 1] for i in range(0, len(pairs), 2)}
    for i in range(n_principles):
        topic = rng.choice(topics)
        cond = rng.choice(
            [
                f"topic == {topic}",
                f"risk >= {rng.choice(['medium', 'high'])} and topic == {topic}",
                "intent in {benign, unclear} and audience != minor",
                f"topic in {{{topic}, general}} or risk == critical",
            ]
        )
        beh = f"b{rng.randrange(n_behaviors)}"
        effects = f"require {beh}" if rng.random() < 0.5 else f"prefer {beh}"
        if i in partner:
            effects = f"require shared{i}"
        elif any(partner.get(j) == i for j in partner):
            src = next(j for j in partner if partner[j] == i)
            effects = f"forbid shared{src}"
        lines.append(
            f"principle p{i}.rule {{\n"
            f'  critique "Identify where the response fails to give an accurate answer about item {i}."\n'
            f'  revise "Rewrite the response so that it gives an accurate answer about item {i}."\n'
            f'  compare "Which response gives the more accurate answer about item {i}?"\n'
            f"  when {cond}\n  {effects}\n  weight {1 + i % 3}.0\n  tags t{i % 10}\n}}"
        )
    for src, dst in partner.items():
        lines.insert(5, f'behavior shared{src} "shared behavior {src}"')
        lines.append(f"priority p{src}.rule > p{dst}.rule")
    lines.append("group even = #t0, #t2, #t4")
    lines.append("deployment evens { include even }")
    lines.append("deployment base { include * }")
    for d in range(1, deployments):
        lines.append(f"deployment d{d} extends base {{ exclude #t{d} assume audience != minor set revisions = 2 }}")
    return "\n".join(lines) + "\n"
