"""Benchmark: parse + resolve a generated 5,000-principle constitution side by side with Lark's raw LALR parse
of the same text (same grammar, contextual lexer, plain parse tree; target: ratio <= 1.2), and lint it (target
< 10 s) with the 1,000 -> 5,000 scaling ratio (target <= 8).

Run: .venv/bin/python bench/bench_language.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from gen_constitution import generate  # noqa: E402

import lark  # noqa: E402

from cai_dsl.check.checker import check  # noqa: E402
from cai_dsl.lang.grammar import grammar_text  # noqa: E402
from cai_dsl.lang.parser import lark_parser, parse_text  # noqa: E402
from cai_dsl.lang.resolver import resolve  # noqa: E402


def measure(n: int, folder: Path) -> dict:
    text = generate(n)
    path = folder / f"bench-{n}.const"
    path.write_text(text)
    raw = lark.Lark(grammar_text(), parser="lalr", lexer="contextual")
    r0 = time.perf_counter()
    raw.parse(text)
    raw_s = time.perf_counter() - r0
    t0 = time.perf_counter()
    parse_text(text, str(path))
    t1 = time.perf_counter()
    constitution = resolve(str(path))
    t2 = time.perf_counter()
    diagnostics = check(constitution)
    t3 = time.perf_counter()
    errors = [d for d in diagnostics if d.is_error]
    assert not errors, errors[:3]
    return {"n": n, "bytes": len(text), "raw": raw_s, "parse": t1 - t0, "parse_resolve": t2 - t1, "lint": t3 - t2, "diags": len(diagnostics)}


def main() -> None:
    lark_parser()  # built once per process; not part of the per-file figure
    with tempfile.TemporaryDirectory() as tmp:
        small = measure(1000, Path(tmp))
        large = measure(5000, Path(tmp))
    for row in (small, large):
        print(
            f"{row['n']:>5} principles ({row['bytes'] / 1e6:.2f} MB): Lark raw LALR parse {row['raw']:.2f} s, parse {row['parse']:.2f} s, "
            f"parse+resolve {row['parse_resolve']:.2f} s ({row['n'] / row['parse_resolve']:,.0f} principles/s), "
            f"lint {row['lint']:.2f} s, {row['diags']} diagnostics"
        )
    ratio = large["lint"] / small["lint"]
    print(f"parse+resolve 5,000: {large['parse_resolve']:.2f} s = {large['parse_resolve'] / large['raw']:.2f}x Lark's raw LALR "
          f"parse of the same file ({large['raw']:.2f} s; target <= 1.2x)")
    print(f"lint 5,000: {large['lint']:.2f} s (target < 10 s); scaling 1,000 -> 5,000: x{ratio:.1f} (linear 5, quadratic 25; target <= 8)")


if __name__ == "__main__":
    main()
