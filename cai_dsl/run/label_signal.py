"""Does the feedback model carry signal, and where do the labels come from?

Figures (over every (pair, principle, feedback model) judged in both option orders):

* **order consistency**: the share whose preferred response is the same in both orders (P(A) > 0.5 with the
  first response as A, and < 0.5 with it as B). A model that answers at random, or always the same letter,
  is consistent half of the time or never: chance is 0.5;
* **position bias**: the mean P(A) over both orders (0.5: no preference for a position);
* **option mass**: the mean P("A") + P("B") of the next-token distribution: how much the model answers the
  multiple-choice question at all;
* the **distribution of the debiased labels** P(first better) (a 10-bin histogram on [0, 1] and quantiles).

Verdict (:class:`SignalRule`, defaults): ``has_signal`` when the consistency is above chance by a one-sided
exact binomial test at ``alpha`` = 0.05 AND the option mass is at least 0.5. Label source, with ``w`` the
weight of the feedback label:

* ``has_signal``: ``w = 1`` (source ``feedback``);
* no measured consistency, or consistency <= 0.5: ``w = 0`` (source ``policy``);
* otherwise (some signal): ``w = 2 * (consistency - 0.5)`` (source ``mixed``).

A record's label is ``p = w * p_feedback + (1 - w) * p_policy``, where ``p_policy`` is 1 (0) when the first
response's policy score (:class:`~cai_dsl.run.policy.score.PolicyScorer`) is higher (lower) than the
second's, and 0.5 on a tie or when the scenario decides no observable behavior for either response (a
no-signal label: the preference model counts no side for it and DPO drops it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from cai_dsl.run.policy.evaluate import wilson_interval

__all__ = ["LabelSignal", "SignalRule", "binomial_tail", "label_record", "measure_signal", "policy_preference"]

LabelSource = Literal["feedback", "policy", "mixed"]


@dataclass(frozen=True)
class SignalRule:
    """The verdict and label-source rule (see the module docstring). ``source`` forces a source
    (``feedback``: w = 1, ``policy``: w = 0) instead of ``auto``; ``tie_margin``: policy scores closer than
    this are a tie."""

    alpha: float = 0.05
    min_option_mass: float = 0.5
    source: Literal["auto", "feedback", "policy"] = "auto"
    tie_margin: float = 1e-9

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LabelSignal:
    """The signal figures of a set of label records and the label source they lead to."""

    comparisons: int
    consistent: int
    consistency: float | None
    consistency_ci: tuple[float, float] | None
    p_value: float | None
    position_bias: float | None
    option_mass: float | None
    label_histogram: tuple[int, ...]
    label_quantiles: tuple[float, ...] | None
    has_signal: bool
    source: LabelSource
    feedback_weight: float
    reason: str

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["consistency_ci"] = list(self.consistency_ci) if self.consistency_ci else None
        data["label_histogram"] = list(self.label_histogram)
        data["label_quantiles"] = list(self.label_quantiles) if self.label_quantiles else None
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "LabelSignal":
        values = dict(data)
        values["consistency_ci"] = tuple(values["consistency_ci"]) if values.get("consistency_ci") else None
        values["label_histogram"] = tuple(values.get("label_histogram") or ())
        values["label_quantiles"] = tuple(values["label_quantiles"]) if values.get("label_quantiles") else None
        return cls(**values)


def binomial_tail(k: int, n: int, p: float = 0.5) -> float:
    """P(X >= k) for X ~ Binomial(n, p): the one-sided exact binomial test's p-value."""
    if k <= 0:
        return 1.0
    return min(1.0, sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1)))


def _quantiles(values: Sequence[float]) -> tuple[float, ...] | None:
    if not values:
        return None
    s = sorted(values)

    def q(f: float) -> float:
        x = f * (len(s) - 1)
        lo, hi = math.floor(x), math.ceil(x)
        return s[lo] + (s[hi] - s[lo]) * (x - lo)

    return tuple(round(q(f), 6) for f in (0.0, 0.25, 0.5, 0.75, 1.0))


def measure_signal(records: Iterable[Mapping[str, Any]], rule: SignalRule | None = None) -> LabelSignal:
    """The signal of ``cai label`` records (their ``scores``: per principle ``p_ab``, ``p_ba``, ``mass_ab``,
    ``mass_ba`` per model; ``p_first``: the debiased feedback label)."""
    rule = rule or SignalRule()
    n = k = 0
    p_a: list[float] = []
    masses: list[float] = []
    labels: list[float] = []
    for r in records:
        labels.append(float(r.get("p_first", 0.5)))
        for detail in (r.get("scores") or {}).values():
            ab, ba = detail.get("p_ab") or [], detail.get("p_ba") or []
            p_a += list(ab) + list(ba)
            masses += list(detail.get("mass_ab") or []) + list(detail.get("mass_ba") or [])
            for x, y in zip(ab, ba):
                n += 1
                k += (x > 0.5 and y < 0.5) or (x < 0.5 and y > 0.5)
    consistency = k / n if n else None
    p_value = binomial_tail(k, n) if n else None
    mass = sum(masses) / len(masses) if masses else None
    significant = p_value is not None and p_value < rule.alpha
    mass_ok = mass is not None and mass >= rule.min_option_mass
    has_signal = significant and mass_ok
    if has_signal:
        weight, reason = 1.0, f"consistency above chance (p = {p_value:.3g}) and option mass >= {rule.min_option_mass}"
    elif consistency is None:
        weight, reason = 0.0, "order consistency not measured (no pair judged in both orders)"
    elif consistency <= 0.5:
        weight, reason = 0.0, f"order consistency {consistency:.2f} is not above chance (0.5)"
    else:
        weight = min(1.0, 2.0 * (consistency - 0.5))
        why = f"option mass {mass:.2f} < {rule.min_option_mass}" if significant else f"consistency not significant (p = {p_value:.3g})"
        reason = f"some signal: {why}; feedback weight 2 * (consistency - 0.5)"
    if rule.source != "auto":
        weight = 1.0 if rule.source == "feedback" else 0.0
        reason = f"label source forced to `{rule.source}` ({reason})"
    source: LabelSource = "feedback" if weight >= 1.0 else "policy" if weight <= 0.0 else "mixed"
    histogram = [0] * 10
    for p in labels:
        histogram[min(9, max(0, int(p * 10)))] += 1
    return LabelSignal(
        comparisons=n,
        consistent=k,
        consistency=consistency,
        consistency_ci=wilson_interval(k, n),
        p_value=p_value,
        position_bias=sum(p_a) / len(p_a) if p_a else None,
        option_mass=mass,
        label_histogram=tuple(histogram),
        label_quantiles=_quantiles(labels),
        has_signal=has_signal,
        source=source,
        feedback_weight=round(weight, 6),
        reason=reason,
    )


def policy_preference(scores: Sequence[float | None], tie_margin: float = 1e-9) -> float | None:
    """P(first better) from the two responses' policy scores: 1, 0, 0.5 on a tie, None when either is None."""
    a, b = scores
    if a is None or b is None:
        return None
    if abs(a - b) <= tie_margin:
        return 0.5
    return 1.0 if a > b else 0.0


def label_record(record: Mapping[str, Any], signal: LabelSignal, rule: SignalRule | None = None) -> dict[str, Any]:
    """``record`` with its final label (``chosen``, ``rejected``, ``probability``, ``source``, ``no_signal``,
    ``policy_p``) by the signal's feedback weight (see the module docstring); ``p_first`` stays the feedback
    model's debiased P(first better)."""
    rule = rule or SignalRule()
    w = signal.feedback_weight
    p_feedback = float(record["p_first"])
    p_policy = policy_preference(record.get("policy_scores") or (None, None), rule.tie_margin)
    p = w * p_feedback + (1.0 - w) * (0.5 if p_policy is None else p_policy)
    first, second = record["responses"]
    first_wins = p >= 0.5
    out = dict(record)
    out.update(
        policy_p=p_policy,
        chosen=first if first_wins else second,
        rejected=second if first_wins else first,
        probability=round(p if first_wins else 1.0 - p, 6),
        source=signal.source,
        no_signal=abs(p - 0.5) < 1e-9,
    )
    out.pop("provisional", None)
    return out
