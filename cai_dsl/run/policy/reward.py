"""The policy score as a reward function for trl's ``GRPOTrainer`` (and anything with its interface).

trl calls ``reward(prompts=..., completions=..., completion_ids=..., **columns)`` where, in the
*standard* format, prompts and completions are strings and, in the *conversational* format, lists of
``{"role", "content"}`` messages; every other dataset column (here ``scenario``: ``{facet: value}``)
arrives as a keyword list with one entry per completion, plus ``trainer_state``, ``log_extra`` and
``log_metric``. It takes ``None`` for a completion the reward does not apply to.

    from trl import GRPOTrainer
    reward = policy_reward_function(PolicyScorer(constitution, "base"), DetectorSet.from_program(program))
    GRPOTrainer(model=..., reward_funcs=reward, train_dataset=dataset_with_prompt_and_scenario_columns)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cai_dsl.run.policy.detectors import DetectorSet
from cai_dsl.run.policy.score import PolicyScore, PolicyScorer

__all__ = ["PolicyReward", "message_text", "policy_reward_function"]


def message_text(item: Any, role: str) -> str:
    """The text of a trl prompt/completion: a string as is; for a list of messages, the contents of the
    messages of ``role`` (the last one for ``user``, all of them joined for ``assistant``)."""
    if isinstance(item, str):
        return item
    if isinstance(item, Mapping):
        return str(item.get("content") or "")
    contents = [str(m.get("content") or "") for m in item if m.get("role", role) == role]
    if role == "user":
        return contents[-1] if contents else ""
    return "".join(contents)


class PolicyReward:
    """A picklable reward callable with the signature trl's ``GRPOTrainer`` takes."""

    def __init__(
        self,
        scorer: PolicyScorer,
        detectors: DetectorSet,
        *,
        name: str = "policy_score",
        scenario_column: str = "scenario",
        max_completion_length: int | None = None,
    ):
        self.scorer = scorer
        self.detectors = detectors
        self.__name__ = name
        self.scenario_column = scenario_column
        self.max_completion_length = max_completion_length

    def scores(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[PolicyScore]:
        """The full :class:`PolicyScore` of each completion."""
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        texts = [message_text(c, "assistant") for c in completions]
        asks = [message_text(p, "user") for p in prompts]
        scenarios = kwargs.get(self.scenario_column) or [None] * len(texts)
        ids = kwargs.get("completion_ids")
        finish = [None] * len(texts)
        if ids is not None and self.max_completion_length is not None:
            finish = ["length" if len(i) >= self.max_completion_length else "stop" for i in ids]
        detections = self.detectors.detect_batch(texts, asks)
        return [
            self.scorer.score(t, s, d, prompt=a, finish_reason=f)
            for t, a, s, d, f in zip(texts, asks, scenarios, detections, finish)
        ]

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
        scored = self.scores(prompts, completions, **kwargs)
        log_extra, log_metric = kwargs.get("log_extra"), kwargs.get("log_metric")
        if callable(log_extra):
            log_extra(f"{self.__name__}_violations", ["; ".join(s.violations + s.quality.failures) for s in scored])
        if callable(log_metric) and scored:
            log_metric(f"{self.__name__}/quality_failed", sum(not s.quality.ok for s in scored) / len(scored))
        return [s.score for s in scored]


def policy_reward_function(
    scorer: PolicyScorer,
    detectors: DetectorSet,
    *,
    name: str = "policy_score",
    scenario_column: str = "scenario",
    max_completion_length: int | None = None,
) -> PolicyReward:
    """``reward(prompts, completions, **kwargs) -> list[float | None]`` for ``GRPOTrainer(reward_funcs=...)``.

    ``max_completion_length`` (trl's setting of the same name) lets the ``unfinished`` check see
    completions cut at the limit, from the ``completion_ids`` trl passes.
    """
    return PolicyReward(
        scorer, detectors, name=name, scenario_column=scenario_column, max_completion_length=max_completion_length
    )
