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

:func:`onpolicy_pairs` adds **on-policy** pairs: the SL model's own greedy answers to training prompts the SL run
did not use, where the policy score finds them wrong: a learned refusal over a harmful answer to a red-team
prompt, and the base model's answer over the SL model's refusal of a benign look-alike. These are the mistakes
the SL model still makes, in the form the evaluation measures (greedy), so DPO corrects those rather than only
re-learning the SL data.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cai_dsl.run.policy.detectors import DetectorSet
from cai_dsl.run.policy.score import PolicyScorer
from cai_dsl.run.sl_loop import last_user_text
from cai_dsl.run.train.preferences import PreferencePair

__all__ = ["ContrastPairs", "OnPolicyPairs", "contrast_pairs", "learned_refusals", "onpolicy_pairs"]


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


def learned_refusals(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """The refusals an SL run trained on: accepted revisions of red-team records started from the ``refuse``
    behavior's canonical opening, in record order."""
    return [
        str(r["target"]) for r in records
        if not r.get("helpful") and _target(r) is not None and r.get("target_source") == "revision"
        and any(t.get("mode") == "opening" and t.get("behavior") == "refuse" for t in r.get("rounds") or ())
    ]


def _separated(candidates, scorer: PolicyScorer, detectors: DetectorSet) -> list[bool]:
    """Per ``(prompt, scenario, chosen, rejected)``: the policy score of chosen is strictly higher."""
    texts = [t for _, _, chosen, rejected in candidates for t in (chosen, rejected)]
    prompts = [prompt for prompt, *_ in candidates for _ in (0, 1)]
    found = detectors.detect_batch(texts, prompts)
    out = []
    for i, (prompt, scenario, _, _) in enumerate(candidates):
        a = scorer.score(texts[2 * i], scenario, found[2 * i], prompt=prompt).score
        b = scorer.score(texts[2 * i + 1], scenario, found[2 * i + 1], prompt=prompt).score
        out.append(a is not None and b is not None and a > b)
    return out


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
    refusals = learned_refusals(rows)
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
    separated = _separated([(str(r.get("prompt") or ""), r.get("scenario"), chosen, rejected)
                            for r, chosen, rejected, _ in candidates], scorer, detectors)
    pairs: list[PreferencePair] = []
    kinds = {"revision": 0, "refusal": 0, "over_refusal": 0}
    dropped = 0
    for (r, chosen, rejected, kind), ok in zip(candidates, separated):
        if not ok:
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


@dataclass(frozen=True)
class OnPolicyPairs:
    """On-policy pairs, with how many answers were looked at and how many pairs of each kind were kept."""

    pairs: tuple[PreferencePair, ...]
    answers: int
    harmful: int
    over_refusal: int
    answer: int
    dropped: int

    def to_json(self) -> dict[str, int]:
        return {"pairs": len(self.pairs), "answers": self.answers, "harmful": self.harmful,
                "over_refusal": self.over_refusal, "answer": self.answer, "dropped": self.dropped}


def onpolicy_pairs(
    rows: Iterable[Any], items: Mapping[tuple[str, str], Any], refusals: Sequence[str], scorer: PolicyScorer,
    detectors: DetectorSet, *, seed: int = 0, model: str = "sl", balance: bool = True,
) -> OnPolicyPairs:
    """Pairs from greedy answers of ``model`` and ``base`` (:class:`~cai_dsl.run.eval.result.ResponseRow`, scored
    by the markers) to the prompts ``items`` (by ``(set, id)``):

    * ``harmful``: on a ``red_team`` prompt where ``model``'s answer is harmful compliance, a learned refusal
      (``refusals``, a seeded rotation) over it;
    * ``over_refusal``: on a ``benign`` or ``helpful`` prompt where ``model`` over-refuses, the base model's answer
      over it, when the base answer is neither a refusal nor degenerate;
    * ``answer``: on a benign prompt ``model`` answers well, its answer over a learned refusal (what it should keep
      doing). With ``balance`` (the rule of :func:`contrast_pairs`: the harm side and the answer side in equal
      numbers) only as many as the harm side has beyond the over-refusal pairs, a seeded choice.

    Each pair is kept only where the policy score separates it."""
    by_key = {(r.set, r.id, r.model): r for r in rows}
    order = list(range(len(refusals)))
    random.Random(f"onpolicy:{seed}").shuffle(order)
    candidates: list[tuple[Any, str, str, str]] = []  # item, chosen, rejected, kind
    answers = k = 0
    for (set_name, item_id), item in items.items():
        mine = by_key.get((set_name, item_id, model))
        if mine is None:
            continue
        answers += 1
        if set_name == "red_team":
            if mine.markers.harmful_compliance and refusals:
                candidates.append((item, refusals[order[k % len(order)]], mine.response, "harmful"))
                k += 1
        elif mine.markers.over_refusal:
            base = by_key.get((set_name, item_id, "base"))
            if base is not None and not (base.markers.over_refusal or base.markers.refusal or base.markers.degenerate):
                candidates.append((item, base.response, mine.response, "over_refusal"))
        elif not (mine.markers.refusal or mine.markers.degenerate) and refusals:
            candidates.append((item, mine.response, refusals[order[k % len(order)]], "answer"))
            k += 1
    separated = _separated([(last_user_text(item.prompt), item.scenario, chosen, rejected)
                            for item, chosen, rejected, _ in candidates], scorer, detectors)
    kept = [c for c, ok in zip(candidates, separated) if ok]
    dropped = len(candidates) - len(kept)
    if balance:
        harm = sum(c[3] == "harmful" for c in kept)
        over = sum(c[3] == "over_refusal" for c in kept)
        anchors = [i for i, c in enumerate(kept) if c[3] == "answer"]
        chosen_anchors = set(random.Random(f"onpolicy-balance:{seed}").sample(anchors, max(0, min(len(anchors), harm - over))))
        kept = [c for i, c in enumerate(kept) if c[3] != "answer" or i in chosen_anchors]
    kinds = {"harmful": 0, "over_refusal": 0, "answer": 0}
    pairs = []
    for item, chosen, rejected, kind in kept:
        kinds[kind] += 1
        conversation = item.prompt if isinstance(item.prompt, str) else [dict(t) for t in item.prompt]
        pairs.append(PreferencePair(id=f"onpolicy_{kind}:{item.id}", conversation=conversation, chosen=chosen,
                                    rejected=rejected, probability=1.0, source="policy", origin=f"onpolicy_{kind}"))
    return OnPolicyPairs(pairs=tuple(pairs), answers=answers, harmful=kinds["harmful"],
                         over_refusal=kinds["over_refusal"], answer=kinds["answer"], dropped=dropped)
