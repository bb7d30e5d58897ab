"""The constitution's resolved policy as a reward: behavior detectors, quality checks, the policy
score of a response in its scenario, a trl-compatible reward function, and detector evaluation."""

from cai_dsl.run.policy.detectors import BehaviorSpec, Detection, DetectorError, DetectorSet
from cai_dsl.run.policy.evaluate import DetectorReport, evaluate_detectors
from cai_dsl.run.policy.quality import QualityReport, check_quality
from cai_dsl.run.policy.reward import PolicyReward, policy_reward_function
from cai_dsl.run.policy.score import PolicyError, PolicyScore, PolicyScorer

__all__ = [
    "BehaviorSpec",
    "Detection",
    "DetectorError",
    "DetectorReport",
    "DetectorSet",
    "PolicyError",
    "PolicyReward",
    "PolicyScore",
    "PolicyScorer",
    "QualityReport",
    "check_quality",
    "evaluate_detectors",
    "policy_reward_function",
]
