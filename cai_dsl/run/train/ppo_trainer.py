"""The PPO algorithm (our own loop; trl 1.x has no PPOTrainer): its config and the trainer on ONE base model.

Layout in memory: the base causal LM, wrapped once with peft, carrying

* adapter ``policy``: the LoRA being trained (fresh, or a trainable copy of the SL-CAI adapter);
* the **reference** policy: the same base with adapters disabled (``with model.disable_adapter():``) when the
  policy starts fresh; when it starts from an SL adapter, a frozen second copy of that adapter (``reference``),
  so that the KL penalty is to the SL-CAI model, as in the paper;
* adapter ``reward`` + a linear head: the preference model (:class:`cai_dsl.run.train.reward_model.RewardScorer`);
* a small value head (``Linear(hidden, 1)``) on the policy's last hidden state.

One step (Ziegler et al. 2019 / the CAI paper's RL stage):

1. roll out ``rollout_batch_size`` prompts (default 16; sampling at the configured temperature, ``top_p = 1`` so
   that the behaviour policy is the softmax policy whose log-probabilities PPO uses);
2. score each response (:mod:`cai_dsl.run.train.ppo_reward`: policy score and/or PM); a response that reaches
   ``max_new_tokens`` without EOS loses ``missing_eos_penalty``; the scalar scores are normalised by the running
   mean/std of all scores so far (:class:`RunningMoments`, not per-token whitening);
3. KL early stop: when the rollouts' mean KL to the reference (summed over tokens) exceeds ``kl_target``, the
   step makes no update and the run stops there (``stopped: "kl"``);
4. per-token rewards ``r_t = -kl_coef * (log pi(a_t) - log pi_ref(a_t))``, plus the normalised score on the last
   token (:func:`kl_penalized_rewards`); GAE advantages and returns (:func:`compute_gae`), advantages whitened;
5. ``ppo_epochs`` passes of mini-batches over the rollout with the clipped surrogate and the clipped value loss
   (:func:`ppo_loss`); gradients clipped to ``max_grad_norm``.

Each step returns its metrics (reward, KL, entropy, degeneration and EOS rates of the rollouts, clip fraction,
value loss, ...); the checkpoint (policy adapter, value head, optimizer, reward moments, step) is written
atomically by :meth:`PPOTrainerLite.save_checkpoint` (the job: :mod:`cai_dsl.run.train.ppo`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from cai_dsl.core.files import publish_dir
from cai_dsl.run.policy.quality import check_quality
from cai_dsl.run.train.ppo_losses import RunningMoments, compute_gae, kl_penalized_rewards, masked_mean, ppo_loss, whiten
from cai_dsl.run.train.job import stable_adapter_config

__all__ = ["PPOConfig", "PPOTrainerLite"]


# ---------------------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class PPOConfig:
    """PPO hyper-parameters (from the target's ``[ppo]`` table, see :meth:`from_program`)."""

    steps: int = 4
    rollout_batch_size: int = 16
    mini_batch_size: int = 4
    ppo_epochs: int = 2
    learning_rate: float = 1e-5
    value_learning_rate: float = 1e-3
    kl_coef: float = 0.05
    clip_range: float = 0.2
    clip_range_value: float = 0.2
    vf_coef: float = 0.1
    gamma: float = 1.0
    lam: float = 0.95
    max_new_tokens: int = 32
    temperature: float = 0.7
    normalize_rewards: bool = True
    missing_eos_penalty: float | None = 1.0
    kl_target: float | None = 6.0
    reward: str = "auto"
    policy_weight: float = 1.0
    pm_weight: float = 1.0
    max_grad_norm: float = 1.0
    checkpoint_every: int = 1
    seed: int = 0
    lora_r: int = 8
    lora_alpha: int = 16
    lora_target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")

    @classmethod
    def from_program(cls, program: Any, **overrides: Any) -> "PPOConfig":
        """The target's ``[ppo]`` values, the generation budget and LoRA shape of ``[sft]``, then ``overrides``
        (``None`` values ignored). ``steps`` defaults to ``total_episodes / rollout_batch_size``."""
        ppo = program.run.ppo
        lora = program.run.sft.lora
        gen = program.run.generation
        rollout = ppo.rollout_batch_size
        cfg = cls(
            steps=max(1, ppo.total_episodes // rollout),
            rollout_batch_size=rollout,
            mini_batch_size=min(ppo.mini_batch_size, rollout),
            ppo_epochs=ppo.ppo_epochs,
            learning_rate=ppo.learning_rate,
            kl_coef=ppo.kl_coef,
            clip_range=ppo.clip_range,
            clip_range_value=ppo.clip_range,
            vf_coef=ppo.vf_coef,
            gamma=ppo.gamma,
            lam=ppo.gae_lambda,
            max_new_tokens=int(gen.max_new_tokens),
            temperature=float(gen.temperature) if gen.temperature > 0 else 1.0,
            seed=int(program.provenance.seed),
            lora_r=lora.r,
            lora_alpha=lora.alpha,
            lora_target_modules=tuple(lora.target_modules),
        )
        return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})

    def fingerprint(self) -> dict[str, Any]:
        """Everything but ``steps`` and ``checkpoint_every`` (a rerun with more steps continues)."""
        data = asdict(self)
        data.pop("steps")
        data.pop("checkpoint_every")
        data["lora_target_modules"] = list(self.lora_target_modules)
        return data


# ---------------------------------------------------------------------------------------------------- model


class PPOTrainerLite:
    """The policy, reference, reward and value head on one PEFT-wrapped base (see the module docstring)."""

    def __init__(self, peft_model: Any, tokenizer: Any, reward: Any, config: PPOConfig, *, reference_adapter: str | None = None) -> None:
        import torch

        self.model = peft_model
        self.tokenizer = tokenizer
        self.reward = reward
        self.config = config
        self.reference_adapter = reference_adapter
        base = peft_model.get_base_model()
        self.decoder = base.get_decoder() if hasattr(base, "get_decoder") else base.model
        self.lm_head = base.get_output_embeddings()
        hidden = self.lm_head.weight.shape[1]
        device = self.lm_head.weight.device
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.value_head = torch.nn.Linear(hidden, 1).to(device)
        with torch.no_grad():
            self.value_head.weight.zero_()
            self.value_head.bias.zero_()
        self.model.set_adapter("policy")
        self.policy_params = [p for n, p in self.model.named_parameters() if ".policy." in n]
        for n, p in self.model.named_parameters():
            p.requires_grad_(".policy." in n)
        self.optimizer = torch.optim.AdamW(
            [
                {"params": self.policy_params, "lr": config.learning_rate},
                {"params": list(self.value_head.parameters()), "lr": config.value_learning_rate},
            ],
            weight_decay=0.0,
        )
        self.pad_id = tokenizer.pad_token_id
        eos = tokenizer.eos_token_id
        gen_eos = getattr(getattr(base, "generation_config", None), "eos_token_id", None)
        ids = {eos} if eos is not None else set()
        for v in gen_eos if isinstance(gen_eos, (list, tuple)) else [gen_eos]:
            if v is not None:
                ids.add(int(v))
        self.eos_ids = sorted(ids)
        self.moments = RunningMoments()
        self.model.eval()  # no dropout: the ratio of identical weights must be exactly 1

    # -- forward passes ------------------------------------------------------------------------------------

    def _hidden(self, input_ids: Any, attention_mask: Any) -> Any:
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        return self.decoder(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        ).last_hidden_state

    def _token_stats(self, hidden: Any, response: Any, prompt_len: int, with_entropy: bool) -> tuple[Any, Any]:
        import torch

        R = response.shape[1]
        h = hidden[:, prompt_len - 1 : prompt_len - 1 + R]
        logits = self.lm_head(h).float() / self.config.temperature
        logp_all = torch.log_softmax(logits, dim=-1)
        logprobs = logp_all.gather(-1, response[..., None])[..., 0]
        entropy = None
        if with_entropy:
            with torch.no_grad():
                entropy = -(logp_all.exp() * logp_all).sum(-1)
        return logprobs, entropy

    def policy_forward(self, input_ids: Any, attention_mask: Any, response: Any, prompt_len: int, *, with_entropy: bool = False):
        """Log-probabilities of the response tokens under the policy, the values (and entropies)."""
        hidden = self._hidden(input_ids, attention_mask)
        logprobs, entropy = self._token_stats(hidden, response, prompt_len, with_entropy)
        R = response.shape[1]
        values = self.value_head(hidden[:, prompt_len - 1 : prompt_len - 1 + R].float())[..., 0]
        return logprobs, values, entropy

    def reference_logprobs(self, input_ids: Any, attention_mask: Any, response: Any, prompt_len: int) -> Any:
        """Log-probabilities of the response tokens under the frozen reference policy."""
        import torch

        from cai_dsl.run.train.reward_model import use_adapter

        with torch.no_grad(), use_adapter(self.model, self.reference_adapter):
            hidden = self._hidden(input_ids, attention_mask)
            logprobs, _ = self._token_stats(hidden, response, prompt_len, False)
        return logprobs

    # -- rollouts ------------------------------------------------------------------------------------------

    def generate(self, prompt_ids: Sequence[Sequence[int]], seed: int) -> tuple[Any, Any, Any, int]:
        """Sample one response per prompt; returns (input_ids, attention_mask, response ids, prompt length)."""
        import torch
        from transformers import GenerationConfig

        P = max(len(p) for p in prompt_ids)
        ids = torch.full((len(prompt_ids), P), self.pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, p in enumerate(prompt_ids):
            ids[i, P - len(p) :] = torch.tensor(list(p), dtype=torch.long)
            mask[i, P - len(p) :] = 1
        device = self.lm_head.weight.device
        ids, mask = ids.to(device), mask.to(device)
        config = GenerationConfig(
            max_new_tokens=self.config.max_new_tokens, do_sample=True, temperature=self.config.temperature,
            top_p=1.0, top_k=0, num_beams=1, repetition_penalty=1.0, pad_token_id=self.pad_id,
            eos_token_id=self.eos_ids or None, bos_token_id=self.tokenizer.bos_token_id,
        )
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            out = self.model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
        response = out[:, P:]
        if response.shape[1] == 0:
            response = torch.full((len(prompt_ids), 1), self.eos_ids[0] if self.eos_ids else self.pad_id, dtype=torch.long, device=device)
        resp_mask = torch.ones_like(response)
        for b in range(response.shape[0]):
            row = response[b].tolist()
            for j, tok in enumerate(row):
                if tok in self.eos_ids:
                    resp_mask[b, j + 1 :] = 0
                    response[b, j + 1 :] = self.pad_id
                    break
        full_ids = torch.cat([ids, response], dim=1)
        full_mask = torch.cat([mask, resp_mask], dim=1)
        return full_ids, full_mask, response, P

    def response_texts(self, response: Any, resp_mask: Any) -> list[str]:
        """The decoded responses (EOS and padding removed)."""
        out = []
        for b in range(response.shape[0]):
            toks = [t for t, m in zip(response[b].tolist(), resp_mask[b].tolist()) if m and t not in self.eos_ids]
            out.append(self.tokenizer.decode(toks, skip_special_tokens=True).strip())
        return out

    # -- one PPO step --------------------------------------------------------------------------------------

    def _scores(self, conversations: Sequence[Any], texts: list[str], scenarios: Sequence[Any] | None) -> tuple[list[float], list[bool]]:
        if hasattr(self.reward, "score_rollouts"):
            return self.reward.score_rollouts(conversations, texts, scenarios)
        return list(self.reward.score(conversations, texts)), [check_quality(t).degenerate for t in texts]

    def step(
        self, conversations: Sequence[Any], prompt_ids: Sequence[Sequence[int]], step_seed: int,
        scenarios: Sequence[Any] | None = None,
    ) -> dict[str, Any]:
        """Roll out, score, compute advantages and update (unless the KL early stop fires: then ``kl_stop`` is
        true and nothing is updated); returns the step's metrics."""
        import torch

        cfg = self.config
        started = time.perf_counter()
        input_ids, attention_mask, response, P = self.generate(prompt_ids, step_seed)
        resp_mask = attention_mask[:, P:].float()
        texts = self.response_texts(response, attention_mask[:, P:])
        raw, degenerate = self._scores(conversations, texts, scenarios)
        scores = torch.tensor(raw, dtype=torch.float)
        finished = torch.tensor([any(t in self.eos_ids for t in row) for row in response.tolist()])
        if cfg.missing_eos_penalty:
            scores = scores - cfg.missing_eos_penalty * (~finished).float()
        if cfg.normalize_rewards:
            self.moments.update(scores.tolist())
            scores = self.moments.normalize(scores)
        n = input_ids.shape[0]
        with torch.no_grad():
            old_logprobs, old_values, entropy = self.policy_forward(input_ids, attention_mask, response, P, with_entropy=True)
            ref_logprobs = self.reference_logprobs(input_ids, attention_mask, response, P)
            rewards, kl = kl_penalized_rewards(scores.to(old_logprobs.device), old_logprobs, ref_logprobs, resp_mask, cfg.kl_coef)
            advantages, returns = compute_gae(rewards, old_values, resp_mask, cfg.gamma, cfg.lam)
            if resp_mask.sum() > 1:
                advantages = whiten(advantages, resp_mask)
        kl_stop = cfg.kl_target is not None and float(kl.sum(-1).mean()) > cfg.kl_target
        stats: dict[str, list[float]] = {}
        gen = torch.Generator().manual_seed(step_seed)
        for _epoch in range(0 if kl_stop else cfg.ppo_epochs):
            order = torch.randperm(n, generator=gen).tolist()
            for s in range(0, n, cfg.mini_batch_size):
                idx = order[s : s + cfg.mini_batch_size]
                logprobs, values, _ = self.policy_forward(input_ids[idx], attention_mask[idx], response[idx], P)
                loss, st = ppo_loss(
                    logprobs, old_logprobs[idx], advantages[idx], values, old_values[idx], returns[idx], resp_mask[idx],
                    clip_range=cfg.clip_range, clip_range_value=cfg.clip_range_value, vf_coef=cfg.vf_coef,
                )
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.policy_params + list(self.value_head.parameters()), cfg.max_grad_norm)
                self.optimizer.step()
                for k, v in st.items():
                    stats.setdefault(k, []).append(v)
        mean = {k: sum(v) / len(v) for k, v in stats.items()}
        seq_kl = kl.sum(-1)
        raw_t = torch.tensor(raw, dtype=torch.float)
        return {
            "reward": float(raw_t.mean()),
            "reward_std": float(raw_t.std()) if n > 1 else 0.0,
            "normalized_reward": float(scores.mean()),
            "eos_rate": float(finished.float().mean()),
            "degenerate_rate": sum(degenerate) / len(degenerate) if degenerate else 0.0,
            "kl_stop": kl_stop,
            "kl": float(seq_kl.mean()),
            "entropy": float(masked_mean(entropy, resp_mask)),
            "clip_fraction": mean.get("clip_fraction", 0.0),
            "value_loss": mean.get("value_loss", 0.0),
            "policy_loss": mean.get("policy_loss", 0.0),
            "approx_kl": mean.get("approx_kl", 0.0),
            "value_clip_fraction": mean.get("value_clip_fraction", 0.0),
            "return_mean": float(masked_mean(returns, resp_mask)),
            "response_length": float(resp_mask.sum(-1).mean()),
            "seconds": round(time.perf_counter() - started, 3),
            "samples": [
                {"prompt": c if isinstance(c, str) else c[-1]["content"], "response": t, "reward": round(float(r), 4)}
                for c, t, r in list(zip(conversations, texts, raw))[:2]
            ],
        }

    # -- checkpoints ---------------------------------------------------------------------------------------

    def save_policy(self, directory: Path) -> None:
        """Write the policy adapter as a standalone PEFT adapter directory (loadable onto the base)."""
        from peft import get_peft_model_state_dict
        from safetensors.torch import save_file

        directory.mkdir(parents=True, exist_ok=True)
        config = self.model.peft_config["policy"]
        config.save_pretrained(str(directory))
        stable_adapter_config(directory)
        state = get_peft_model_state_dict(self.model, adapter_name="policy", save_embedding_layers=False)  # LoRA never trains embeddings
        save_file({k: v.detach().contiguous() for k, v in state.items()}, str(directory / "adapter_model.safetensors"))

    def save_checkpoint(self, directory: Path, step: int, fingerprint: dict, stopped: str | None = None) -> None:
        """Atomically replace ``directory`` with the state after ``step`` steps."""
        import torch
        from safetensors.torch import save_file

        with publish_dir(directory) as tmp:
            self.save_policy(tmp / "policy")
            save_file({k: v.detach().contiguous() for k, v in self.value_head.state_dict().items()}, str(tmp / "value_head.safetensors"))
            torch.save(self.optimizer.state_dict(), tmp / "optimizer.pt")
            state = {"step": step, "fingerprint": fingerprint, "moments": self.moments.to_json(), "stopped": stopped}
            (tmp / "state.json").write_text(json.dumps(state, sort_keys=True) + "\n", encoding="utf-8")

    def load_checkpoint(self, directory: Path) -> int:
        """Restore the policy, value head and optimizer; returns the step the checkpoint was taken after."""
        import torch
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        state = json.loads((directory / "state.json").read_text(encoding="utf-8"))
        weights = load_file(str(directory / "policy" / "adapter_model.safetensors"))
        set_peft_model_state_dict(self.model, weights, adapter_name="policy")
        self.value_head.load_state_dict(load_file(str(directory / "value_head.safetensors")))
        self.optimizer.load_state_dict(torch.load(directory / "optimizer.pt", weights_only=True))
        self.moments = RunningMoments.from_json(state.get("moments"))
        return int(state["step"])


