"""PPO against the preference model, with ONE base model in memory (our own loop; trl 1.x has no PPOTrainer).

Layout in memory: the base causal LM, wrapped once with peft, carrying

* adapter ``policy``: the LoRA being trained (fresh, or a trainable copy of the SL-CAI adapter);
* the **reference** policy: the same base with adapters disabled (``with model.disable_adapter():``) when the
  policy starts fresh; when it starts from an SL adapter, a frozen second copy of that adapter (``reference``),
  so that the KL penalty is to the SL-CAI model, as in the paper;
* adapter ``reward`` + a linear head: the preference model (:class:`cai_dsl.run.train.reward_model.RewardScorer`);
* a small value head (``Linear(hidden, 1)``) on the policy's last hidden state.

One step (Ziegler et al. 2019 / the CAI paper's RL stage):

1. roll out ``rollout_batch_size`` prompts (sampling at the configured temperature, ``top_p = 1`` so that the
   behaviour policy is the softmax policy whose log-probabilities PPO uses);
2. score each response with the PM; per-token rewards ``r_t = -kl_coef * (log pi(a_t) - log pi_ref(a_t))``, plus
   the PM score on the last token (:func:`kl_penalized_rewards`); optionally whitened (scaled to unit variance,
   mean kept; :func:`whiten`);
3. GAE advantages and returns (:func:`compute_gae`), advantages whitened;
4. ``ppo_epochs`` passes of mini-batches over the rollout with the clipped surrogate and the clipped value loss
   (:func:`ppo_loss`); gradients clipped to ``max_grad_norm``.

Each step appends its metrics (reward, KL, entropy, clip fraction, value loss, ...) to ``metrics.jsonl``
(fsynced), and a checkpoint (policy adapter, value head, optimizer, step) is written atomically every
``checkpoint_every`` steps; a rerun resumes from it and produces the same steps as an uninterrupted run (the
prompts, sampling seeds and mini-batch orders are derived from the program seed and the step number).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from cai_dsl.core.files import publish_dir, write_json_atomic
from cai_dsl.core.hashing import RunMismatch, changed_inputs
from cai_dsl.core.progress import progress
from cai_dsl.core.records import RecordFile
from cai_dsl.run.context import ModelPool, check_adapter_dir, quiet_transformers
from cai_dsl.run.data import PromptItem
from cai_dsl.run.errors import RLAIFError
from cai_dsl.run.prompts import policy_prompt
from cai_dsl.run.train.job import adapter_fingerprint, write_adapter_manifest
from cai_dsl.run.train.ppo_losses import compute_gae, kl_penalized_rewards, masked_mean, masked_var, ppo_loss, whiten

__all__ = [
    "PPOConfig",
    "PPOResult",
    "PPOTrainerLite",
    "compute_gae",
    "kl_penalized_rewards",
    "masked_mean",
    "masked_var",
    "ppo_loss",
    "run_ppo",
    "whiten",
]


# ---------------------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class PPOConfig:
    """PPO hyper-parameters (from the target's ``[ppo]`` table, see :meth:`from_program`)."""

    steps: int = 4
    rollout_batch_size: int = 8
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
    whiten_rewards: bool = True
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

    def step(self, conversations: Sequence[Any], prompt_ids: Sequence[Sequence[int]], step_seed: int) -> dict[str, Any]:
        """Roll out, score, compute advantages and update; returns the step's metrics."""
        import torch

        cfg = self.config
        started = time.perf_counter()
        input_ids, attention_mask, response, P = self.generate(prompt_ids, step_seed)
        resp_mask = attention_mask[:, P:].float()
        texts = self.response_texts(response, attention_mask[:, P:])
        scores = torch.tensor(self.reward.score(conversations, texts), dtype=torch.float)
        with torch.no_grad():
            old_logprobs, old_values, entropy = self.policy_forward(input_ids, attention_mask, response, P, with_entropy=True)
            ref_logprobs = self.reference_logprobs(input_ids, attention_mask, response, P)
            rewards, kl = kl_penalized_rewards(scores.to(old_logprobs.device), old_logprobs, ref_logprobs, resp_mask, cfg.kl_coef)
            if cfg.whiten_rewards and resp_mask.sum() > 1:
                rewards = whiten(rewards, resp_mask, shift_mean=False)
            advantages, returns = compute_gae(rewards, old_values, resp_mask, cfg.gamma, cfg.lam)
            if resp_mask.sum() > 1:
                advantages = whiten(advantages, resp_mask)
        n = input_ids.shape[0]
        stats: dict[str, list[float]] = {}
        gen = torch.Generator().manual_seed(step_seed)
        for _epoch in range(cfg.ppo_epochs):
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
        return {
            "reward": float(scores.mean()),
            "reward_std": float(scores.std()) if n > 1 else 0.0,
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
                for c, t, r in list(zip(conversations, texts, scores.tolist()))[:2]
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
        state = get_peft_model_state_dict(self.model, adapter_name="policy")
        save_file({k: v.detach().contiguous() for k, v in state.items()}, str(directory / "adapter_model.safetensors"))

    def save_checkpoint(self, directory: Path, step: int, fingerprint: dict) -> None:
        """Atomically replace ``directory`` with the state after ``step`` steps."""
        import torch
        from safetensors.torch import save_file

        with publish_dir(directory) as tmp:
            self.save_policy(tmp / "policy")
            save_file({k: v.detach().contiguous() for k, v in self.value_head.state_dict().items()}, str(tmp / "value_head.safetensors"))
            torch.save(self.optimizer.state_dict(), tmp / "optimizer.pt")
            (tmp / "state.json").write_text(json.dumps({"step": step, "fingerprint": fingerprint}, sort_keys=True) + "\n", encoding="utf-8")

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
        return int(state["step"])


# ---------------------------------------------------------------------------------------------------- the job


@dataclass(frozen=True)
class PPOResult:
    """A PPO run: its directory, the final policy adapter, steps done, this call's new steps, metrics, time."""

    out_dir: Path
    policy: Path
    steps: int
    new_steps: int
    metrics: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    resumed_from: int = 0


def _read_checkpoint_state(directory: Path) -> dict | None:
    try:
        return json.loads((directory / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def run_ppo(
    program: Any,
    out_dir: str | os.PathLike[str],
    prompts: Sequence[PromptItem],
    *,
    pm_dir: str | os.PathLike[str],
    config: PPOConfig,
    policy_adapter: Path | None = None,
    pool: ModelPool | None = None,
    show_progress: bool = True,
    log: Callable[[str], None] | None = None,
    stop_after: int | None = None,
) -> PPOResult:
    """Train the policy with PPO against the PM in ``pm_dir``; resumable (see the module docstring).

    Writes ``out_dir/metrics.jsonl``, ``out_dir/checkpoint/`` and, at the end, ``out_dir/policy/`` (the RL
    policy adapter) and ``out_dir/summary.json``. ``stop_after`` stops after that many new steps (tests use it
    to simulate a killed run).
    """
    import torch
    from peft import LoraConfig, get_peft_model

    from cai_dsl.run.loading import resolve_model_dir
    from cai_dsl.run.train.reward_model import RewardScorer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not prompts:
        raise RLAIFError("no prompts for PPO rollouts")
    pm_path = Path(pm_dir)
    if not (pm_path / "pm.json").is_file():
        raise RLAIFError(f"{pm_path}: no preference model there (pm.json missing)")
    if policy_adapter is not None:
        check_adapter_dir(policy_adapter)
    fingerprint = {
        "job": "ppo",
        "program_hash": program.provenance.program_hash,
        "policy": program.run.models.policy,
        "policy_adapter": adapter_fingerprint(policy_adapter),
        "pm": json.loads((pm_path / "pm.json").read_text(encoding="utf-8")).get("fingerprint"),
        "prompts": [p.id for p in prompts],
        "config": config.fingerprint(),
    }
    ckpt_dir = out / "checkpoint"
    state = _read_checkpoint_state(ckpt_dir)
    changed = changed_inputs(state.get("fingerprint") or {}, fingerprint) if state is not None else []
    if changed:
        raise RLAIFError(f"{out} holds a PPO run with different inputs or settings ({', '.join(changed)}); "
                         "use another --out directory or delete it")
    done_steps = int(state["step"]) if state else 0
    metrics_path = out / "metrics.jsonl"
    try:
        metrics = RecordFile(metrics_path, key_field="step", fingerprint=fingerprint)
    except RunMismatch as exc:
        raise RLAIFError(str(exc)) from None
    metrics.retain(lambda r: int(r.get("step", 0)) <= done_steps)  # steps after the checkpoint are redone
    if done_steps >= config.steps and (out / "policy" / "adapter_model.safetensors").is_file():
        return PPOResult(out, out / "policy", done_steps, 0, sorted(metrics, key=lambda r: r["step"]), 0.0, done_steps)

    pool = pool or ModelPool.of(program)
    policy_spec = program.run.models.policy
    loaded = pool.load(policy_spec)
    base = loaded.model
    for p in base.parameters():
        p.requires_grad_(False)
    if policy_adapter is not None:
        from peft import PeftModel

        try:
            with quiet_transformers():
                peft_model = PeftModel.from_pretrained(base, str(policy_adapter), adapter_name="policy", is_trainable=True)
                peft_model.load_adapter(str(policy_adapter), adapter_name="reference", is_trainable=False)
        except Exception as exc:
            raise RLAIFError(f"{policy_adapter}: cannot load the policy adapter: {type(exc).__name__}: {exc}") from None
        reference = "reference"
    else:
        lora = LoraConfig(
            task_type="CAUSAL_LM", r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=0.0,
            target_modules=list(config.lora_target_modules),
        )
        with torch.random.fork_rng(devices=[]), quiet_transformers():
            torch.manual_seed(config.seed)  # LoRA A matrices are random: seeded so that runs repeat
            peft_model = get_peft_model(base, lora, adapter_name="policy")
        reference = None
    pm_meta = json.loads((pm_path / "pm.json").read_text(encoding="utf-8"))
    if Path(pm_meta.get("base_dir", "")).resolve() == Path(resolve_model_dir(policy_spec)).resolve():
        reward = RewardScorer.attach(pm_path, loaded, peft_model)  # one base: the PM is a second adapter
    else:
        other = pool.load(pm_meta.get("base", policy_spec))
        reward = RewardScorer.attach(pm_path, other)
        if log:
            log(f"note: the preference model's base ({pm_meta.get('base')}) differs from the policy's: it is loaded separately")
    trainer = PPOTrainerLite(peft_model, loaded.tokenizer, reward, config, reference_adapter=reference)
    if state is not None:
        trainer.load_checkpoint(ckpt_dir)
        if log:
            log(f"resuming PPO after step {done_steps}")
    token_ids = [trainer_prompt_ids(loaded.tokenizer, program, p.prompt) for p in prompts]
    started = time.perf_counter()
    new_steps = 0
    order = list(range(len(prompts)))
    with progress(config.steps - done_steps, "ppo", unit="step", enabled=show_progress) as bar:
        for step in range(done_steps + 1, config.steps + 1):
            if stop_after is not None and new_steps >= stop_after:
                break
            idx = _step_prompts(program, order, step, config.rollout_batch_size)
            record = trainer.step([prompts[i].prompt for i in idx], [token_ids[i] for i in idx], _step_seed(program, step))
            record = {"step": step, **record}
            if not all(math.isfinite(v) for v in record.values() if isinstance(v, float)):
                raise RLAIFError(f"PPO step {step} produced a non-finite metric ({record}); lower the learning rate")
            metrics.append(record)
            new_steps += 1
            if step % config.checkpoint_every == 0 or step == config.steps:
                trainer.save_checkpoint(ckpt_dir, step, fingerprint)
            bar(1, reward=f"{record['reward']:.3f}", kl=f"{record['kl']:.3f}")
    final_step = done_steps + new_steps
    if final_step >= config.steps:
        with publish_dir(out / "policy") as tmp:
            trainer.save_policy(tmp)
            write_adapter_manifest(tmp, program, "ppo", policy_adapter)
        rows = sorted(metrics, key=lambda r: r["step"])
        write_json_atomic(out / "summary.json", {
            "steps": final_step,
            "config": asdict(config),
            "policy_adapter": str(policy_adapter) if policy_adapter else None,
            "reference": "adapter copy of the SL policy" if reference else "base with adapters disabled",
            "pm": str(pm_path),
            "first": {k: rows[0][k] for k in ("reward", "kl")} if rows else None,
            "last": {k: rows[-1][k] for k in ("reward", "kl")} if rows else None,
        })
    del trainer
    return PPOResult(out, out / "policy", final_step, new_steps, sorted(metrics, key=lambda r: r["step"]),
                     time.perf_counter() - started, done_steps)


def trainer_prompt_ids(tokenizer: Any, program: Any, text: str) -> list[int]:
    """Token ids of the policy's generation prompt for ``text`` (the same rendering as ``cai label``)."""
    from cai_dsl.run.backends.base import prompt_ids, render_chat

    return prompt_ids(tokenizer, render_chat(tokenizer, policy_prompt(program, text)))


def _step_seed(program: Any, step: int) -> int:
    return program.rng("ppo-rollout", step).randrange(2**31 - 1)


def _step_prompts(program: Any, order: list[int], step: int, batch: int) -> list[int]:
    """Prompts of ``step`` (1-based): consecutive slices of a per-epoch seeded shuffle of all prompts."""
    n = len(order)
    out: list[int] = []
    start = (step - 1) * batch
    for k in range(start, start + batch):
        epoch, pos = divmod(k, n)
        perm = list(order)
        program.rng("ppo-epoch", epoch).shuffle(perm)
        out.append(perm[pos])
    return out
