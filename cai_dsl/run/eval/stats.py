"""The statistics of ``cai eval models``: rates with 95% Wilson intervals and exact McNemar tests.

* rates are :class:`cai_dsl.run.policy.metrics.Rate` (``k`` of ``n`` with the 95% Wilson interval); :func:`rate_text`
  prints one;
* :func:`mcnemar`: the exact McNemar test of two binary outcomes on the same items: of the discordant items,
  how many went each way, and the two-sided binomial p-value of that split under p = 1/2
  (``min(1, 2 * P(X <= min(b, c)))``, which is what ``scipy.stats.binomtest(b, b + c)`` returns for p = 1/2;
  computed exactly with integers, so scipy is not needed);
* :func:`binomial_greater`: the one-sided exact binomial p-value of ``k`` or more successes in ``n`` at ``p``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

from pydantic import BaseModel, ConfigDict

from cai_dsl.run.policy.metrics import Rate

__all__ = ["ALPHA", "PairedTest", "binomial_greater", "mcnemar", "rate_text"]

ALPHA = 0.05
"""The significance level of every test in the evaluation."""


def rate_text(r: Rate, digits: int = 0) -> str:
    """``"45% [31-60] n=40"`` (``"n/a (n=0)"`` without items)."""
    if r.value is None or r.interval is None:
        return "n/a (n=0)"
    low, high = r.interval
    return f"{r.value * 100:.{digits}f}% [{low * 100:.{digits}f}-{high * 100:.{digits}f}] n={r.n}"


class PairedTest(BaseModel):
    """McNemar's exact test of ``a`` against ``b`` on the same ``n`` items: ``only_a`` items True under ``a``
    only, ``only_b`` under ``b`` only; ``difference`` = rate(b) - rate(a); ``p`` two-sided."""

    model_config = ConfigDict(frozen=True)

    a: str
    b: str
    n: int
    only_a: int
    only_b: int
    difference: float | None
    p: float

    @property
    def significant(self) -> bool:
        return self.p < ALPHA


def _binomial_tail(k: int, n: int, p: Fraction = Fraction(1, 2)) -> Fraction:
    """P(X <= k) for X ~ Binomial(n, p), exactly."""
    return sum((math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1)), Fraction(0))


def binomial_greater(k: int, n: int, p: float = 0.5) -> float:
    """P(X >= k) for X ~ Binomial(n, p): the one-sided exact p-value of ``k`` successes in ``n``."""
    if n == 0 or k <= 0:
        return 1.0
    return float(1 - _binomial_tail(k - 1, n, Fraction(p).limit_denominator(10**6)))


def mcnemar(a_name: str, a: Sequence[bool], b_name: str, b: Sequence[bool]) -> PairedTest:
    """The exact McNemar test of two paired binary outcome lists (same items, same order)."""
    if len(a) != len(b):
        raise ValueError(f"paired outcomes of different lengths: {len(a)} and {len(b)}")
    only_a = sum(1 for x, y in zip(a, b) if x and not y)
    only_b = sum(1 for x, y in zip(a, b) if y and not x)
    discordant = only_a + only_b
    p = 1.0 if discordant == 0 else min(1.0, float(2 * _binomial_tail(min(only_a, only_b), discordant)))
    n = len(a)
    difference = (sum(map(bool, b)) - sum(map(bool, a))) / n if n else None
    return PairedTest(a=a_name, b=b_name, n=n, only_a=only_a, only_b=only_b, difference=difference, p=p)
