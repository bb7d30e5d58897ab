"""The reward of a PPO rollout: the compiled policy score and/or the preference model.

Modes (``PPOConfig.reward``):

* ``policy``: the policy score of the response in its prompt's scenario
  (:class:`~cai_dsl.run.policy.reward.PolicyReward`); a response whose scenario decides no observable behavior
  (score None) scores ``undecided_value`` (1: it passed the quality checks and violates nothing);
* ``pm``: the preference model's reward (:class:`~cai_dsl.run.train.reward_model.RewardScorer`);
* ``policy+pm``: ``policy_weight * policy + pm_weight * pm``;
* ``auto`` (default): ``policy+pm`` when a policy scorer is given and the PM is better than a constant
  (:attr:`~cai_dsl.run.train.reward_model.PMResult.better_than_constant`), ``policy`` when only the policy
  scorer is usable, ``pm`` when there is no policy scorer.

The trainer then subtracts the missing-EOS penalty and normalises the scalar scores (running mean/std).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cai_dsl.run.errors import RLAIFError
from cai_dsl.run.policy.quality import check_quality
from cai_dsl.run.policy.reward import message_text

__all__ = ["REWARD_MODES", "RolloutReward", "pm_is_useful", "resolve_reward_mode"]

REWARD_MODES = ("auto", "policy", "pm", "policy+pm")


def pm_is_useful(pm_dir: Path | None) -> bool:
    """Whether the PM in ``pm_dir`` beat a constant reward on its held-out pairs (``pm.json``)."""
    if pm_dir is None:
        return False
    try:
        meta = json.loads((Path(pm_dir) / "pm.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool((meta.get("result") or {}).get("better_than_constant"))


def resolve_reward_mode(mode: str, *, has_policy: bool, pm_dir: Path | None) -> str:
    """The concrete reward of ``mode`` (see the module docstring); an unusable choice raises RLAIFError."""
    if mode not in REWARD_MODES:
        raise RLAIFError(f"PPO reward must be one of {', '.join(REWARD_MODES)}, not `{mode}`")
    if mode == "auto":
        if has_policy:
            return "policy+pm" if pm_is_useful(pm_dir) else "policy"
        mode = "pm"
    if "policy" in mode and not has_policy:
        raise RLAIFError(f"PPO reward `{mode}` needs the policy scorer (the constitution's resolved policy)")
    if "pm" in mode and pm_dir is None:
        raise RLAIFError(f"PPO reward `{mode}` needs a preference model")
    return mode


class RolloutReward:
    """Scores rollouts: ``score_rollouts(conversations, texts, scenarios)`` -> (scores, degenerate flags)."""

    def __init__(
        self,
        policy: Any = None,
        pm: Any = None,
        *,
        policy_weight: float = 1.0,
        pm_weight: float = 1.0,
        undecided_value: float = 1.0,
    ) -> None:
        if policy is None and pm is None:
            raise RLAIFError("a PPO reward needs the policy score or a preference model")
        self.policy, self.pm = policy, pm
        self.policy_weight, self.pm_weight, self.undecided_value = policy_weight, pm_weight, undecided_value

    def score_rollouts(
        self, conversations: Sequence[Any], texts: Sequence[str], scenarios: Sequence[Mapping[str, str] | None] | None = None
    ) -> tuple[list[float], list[bool]]:
        asks = [message_text(list(c) if not isinstance(c, str) else c, "user") for c in conversations]
        total = [0.0] * len(texts)
        if self.policy is not None:
            scored = self.policy.scores(asks, list(texts), scenario=list(scenarios or [None] * len(texts)))
            degenerate = [s.quality.degenerate for s in scored]
            for i, s in enumerate(scored):
                total[i] += self.policy_weight * (self.undecided_value if s.score is None else s.score)
        else:
            degenerate = [check_quality(t, a).degenerate for t, a in zip(texts, asks)]
        if self.pm is not None:
            for i, r in enumerate(self.pm.score(conversations, list(texts))):
                total[i] += self.pm_weight * r
        return total, degenerate
