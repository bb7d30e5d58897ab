"""The policy reward called the way trl's GRPOTrainer calls reward functions."""

from __future__ import annotations

import inspect
import pickle

import pytest

from cai_dsl.run.policy.detectors import DetectorSet
from cai_dsl.run.policy.reward import PolicyReward, message_text, policy_reward_function
from cai_dsl.run.policy.score import PolicyScorer

REFUSAL = "I can't help with that, because it could hurt people. Please talk to a professional."
STEPS = "Here is how to do it:\n1. Open the case carefully.\n2. Remove the part.\n3. Put it back."
HIGH = {"risk": "high", "intent": "benign"}


@pytest.fixture(scope="module")
def reward(small_constitution):
    return policy_reward_function(
        PolicyScorer(small_constitution, "base"), DetectorSet.from_constitution(small_constitution)
    )


def test_signature_and_name(reward):
    params = inspect.signature(reward).parameters
    assert list(params) == ["prompts", "completions", "kwargs"]
    assert params["kwargs"].kind is inspect.Parameter.VAR_KEYWORD
    assert reward.__name__ == "policy_score"
    assert isinstance(reward, PolicyReward)


def test_trl_names_it():
    pytest.importorskip("trl")
    from trl.trainer.utils import get_callable_name

    class Stub:
        pass

    reward = PolicyReward(PolicyScorer.__new__(PolicyScorer), Stub(), name="my_policy")
    assert get_callable_name(reward) == "my_policy"


def test_standard_format(reward):
    prompts = ["How do I open it?"] * 3
    out = reward(prompts, [REFUSAL, STEPS, STEPS], scenario=[HIGH, HIGH, {"risk": "low", "intent": "benign"}])
    assert out == [pytest.approx(0.8), 0.0, pytest.approx(0.8)]


def test_conversational_format_as_trl_passes_it(reward):
    prompts = [
        [{"role": "system", "content": "Be safe."}, {"role": "user", "content": "How do I open it?"}],
        [{"role": "user", "content": "Tell me about Python."}],
    ]
    completions = [
        [{"role": "assistant", "content": REFUSAL}],
        [{"role": "assistant", "content": "Python is a programming language with a large standard library."}],
    ]
    extra: dict = {}
    metrics: dict = {}
    out = reward(
        prompts=prompts,
        completions=completions,
        completion_ids=[[1, 2, 3], [4, 5]],
        scenario=[HIGH, {"risk": "low", "intent": None}],  # datasets fills missing struct keys with None
        trainer_state=None,
        log_extra=lambda column, values: extra.__setitem__(column, values),
        log_metric=lambda name, value: metrics.__setitem__(name, value),
    )
    assert out == [pytest.approx(0.8), None]  # nothing decided at risk=low alone: trl skips None
    assert extra == {"policy_score_violations": ["", ""]}
    assert metrics == {"policy_score/quality_failed": 0.0}


def test_scenario_missing_and_length_limit(small_constitution):
    reward = policy_reward_function(
        PolicyScorer(small_constitution, "base"),
        DetectorSet.from_constitution(small_constitution),
        name="rbr",
        max_completion_length=3,
    )
    cut = "I can't help with that, because it could"
    assert reward(["q", "q"], [cut, cut], completion_ids=[[1, 2, 3], [1, 2]], scenario=[HIGH, HIGH]) == [
        0.0,  # cut at the limit mid-sentence: unfinished
        pytest.approx(0.8),
    ]
    assert reward(["q"], [REFUSAL]) == [None]  # no scenario column: nothing decided
    scores = reward.scores(["q"], [cut], completion_ids=[[1, 2, 3]], scenario=[HIGH])
    assert scores[0].quality.failures == ("unfinished",)
    with pytest.raises(ValueError, match="2 prompts but 1 completions"):
        reward(["a", "b"], ["c"])


def test_message_text():
    assert message_text("plain", "user") == "plain"
    assert message_text({"role": "assistant", "content": "x"}, "assistant") == "x"
    chat = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]
    assert message_text(chat, "user") == "c"
    assert message_text([{"content": "p1"}, {"content": "p2"}], "assistant") == "p1p2"
    assert message_text([], "user") == ""


def test_reward_pickles(reward):
    clone = pickle.loads(pickle.dumps(reward))
    assert clone.__name__ == "policy_score"
    assert clone(["q"], [REFUSAL], scenario=[HIGH]) == [pytest.approx(0.8)]
