"""The RL stage's prompt pools: on-policy and dev halves of the unused training prompts, never held-out ones."""

from __future__ import annotations

from pathlib import Path

from cai_dsl.pipeline.effect import policy_scorer
from cai_dsl.pipeline.rlaif import unused_training_sets
from cai_dsl.run.data import split_of
from cai_dsl.run.eval import SetLimits, eval_sets

ROOT = Path(__file__).resolve().parents[2]


def test_unused_training_halves_are_disjoint_training_prompts_outside_the_used_ones():
    scorer = policy_scorer(ROOT / "constitutions" / "harmless-helpful.const", "base")
    everything = SetLimits(red_team=None, benign=None, helpful=0)
    first = unused_training_sets(scorer, set(), "onpolicy", everything)
    used = {first["red_team"][0].id, first["benign"][0].id}
    onpolicy = unused_training_sets(scorer, used, "onpolicy", everything)
    dev = unused_training_sets(scorer, used, "dev", everything)
    ids = {name: {p.id for p in items} for name, items in onpolicy.items()}
    dev_ids = {name: {p.id for p in items} for name, items in dev.items()}
    held = {p.id for items in eval_sets(scorer).values() for p in items}
    for name in ("red_team", "benign"):
        assert ids[name] and dev_ids[name] and not ids[name] & dev_ids[name]
        assert not (ids[name] | dev_ids[name]) & (held | used)
        assert all(split_of(i) == "train" for i in ids[name] | dev_ids[name])
    three = unused_training_sets(scorer, used, "onpolicy", SetLimits(red_team=3, benign=0, helpful=0))
    assert len(three["red_team"]) == 3 and "benign" not in three
