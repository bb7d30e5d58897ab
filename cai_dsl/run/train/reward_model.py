"""The preference model (PM): a scalar reward head on the base model with a LoRA adapter, trained on AI labels.

Model. ``AutoModelForSequenceClassification(num_labels=1)`` on the base model (the policy's base unless the
target's ``reward_model.base`` names another), a LoRA adapter on the attention projections and the new linear
``score`` head, pooled at the last non-pad token (transformers' rule). The input is the conversation and the
response rendered with the tokenizer's chat template (:func:`pm_input_ids`), the same for training and for
scoring during PPO.

Loss. trl's ``RewardTrainer`` (1.x) has a ``margin`` hook but no soft-label hook, so
:class:`SoftLabelRewardTrainer` subclasses it and overrides ``compute_loss`` (and the collator, to carry each
pair's probability): binary cross-entropy on the soft label ``p`` = P(chosen better),

    loss = -p * logsigmoid(r_c - r_r) - (1 - p) * logsigmoid(r_r - r_c)

(:func:`soft_preference_loss`; ``p = 1`` gives trl's usual ``-logsigmoid(r_c - r_r)``).

Hybrid RLHF + CAI. Human preference pairs (a TRL preference JSONL: ``prompt``/``chosen``/``rejected``, or
Anthropic HH transcripts) get ``p = 1`` and are mixed into the AI-labelled pairs so that they make up
``human_fraction`` of the training mix (:func:`mix_pairs`).

Held out (:class:`HeldOut`): ~20% of the pairs by id; accuracy with n and a 95% Wilson interval, the loss next
to the label-entropy floor (mean binary entropy of the soft labels) and a constant reward's loss (ln 2); a PM
that does not beat the constant is reported "no better than constant" (:attr:`PMResult.better_than_constant`).

Saved layout (``DIR``, written to a temporary folder and renamed into place): ``adapter_config.json`` +
``adapter_model.safetensors`` (the LoRA weights as a *causal-LM* adapter, so PPO can load them onto the same
base as the policy, as a second adapter), ``score_head.safetensors`` (the head), ``pm.json`` (base, metrics).
:class:`RewardScorer` scores with it on any causal-LM copy of the base (PPO: the policy's own base, adapter
``reward``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cai_dsl.core.files import replace_dir
from cai_dsl.compile.targets import RewardModelParams
from cai_dsl.run.context import ExecutionContext
from cai_dsl.run.prompts import PromptRenderer
from cai_dsl.run.train.job import lora_config, quiet_trainer, stable_adapter_config, trainer_progress
from cai_dsl.run.train.preferences import PreferencePair, load_pairs, mix_pairs, parse_pair, parse_transcript
from cai_dsl.run.feedback import RLAIFError, quiet_transformers, split_of

__all__ = [
    "CONSTANT_LOSS",
    "HeldOut",
    "PMResult",
    "PreferencePair",
    "RewardScorer",
    "load_pairs",
    "mix_pairs",
    "parse_pair",
    "binary_entropy",
    "parse_transcript",
    "pm_input_ids",
    "reward_trainer_classes",
    "soft_preference_loss",
    "train_preference_model",
]

PM_FORMAT = 1
HEAD_FILE = "score_head.safetensors"
META_FILE = "pm.json"


# ---------------------------------------------------------------------------------------------------- inputs


def pm_text(tokenizer: Any, conversation: Any, response: str, renderer: PromptRenderer | None = None) -> str:
    """The text the PM reads: the policy's prompt for the conversation (:mod:`cai_dsl.run.prompts`: system
    prompt, control tokens neutralised) and the response, rendered with the tokenizer's chat template; a
    plain "User:/Assistant:" transcript without a template."""
    renderer = renderer or PromptRenderer()
    msgs = renderer.messages(conversation) + [renderer.response(response)]
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(msgs, tokenize=False)
    text = "".join(f"{m['role'].capitalize()}: {m['content']}\n\n" for m in msgs)
    return text + (tokenizer.eos_token or "")


def pm_input_ids(tokenizer: Any, conversation: Any, response: str, max_len: int, renderer: PromptRenderer | None = None) -> list[int]:
    """Token ids of :func:`pm_text`, keeping the last ``max_len`` tokens (the response end matters most)."""
    from cai_dsl.run.backends.base import prompt_ids

    ids = prompt_ids(tokenizer, pm_text(tokenizer, conversation, response, renderer))
    return ids[-max_len:] if len(ids) > max_len else ids


# ---------------------------------------------------------------------------------------------------- loss


def soft_preference_loss(r_chosen: Any, r_rejected: Any, probability: Any) -> Any:
    """Mean binary cross-entropy of the soft label: ``-p*logsigmoid(rc - rr) - (1-p)*logsigmoid(rr - rc)``."""
    import torch.nn.functional as F

    d = r_chosen - r_rejected
    p = probability.to(d.dtype)
    return (-p * F.logsigmoid(d) - (1.0 - p) * F.logsigmoid(-d)).mean()


def reward_trainer_classes():
    """The trl subclasses (defined lazily: importing trl is slow)."""
    import torch
    from trl import RewardTrainer
    from trl.trainer.reward_trainer import DataCollatorForPreference

    class SoftPreferenceCollator(DataCollatorForPreference):
        """trl's preference collator, plus each pair's ``probability``."""

        def torch_call(self, examples):
            out = super().torch_call(examples)
            out["probability"] = torch.tensor([float(e.get("probability", 1.0)) for e in examples], dtype=torch.float)
            return out

    class SoftLabelRewardTrainer(RewardTrainer):
        """``RewardTrainer`` whose loss is the soft-label binary cross-entropy (:func:`soft_preference_loss`)."""

        def _set_signature_columns_if_needed(self):
            if self._signature_columns is None:
                self._signature_columns = ["chosen_ids", "rejected_ids", "probability"]

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            mode = "train" if self.model.training else "eval"
            inputs = dict(inputs)
            probability = inputs.pop("probability")
            inputs.pop("margin", None)
            inputs["use_cache"] = False
            outputs = model(**inputs)
            rewards_chosen, rewards_rejected = torch.chunk(outputs.logits.squeeze(-1), chunks=2)
            loss = soft_preference_loss(rewards_chosen, rewards_rejected, probability.to(rewards_chosen.device))
            with torch.no_grad():
                self._metrics[mode]["mean_reward"].append(outputs.logits.mean().item())
                self._metrics[mode]["accuracy"].append((rewards_chosen > rewards_rejected).float().mean().item())
                self._metrics[mode]["margin"].append((rewards_chosen - rewards_rejected).mean().item())
            return (loss, outputs) if return_outputs else loss

    return SoftPreferenceCollator, SoftLabelRewardTrainer


def __getattr__(name: str) -> Any:  # SoftLabelRewardTrainer without importing trl at module import
    if name == "SoftLabelRewardTrainer":
        return reward_trainer_classes()[1]
    raise AttributeError(name)


# ---------------------------------------------------------------------------------------------------- training


CONSTANT_LOSS = math.log(2.0)
"""The soft-label loss of a constant reward (equal rewards for both responses, whatever the label)."""


def binary_entropy(p: float) -> float:
    """H(p) in nats: the smallest soft-label loss any reward can reach on a pair labelled ``p``."""
    return 0.0 if p <= 0.0 or p >= 1.0 else -(p * math.log(p) + (1 - p) * math.log(1 - p))


@dataclass(frozen=True)
class HeldOut:
    """Held-out figures of a PM: pairwise accuracy over ``n`` pairs with a preferred side (95% Wilson interval),
    the mean soft-label loss, the label-entropy floor (mean binary entropy of the soft labels) and the loss of a
    constant reward (ln 2)."""

    accuracy: float | None
    n: int
    accuracy_ci: tuple[float, float] | None
    loss: float | None
    entropy_floor: float | None
    constant_loss: float = CONSTANT_LOSS

    @classmethod
    def of(cls, rewards_chosen: Sequence[float], rewards_rejected: Sequence[float], probabilities: Sequence[float]) -> "HeldOut":
        """The figures of rewards on held-out pairs (pairs labelled exactly 0.5 have no side: not counted)."""
        from cai_dsl.run.policy.evaluate import wilson_interval

        if not probabilities:
            return cls(None, 0, None, None, None)
        loss = sum(
            -p * _logsigmoid(c - r) - (1 - p) * _logsigmoid(r - c)
            for c, r, p in zip(rewards_chosen, rewards_rejected, probabilities)
        ) / len(probabilities)
        sided = [(c, r, p) for c, r, p in zip(rewards_chosen, rewards_rejected, probabilities) if p != 0.5]
        right = sum((c > r) == (p > 0.5) for c, r, p in sided)
        return cls(
            accuracy=right / len(sided) if sided else None,
            n=len(sided),
            accuracy_ci=wilson_interval(right, len(sided)),
            loss=loss,
            entropy_floor=sum(binary_entropy(p) for p in probabilities) / len(probabilities),
        )


def _logsigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


@dataclass(frozen=True)
class PMResult:
    """A trained preference model: where it is, the data sizes, held-out figures (:class:`HeldOut`), time.

    ``better_than_constant``: the held-out loss is below a constant reward's (ln 2) AND the lower end of the
    accuracy's 95% interval is above 0.5; otherwise the PM is reported "no better than constant" (and PPO's
    ``auto`` reward leaves it out)."""

    path: Path
    train_pairs: int
    eval_pairs: int
    human_pairs: int
    accuracy: float | None
    eval_loss: float | None
    train_accuracy: float | None
    steps: int
    seconds: float
    reused: bool = False
    accuracy_n: int = 0
    accuracy_ci: tuple[float, float] | None = None
    label_entropy: float | None = None
    constant_loss: float = CONSTANT_LOSS

    @property
    def better_than_constant(self) -> bool:
        return (
            self.eval_loss is not None and self.eval_loss < self.constant_loss
            and self.accuracy_ci is not None and self.accuracy_ci[0] > 0.5
        )

    @property
    def verdict(self) -> str:
        """One line: accuracy with n and interval, loss against the floor and the constant predictor."""
        if self.accuracy is None or self.eval_loss is None:
            return "no held-out pair with a preferred side: the PM is not measured (no better than constant)"
        lo, hi = self.accuracy_ci or (0.0, 1.0)
        floor = f"{self.label_entropy:.3f}" if self.label_entropy is not None else "n/a"
        word = "better than constant" if self.better_than_constant else "no better than constant"
        return (f"held-out accuracy {self.accuracy:.2f} (n={self.accuracy_n}, 95% CI {lo:.2f}-{hi:.2f}), loss "
                f"{self.eval_loss:.3f} vs label-entropy floor {floor} and constant {self.constant_loss:.3f}: {word}")

    def to_json(self) -> dict[str, Any]:
        """The result as JSON data (``pm.json``'s ``result``)."""
        return {
            "path": str(self.path),
            "train_pairs": self.train_pairs,
            "eval_pairs": self.eval_pairs,
            "human_pairs": self.human_pairs,
            "accuracy": self.accuracy,
            "accuracy_n": self.accuracy_n,
            "accuracy_ci": list(self.accuracy_ci) if self.accuracy_ci else None,
            "eval_loss": self.eval_loss,
            "label_entropy": self.label_entropy,
            "constant_loss": self.constant_loss,
            "better_than_constant": self.better_than_constant,
            "verdict": self.verdict,
            "train_accuracy": self.train_accuracy,
            "steps": self.steps,
            "seconds": round(self.seconds, 2),
        }

    @classmethod
    def from_json(cls, path: Path, r: Mapping[str, Any], *, reused: bool = True) -> "PMResult":
        """A result read back from ``pm.json``."""
        ci = r.get("accuracy_ci")
        return cls(path, r.get("train_pairs", 0), r.get("eval_pairs", 0), r.get("human_pairs", 0), r.get("accuracy"),
                   r.get("eval_loss"), r.get("train_accuracy"), r.get("steps", 0), 0.0, reused,
                   r.get("accuracy_n", 0), tuple(ci) if ci else None, r.get("label_entropy"))


def _pm_fingerprint(pairs: Sequence[PreferencePair], base_dir: Path, params: dict, max_steps: int | None, seed: int) -> str:
    """The fingerprint of a PM job (``params``: the settings as plain data, renderer included)."""
    import hashlib

    digest = hashlib.sha256()
    digest.update(json.dumps([str(base_dir), params, max_steps, seed], sort_keys=True, default=str).encode())
    for p in pairs:
        digest.update(json.dumps([p.id, p.conversation, p.chosen, p.rejected, p.probability, p.source], default=str).encode())
    return digest.hexdigest()


def train_preference_model(
    pairs: Sequence[PreferencePair],
    out_dir: str | os.PathLike[str],
    *,
    base_spec: str,
    params: RewardModelParams | Mapping[str, Any],
    renderer: PromptRenderer | None = None,
    max_steps: int | None = None,
    eval_fraction: float = 0.2,
    seed: int = 0,
    device: str = "cpu",
    dtype: str = "float32",
    show_progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> PMResult:
    """Train the PM on ``pairs`` (soft labels) with LoRA and save it to ``out_dir`` (atomically).

    ``params`` is the target's ``reward_model`` table (learning rate, epochs, batch size, max_seq_len, lora; a
    mapping is validated into :class:`RewardModelParams`, defaults from the schema); ``renderer`` renders the
    conversations (the program's :class:`~cai_dsl.run.prompts.PromptRenderer`; it is stored with the PM);
    ``max_steps`` caps the optimizer steps. A stable ~``eval_fraction`` of the pairs (by id) is held out and the
    pairwise accuracy on it reported (pairs labelled exactly 0.5 have no preferred side and are not counted).
    A finished PM with the same data and settings in ``out_dir`` is reused, not retrained.
    """
    import torch
    from datasets import Dataset
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig

    from cai_dsl.run.loading import ModelError, load_tokenizer, resolve_model_dir

    out = Path(out_dir)
    params = params if isinstance(params, RewardModelParams) else RewardModelParams.model_validate(dict(params))
    renderer = renderer or PromptRenderer()
    context = ExecutionContext.create(device, dtype)
    usable = [p for p in pairs if p.chosen != p.rejected]
    if len(usable) < 2:
        raise RLAIFError(f"the preference model needs at least 2 pairs with different responses, got {len(usable)}")
    try:
        base_dir = resolve_model_dir(base_spec)
        tokenizer = load_tokenizer(base_dir)
    except ModelError as exc:
        raise RLAIFError(str(exc)) from None
    settings = {**params.model_dump(mode="json"), **({"renderer": renderer.to_json()} if renderer != PromptRenderer() else {})}
    fingerprint = _pm_fingerprint(usable, base_dir, settings, max_steps, seed)
    meta_path = out / META_FILE
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except ValueError:
            meta = {}
        if meta.get("fingerprint") == fingerprint:
            return PMResult.from_json(out, meta.get("result", {}))
    started = time.perf_counter()
    held = [p for p in usable if split_of(p.id, eval_fraction, salt="pm") == "eval"]
    train = [p for p in usable if split_of(p.id, eval_fraction, salt="pm") != "eval"]
    if not held:
        held, train = train[-1:], train[:-1]
    if not train:
        train, held = held[:-1], held[-1:]
    max_len = params.max_seq_len

    def row(p: PreferencePair) -> dict[str, Any]:
        return {
            "chosen_ids": pm_input_ids(tokenizer, p.conversation, p.chosen, max_len, renderer),
            "rejected_ids": pm_input_ids(tokenizer, p.conversation, p.rejected, max_len, renderer),
            "probability": float(p.probability),
        }

    collator_cls, trainer_cls = reward_trainer_classes()
    with quiet_transformers():
        torch.manual_seed(seed)
        model = AutoModelForSequenceClassification.from_pretrained(
            str(base_dir), num_labels=1, dtype=context.torch_dtype(),
            local_files_only=True, trust_remote_code=False, use_safetensors=True,
        )
    model.config.pad_token_id = tokenizer.pad_token_id
    batch = params.batch_size
    tmp_root = Path(tempfile.mkdtemp(prefix=".pm-", dir=_ensure_parent(out)))
    try:
        with quiet_transformers():
            args = RewardConfig(
                output_dir=str(tmp_root / "trainer"),
                per_device_train_batch_size=batch,
                per_device_eval_batch_size=batch,
                learning_rate=params.learning_rate,
                num_train_epochs=float(params.epochs),
                max_steps=int(max_steps) if max_steps else -1,
                logging_steps=1,
                save_strategy="no",
                report_to=[],
                use_cpu=context.use_cpu,
                bf16=context.bf16,
                seed=seed,
                data_seed=seed,
                max_length=None,
                disable_tqdm=True,
                dataloader_num_workers=0,
                center_rewards_coefficient=None,
            )
            trainer = trainer_cls(
                model=model,
                args=args,
                train_dataset=Dataset.from_list([row(p) for p in train]),
                processing_class=tokenizer,
                data_collator=collator_cls(pad_token_id=tokenizer.pad_token_id),
                peft_config=lora_config(params.lora, "SEQ_CLS"),
            )
            quiet_trainer(trainer, trainer_progress("preference model", enabled=show_progress))
            if log:
                log(f"training the preference model on {len(train)} pairs "
                    f"({sum(p.source == 'human' for p in train)} human), {len(held)} held out")
            trainer.train()
        history = [h for h in trainer.state.log_history if "accuracy" in h]
        train_acc = history[-1]["accuracy"] if history else None
        pm = trainer.model
        pm.eval()
        figures = _held_out(pm, tokenizer, held, max_len, batch, renderer)
        # export: LoRA weights as a causal-LM adapter + the score head
        state = get_peft_model_state_dict(pm, save_embedding_layers=False)  # LoRA never trains embeddings
        head = {k: v for k, v in state.items() if ".score." in k or k.endswith("score.weight")}
        lora = {k: v.detach().contiguous() for k, v in state.items() if k not in head}
        if len(head) != 1:
            raise RLAIFError(f"unexpected preference-model head weights: {sorted(head)}")
        final = tmp_root / "pm"
        final.mkdir()
        lora_config(params.lora, "CAUSAL_LM").save_pretrained(str(final))
        stable_adapter_config(final, base_model_name_or_path=str(base_dir))
        save_file(lora, str(final / "adapter_model.safetensors"))
        save_file({"weight": next(iter(head.values())).detach().contiguous()}, str(final / HEAD_FILE))
        result = PMResult(out, len(train), len(held), sum(p.source == "human" for p in usable), figures.accuracy,
                          figures.loss, train_acc, int(trainer.state.global_step), time.perf_counter() - started,
                          accuracy_n=figures.n, accuracy_ci=figures.accuracy_ci, label_entropy=figures.entropy_floor)
        meta = {"format": PM_FORMAT, "base": base_spec, "base_dir": str(base_dir), "max_seq_len": max_len,
                "renderer": renderer.to_json(), "fingerprint": fingerprint, "result": result.to_json(), "history": trainer.state.log_history}
        (final / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
        replace_dir(final, out)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    return result


def _ensure_parent(out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    return out.parent


def _held_out(
    pm: Any, tokenizer: Any, pairs: Sequence[PreferencePair], max_len: int, batch: int, renderer: PromptRenderer
) -> HeldOut:
    """The PM's rewards on the held-out pairs, as :class:`HeldOut` figures."""
    import torch

    rewards_c, rewards_r = [], []
    with torch.no_grad():
        for i in range(0, len(pairs), batch):
            chunk = pairs[i : i + batch]
            seqs = [pm_input_ids(tokenizer, p.conversation, p.chosen, max_len, renderer) for p in chunk]
            seqs += [pm_input_ids(tokenizer, p.conversation, p.rejected, max_len, renderer) for p in chunk]
            ids, mask = _right_pad(seqs, tokenizer.pad_token_id)
            logits = pm(input_ids=ids, attention_mask=mask, use_cache=False).logits.squeeze(-1)
            rewards_c += logits[: len(chunk)].tolist()
            rewards_r += logits[len(chunk) :].tolist()
    return HeldOut.of(rewards_c, rewards_r, [float(p.probability) for p in pairs])


def _right_pad(seqs: Sequence[Sequence[int]], pad_id: int):
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(list(s), dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask


# ---------------------------------------------------------------------------------------------------- scoring


def _active_adapter(peft_model: Any) -> Any:
    active = peft_model.active_adapter
    return active


@contextlib.contextmanager
def use_adapter(peft_model: Any, name: str | None):
    """Make adapter ``name`` the active one for a block (None: adapters disabled), restoring the previously
    active adapter and every parameter's ``requires_grad`` afterwards (peft's ``set_adapter`` changes them)."""
    flags = {n: p.requires_grad for n, p in peft_model.named_parameters()}
    previous = _active_adapter(peft_model)
    try:
        if name is None:
            with peft_model.disable_adapter():
                yield
        else:
            peft_model.set_adapter(name)
            yield
    finally:
        if name is not None and previous != name:
            peft_model.set_adapter(previous)
        for n, p in peft_model.named_parameters():
            want = flags.get(n)
            if want is not None and p.requires_grad != want:
                p.requires_grad_(want)


class RewardScorer:
    """The PM on a causal-LM base: LoRA adapter ``adapter_name`` plus the linear score head.

    ``score`` runs the base's decoder with that adapter active, takes the last hidden state at the last non-pad
    token (transformers' sequence-classification rule) and applies the head: the same numbers as the
    ``AutoModelForSequenceClassification`` the PM was trained as.
    """

    def __init__(
        self, peft_model: Any, head: Any, tokenizer: Any, *, adapter_name: str = "reward", max_len: int = 512,
        renderer: PromptRenderer | None = None,
    ) -> None:
        self.renderer = renderer or PromptRenderer()
        self.peft_model = peft_model
        self.head = head
        self.tokenizer = tokenizer
        self.adapter_name = adapter_name
        self.max_len = max_len

    @classmethod
    def attach(cls, pm_dir: str | os.PathLike[str], loaded: Any, peft_model: Any = None, *, adapter_name: str = "reward") -> "RewardScorer":
        """Load the PM in ``pm_dir`` onto ``loaded.model`` (wrapping it with peft if ``peft_model`` is None; the
        new PeftModel is ``scorer.peft_model``)."""
        import torch
        from peft import PeftModel
        from safetensors.torch import load_file

        pm = Path(pm_dir)
        meta_path = pm / META_FILE
        if not meta_path.is_file() or not (pm / HEAD_FILE).is_file():
            raise RLAIFError(f"{pm}: not a preference model directory (train one with `cai rl --algo ppo`)")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        try:
            with quiet_transformers():
                if peft_model is None:
                    peft_model = PeftModel.from_pretrained(loaded.model, str(pm), adapter_name=adapter_name, is_trainable=False)
                else:
                    peft_model.load_adapter(str(pm), adapter_name=adapter_name, is_trainable=False)
        except Exception as exc:
            raise RLAIFError(f"{pm}: cannot load the preference model onto {loaded.name}: {type(exc).__name__}: {exc}") from None
        weight = load_file(str(pm / HEAD_FILE))["weight"]
        head = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        with torch.no_grad():
            head.weight.copy_(weight)
        head.requires_grad_(False)
        head.to(next(loaded.model.parameters()).device)
        renderer = PromptRenderer(**meta["renderer"]) if meta.get("renderer") else None
        return cls(peft_model, head, loaded.tokenizer, adapter_name=adapter_name, max_len=int(meta["max_seq_len"]), renderer=renderer)

    def score_ids(self, sequences: Sequence[Sequence[int]], batch_size: int = 8) -> list[float]:
        """Rewards of already tokenized PM inputs."""
        import torch

        base = self.peft_model.get_base_model()
        decoder = base.get_decoder() if hasattr(base, "get_decoder") else base.model
        pad = self.tokenizer.pad_token_id
        out: list[float] = []
        was_training = self.peft_model.training
        self.peft_model.eval()
        try:
            with torch.no_grad(), use_adapter(self.peft_model, self.adapter_name):
                for i in range(0, len(sequences), batch_size):
                    ids, mask = _right_pad(sequences[i : i + batch_size], pad)
                    ids, mask = ids.to(self.head.weight.device), mask.to(self.head.weight.device)
                    hidden = decoder(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
                    idx = (torch.arange(ids.shape[1], device=ids.device) * (ids != pad).int()).argmax(-1)
                    pooled = hidden[torch.arange(ids.shape[0], device=ids.device), idx]
                    out += self.head(pooled.to(self.head.weight.dtype)).squeeze(-1).tolist()
        finally:
            if was_training:
                self.peft_model.train()
        return out

    def score(self, conversations: Sequence[Any], responses: Sequence[str], batch_size: int = 8) -> list[float]:
        """Rewards of ``responses`` to ``conversations``."""
        seqs = [pm_input_ids(self.tokenizer, c, r, self.max_len, self.renderer) for c, r in zip(conversations, responses)]
        return self.score_ids(seqs, batch_size)
