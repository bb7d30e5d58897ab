"""Contrast pairs from SL-CAI records, labelled by the policy score: DPO data that needs no feedback model.

Three kinds, all from a finished SL-CAI run (``sl-data.jsonl``) and each kept only where the policy score
(:class:`~cai_dsl.run.policy.score.PolicyScorer`, markers detectors) of the chosen response in the record's
scenario is strictly higher than that of the rejected one:

* **revision pairs** (red team): the record's SFT target, an accepted revision, over its initial response;
* **refusal pairs** (red team without an accepted revision): a refusal the same SL run trained on for another
  red-team prompt (a seeded rotation) over the record's initial response, kept where the policy requires the
  refusal (or forbids what the initial response does), so the score separates them;
* **over-refusal pairs** (helpful and benign look-alike prompts): the record's SFT target, the model's own
  answer, over a refusal the same SL run trained on for a red-team prompt (the same rotation). The
  policy forbids refusing there (e.g. ``help.answer_benign``), so the pair says "answer, do not refuse" in
  exactly the scenarios where the SL stage learned to refuse too broadly.

Chosen targets are only ever SFT targets that passed the SL gate's target check (a refusal pair's rejected side is
an initial answer whose target failed it); held-out prompts never reach SL data.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cai_dsl.run.policy.detectors import DetectorSet
from cai_dsl.run.policy.score import PolicyScorer
from cai_dsl.run.train.preferences import PreferencePair

__all__ = ["ContrastPairs", "contrast_pairs"]


@dataclass(frozen=True)
class ContrastPairs:
    """The pairs, and how many candidates of each kind were dropped because the score did not separate them."""

    pairs: tuple[PreferencePair, ...]
    revision: int
    refusal: int
    over_refusal: int
    dropped: int

    def to_json(self) -> dict[str, int]:
        return {"pairs": len(self.pairs), "revision": self.revision, "refusal": self.refusal,
                "over_refusal": self.over_refusal, "dropped": self.dropped}


def _target(record: Mapping[str, Any]) -> str | None:
    check = record.get("target_check") or {}
    target = record.get("target")
    return target if isinstance(target, str) and target.strip() and check.get("ok") else None


def contrast_pairs(
    records: Iterable[Mapping[str, Any]], scorer: PolicyScorer, detectors: DetectorSet, *, seed: int = 0,
    exclude_ids: Sequence[str] = (), balance: bool = True,
) -> ContrastPairs:
    """Revision, refusal and over-refusal pairs of ``records`` (see the module docstring), in record order;
    ``exclude_ids`` (e.g. the SL stage's held-out records) are left out. ``balance``: at most as many
    over-refusal pairs as revision and refusal pairs together (a seeded choice), so that DPO does not trade the SL
    stage's refusals of harmful requests for fewer over-refusals."""
    excluded = set(exclude_ids)
    rows = [r for r in records if r.get("id") not in excluded]
    refusals = [
        str(r["target"]) for r in rows
        if not r.get("helpful") and _target(r) is not None and r.get("target_source") == "revision"
        and any(t.get("mode") == "opening" and t.get("behavior") == "refuse" for t in r.get("rounds") or ())
    ]
    rng = random.Random(f"contrast:{seed}")
    order = list(range(len(refusals)))
    rng.shuffle(order)
    candidates: list[tuple[Mapping[str, Any], str, str, str]] = []  # record, chosen, rejected, kind
    k = 0
    for r in rows:
        target = _target(r)
        if not r.get("helpful"):
            initial = r.get("initial")
            if not (isinstance(initial, str) and initial.strip()):
                continue
            if target is not None and r.get("target_source") == "revision":
                if initial != target:
                    candidates.append((r, target, initial, "revision"))
            elif refusals:  # no accepted revision: a learned refusal over the initial answer (kept where the policy wants one)
                candidates.append((r, refusals[order[k % len(order)]], initial, "refusal"))
                k += 1
        elif target is not None and refusals:
            candidates.append((r, target, refusals[order[k % len(order)]], "over_refusal"))
            k += 1
    texts = [t for _, chosen, rejected, _ in candidates for t in (chosen, rejected)]
    prompts = [str(r.get("prompt") or "") for r, *_ in candidates for _ in (0, 1)]
    found = detectors.detect_batch(texts, prompts)
    pairs: list[PreferencePair] = []
    kinds = {"revision": 0, "refusal": 0, "over_refusal": 0}
    dropped = 0
    for i, (r, chosen, rejected, kind) in enumerate(candidates):
        scenario = r.get("scenario")
        a = scorer.score(chosen, scenario, found[2 * i], prompt=prompts[2 * i]).score
        b = scorer.score(rejected, scenario, found[2 * i + 1], prompt=prompts[2 * i]).score
        if a is None or b is None or a <= b:
            dropped += 1
            continue
        kinds[kind] += 1
        pairs.append(PreferencePair(
            id=f"{kind}:{r['id']}", conversation=str(r.get("prompt") or ""), chosen=chosen, rejected=rejected,
            probability=1.0, source="policy", origin=kind,
        ))
    harm_side = kinds["revision"] + kinds["refusal"]
    if balance and kinds["over_refusal"] > harm_side:
        over = [p for p in pairs if p.origin == "over_refusal"]
        keep = {p.id for p in random.Random(f"contrast-balance:{seed}").sample(over, harm_side)}
        pairs = [p for p in pairs if p.origin != "over_refusal" or p.id in keep]
        kinds["over_refusal"] = harm_side
    return ContrastPairs(pairs=tuple(pairs), revision=kinds["revision"], refusal=kinds["refusal"],
                         over_refusal=kinds["over_refusal"], dropped=dropped)
