"""Sampling and voting: which principles a round or a comparison uses, and how votes combine.

:class:`Voting` is a mixin of :class:`~cai_dsl.compile.ir.Program`; randomness comes only through
an explicit ``random.Random`` (see ``Program.rng``).
"""

from __future__ import annotations

import math
import random
from typing import Mapping, Sequence

from cai_dsl.compile.conditions import eval_cond

__all__ = ["Voting", "weighted_mean", "weighted_sample"]


class Voting:
    """The selection, voting and classification methods of a :class:`~cai_dsl.compile.ir.Program`."""

    # -------------------------------------------------------------- selection

    def select_principles(
        self,
        round_index: int,
        scenario: Mapping[str, str | None] | None = None,
        rng: random.Random | None = None,
    ) -> list[str]:
        """The principle(s) to critique and revise with in round ``round_index`` (0-based).

        * ``random`` (the paper): one principle of the pool, uniformly.
        * ``all``: every principle of the pool in priority order (applied one after the other).
        * ``applicable``: one principle among those applicable to ``scenario``, sampled with
          probability proportional to its weight (uniformly if all weights are 0); an empty list
          when none applies.

        ``rng`` defaults to ``self.rng("select", round_index)``; pass ``program.rng(prompt_id,
        round_index)`` to vary the choice per prompt.
        """
        cr = self.critique_revision
        if round_index < 0:
            raise ValueError("round_index must be >= 0")
        if not cr.pool:
            return []
        rng = rng if rng is not None else self.rng("select", round_index)
        if cr.selection == "all":
            return list(cr.pool)
        if cr.selection == "random":
            return [rng.choice(cr.pool)]
        candidates = [pid for pid in cr.pool if self.applicable(pid, scenario)]
        if not candidates:
            return []
        return [weighted_sample(candidates, [self._by_id[c].weight for c in candidates], 1, rng)[0]]

    def comparison_principles(
        self, rng: random.Random | None = None, scenario: Mapping[str, str | None] | None = None
    ) -> list[str]:
        """The principles one comparison is scored under (``principles_per_comparison`` of them,
        without replacement; uniformly, or by weight in `applicable` mode, where only principles
        applicable to ``scenario`` are candidates unless none is)."""
        cmp = self.comparison
        if not cmp.pool:
            return []
        rng = rng if rng is not None else self.rng("compare")
        candidates = list(cmp.pool)
        if cmp.applicable_only and scenario is not None:
            applicable = [pid for pid in candidates if self.applicable(pid, scenario)]
            candidates = applicable or candidates
        k = min(cmp.principles_per_comparison, len(candidates))
        if cmp.principle_sampling == "weighted":
            return weighted_sample(candidates, [self._by_id[c].weight for c in candidates], k, rng)
        return rng.sample(candidates, k)

    # -------------------------------------------------------------- voting

    def soft_label(self, logprob_a: float, logprob_b: float) -> float:
        """P(option A) from the options' log-probabilities (softmax over the two); hard 0/1/0.5 when
        ``soft_labels`` is off."""
        if math.isnan(logprob_a) or math.isnan(logprob_b):
            raise ValueError("log-probabilities must not be NaN")
        m = max(logprob_a, logprob_b)
        if m == -math.inf:
            p = 0.5
        else:
            ea, eb = math.exp(logprob_a - m), math.exp(logprob_b - m)
            p = ea / (ea + eb)
        if not self.comparison.soft_labels:
            return 1.0 if p > 0.5 else 0.0 if p < 0.5 else 0.5
        return p

    def debias(self, p_first_as_a: float, p_first_as_b: float | None) -> float:
        """P(first response better) from both orders: the order with the first response as (A)
        gives P(A); the swapped order gives P(A) for the second response. The average of
        ``p_first_as_a`` and ``1 - p_first_as_b`` cancels a position preference."""
        if not self.comparison.position_debias or p_first_as_b is None:
            return p_first_as_a
        return (p_first_as_a + (1.0 - p_first_as_b)) / 2.0

    def clamp_cot(self, p: float) -> float:
        """Chain-of-thought probabilities are over-confident: clamp to [clamp_min, clamp_max]."""
        cot = self.comparison.chain_of_thought
        return min(max(p, cot.clamp_min), cot.clamp_max)

    def combine_votes(
        self, votes: Mapping[str, float], scenario: Mapping[str, str | None] | None = None
    ) -> float:
        """Combine per-principle P(first better) into one label.

        ``weighted``: the weight-average (plain mean if all weights are 0). ``priority``: among the
        principles with an opinion (|p - 0.5| >= ``opinion_margin``), those beaten by a conflict
        rule that decides in ``scenario`` are dropped, then those of the best (lowest) authority rank,
        then rank, decide
        by weight-average; with no opinion at all, the weighted average of every vote.
        """
        if not votes:
            raise ValueError("no votes to combine")
        ids = sorted(votes)
        if self.comparison.vote == "priority":
            margin = self.comparison.opinion_margin
            opinionated = [pid for pid in ids if abs(votes[pid] - 0.5) >= margin]
            if opinionated:
                losers = self._conflict_losers(opinionated, scenario)
                remaining = [pid for pid in opinionated if pid not in losers] or opinionated
                level = {pid: (self.principle(pid).authority_rank, self.principle(pid).rank) for pid in remaining}
                best = min(level.values())
                ids = [pid for pid in remaining if level[pid] == best]
        return weighted_mean([votes[i] for i in ids], [self.principle(i).weight for i in ids])

    def _conflict_losers(self, ids: Sequence[str], scenario: Mapping[str, str | None] | None) -> set[str]:
        present = set(ids)
        losers: set[str] = set()
        for rule in self.conflicts:
            if rule.left not in present or rule.right not in present:
                continue
            winner: str | None = None
            decided = False
            for branch in rule.branches:
                v = eval_cond(branch.condition, scenario or {}, self._facets)
                if v is None:
                    decided = True  # unknown: this rule cannot decide
                    winner = None
                    break
                if v:
                    winner, decided = branch.winner, True
                    break
            if not decided:
                winner = rule.otherwise
            if winner is not None:
                losers.add(rule.right if winner == rule.left else rule.left)
        return losers

    def combine_models(self, labels: Sequence[float]) -> float:
        """Weight-average of the feedback models' labels, in ``run.models.feedback`` order."""
        weights = [m.weight for m in self.run.models.feedback]
        if len(labels) != len(weights):
            raise ValueError(f"expected {len(weights)} labels (one per feedback model), got {len(labels)}")
        return weighted_mean(list(labels), weights)

    def classify(self, facet: str, logprobs: Sequence[float]) -> str:
        """The value with the highest log-probability (ties: the earlier value)."""
        q = self.classifier_question(facet)
        if q.fixed is not None:
            return q.fixed
        if len(logprobs) != len(q.values):
            raise ValueError(f"expected {len(q.values)} scores for facet `{facet}`, got {len(logprobs)}")
        best = max(range(len(q.values)), key=lambda i: (logprobs[i], -i))
        return q.values[best]

    def fixed_facets(self) -> dict[str, str]:
        """Facet values fixed by the deployment's assumptions."""
        return {q.facet: q.fixed for q in self.scenario_classifier.questions if q.fixed is not None}


def weighted_mean(values: Sequence[float], weights: Sequence[float]) -> float:
    total = sum(weights)
    if total <= 0:
        return sum(values) / len(values)
    return sum(v * w for v, w in zip(values, weights)) / total


def weighted_sample(items: Sequence[str], weights: Sequence[float], k: int, rng: random.Random) -> list[str]:
    """``k`` distinct items, each draw proportional to weight among the remaining (uniform if all 0)."""
    items, weights = list(items), [max(float(w), 0.0) for w in weights]
    out: list[str] = []
    for _ in range(min(k, len(items))):
        total = sum(weights)
        if total <= 0:
            i = rng.randrange(len(items))
        else:
            x = rng.random() * total
            acc = 0.0
            i = len(items) - 1
            for j, w in enumerate(weights):
                acc += w
                if x < acc:
                    i = j
                    break
        out.append(items.pop(i))
        weights.pop(i)
    return out
