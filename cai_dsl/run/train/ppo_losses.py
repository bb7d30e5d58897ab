"""The PPO maths on tensors: masked statistics, KL-penalised rewards, GAE, the clipped PPO loss and the
running moments of the reward normalisation (Ziegler et al. 2019 / the CAI paper's RL stage; see
:mod:`cai_dsl.run.train.ppo`)."""

from __future__ import annotations

from typing import Any

__all__ = ["RunningMoments", "compute_gae", "kl_penalized_rewards", "masked_mean", "masked_var", "ppo_loss", "whiten"]


def masked_mean(x: Any, mask: Any, dim: int | None = None) -> Any:
    """Mean of ``x`` where ``mask`` is 1 (over all elements, or along ``dim``)."""
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_var(x: Any, mask: Any, unbiased: bool = True) -> Any:
    """Variance of ``x`` where ``mask`` is 1 (Bessel-corrected when ``unbiased`` and more than one element)."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    n = mask.sum()
    if unbiased and n > 1:
        var = var * n / (n - 1)
    return var


def whiten(x: Any, mask: Any, shift_mean: bool = True, eps: float = 1e-8) -> Any:
    """``(x - mean) / std`` over the masked elements (``shift_mean=False`` keeps the mean: only rescales)."""
    import torch

    mean, var = masked_mean(x, mask), masked_var(x, mask)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mask


def kl_penalized_rewards(scores: Any, logprobs: Any, ref_logprobs: Any, mask: Any, kl_coef: float) -> tuple[Any, Any]:
    """Per-token rewards ``-kl_coef * (logprob - ref_logprob)``, plus each sequence's PM ``score`` on its last
    response token; returns ``(rewards, kl)``, both (batch, tokens) and zero outside ``mask``."""
    import torch

    kl = (logprobs - ref_logprobs) * mask
    rewards = -kl_coef * kl
    last = (mask.sum(-1).long() - 1).clamp(min=0)
    rewards = rewards.clone()
    rewards[torch.arange(rewards.shape[0]), last] += scores.to(rewards.dtype)
    return rewards * mask, kl


def compute_gae(rewards: Any, values: Any, mask: Any, gamma: float, lam: float) -> tuple[Any, Any]:
    """Generalised advantage estimation over the response tokens (``mask`` 1, contiguous from position 0).

    ``delta_t = r_t + gamma * V_{t+1} - V_t`` (``V`` after the last token is 0) and
    ``A_t = delta_t + gamma * lam * A_{t+1}``; returns ``(advantages, returns = advantages + values)``.
    """
    import torch

    T = rewards.shape[-1]
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[..., 0])
    for t in reversed(range(T)):
        if t + 1 < T:
            next_mask = mask[..., t + 1]
            next_value = values[..., t + 1] * next_mask
        else:
            next_mask = torch.zeros_like(mask[..., 0])
            next_value = torch.zeros_like(values[..., 0])
        delta = rewards[..., t] + gamma * next_value - values[..., t]
        last = delta + gamma * lam * last * next_mask
        advantages[..., t] = last
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def ppo_loss(
    logprobs: Any,
    old_logprobs: Any,
    advantages: Any,
    values: Any,
    old_values: Any,
    returns: Any,
    mask: Any,
    *,
    clip_range: float,
    clip_range_value: float,
    vf_coef: float,
) -> tuple[Any, dict[str, float]]:
    """The PPO objective: clipped surrogate + ``vf_coef`` * clipped value loss, averaged over ``mask``.

    ``pg = max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps))`` with ``ratio = exp(logprob - old_logprob)``;
    ``vf = 0.5 * max((V - R)^2, (clip(V, V_old - eps_v, V_old + eps_v) - R)^2)``. Returns the loss and stats
    (``policy_loss``, ``value_loss``, ``clip_fraction`` = share of tokens where the clipped term is the larger,
    ``value_clip_fraction``, ``approx_kl`` = 0.5 mean squared log-ratio).
    """
    import torch

    ratio = torch.exp(logprobs - old_logprobs)
    pg1 = -advantages * ratio
    pg2 = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    policy_loss = masked_mean(torch.max(pg1, pg2), mask)
    v_clipped = old_values + torch.clamp(values - old_values, -clip_range_value, clip_range_value)
    vf1 = (values - returns) ** 2
    vf2 = (v_clipped - returns) ** 2
    value_loss = 0.5 * masked_mean(torch.max(vf1, vf2), mask)
    loss = policy_loss + vf_coef * value_loss
    with torch.no_grad():
        stats = {
            "policy_loss": float(policy_loss),
            "value_loss": float(value_loss),
            "clip_fraction": float(masked_mean((pg2 > pg1).float(), mask)),
            "value_clip_fraction": float(masked_mean((vf2 > vf1).float(), mask)),
            "approx_kl": float(0.5 * masked_mean((logprobs - old_logprobs) ** 2, mask)),
        }
    return loss, stats


class RunningMoments:
    """Running mean and standard deviation of scalar sequence scores (Welford), for reward normalisation:
    each step's scores are added, then normalised as ``(score - mean) / std`` over every score seen so far."""

    def __init__(self, count: int = 0, mean: float = 0.0, m2: float = 0.0) -> None:
        self.count, self.mean, self.m2 = count, mean, m2

    def update(self, values: Any) -> None:
        for v in [float(x) for x in values]:
            self.count += 1
            delta = v - self.mean
            self.mean += delta / self.count
            self.m2 += delta * (v - self.mean)

    @property
    def std(self) -> float:
        return (self.m2 / (self.count - 1)) ** 0.5 if self.count > 1 else 1.0

    def normalize(self, scores: Any, eps: float = 1e-6) -> Any:
        """``(scores - mean) / std`` (just centred while fewer than two scores were seen)."""
        return (scores - self.mean) / max(self.std, eps)

    def to_json(self) -> dict[str, float]:
        return {"count": self.count, "mean": self.mean, "m2": self.m2}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> "RunningMoments":
        data = data or {}
        return cls(int(data.get("count", 0)), float(data.get("mean", 0.0)), float(data.get("m2", 0.0)))
