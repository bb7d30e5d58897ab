"""Compilation targets: where and how a compiled constitution runs.

A *target* is a TOML file (schema: ``targets/README.md``, model: :class:`Target`) naming the
backend, the chat format, the models by role (policy, critic, feedback ensemble), generation
budgets and training hyper-parameters. The packaged targets live next to this module
(``smollm2-cpu.toml``, ``llama-7b-gpu.toml``); ``load_target`` accepts one of their names or the
path of any TOML file.

This module is the ``cai_dsl.compile.targets`` package (setuptools maps it from the repository's
``targets/`` directory, so the TOML files ship as its package data). It imports neither torch nor
transformers.
"""

from __future__ import annotations

import os
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cai_dsl.core.errors import CaiError

__all__ = [
    "BackendOptions",
    "CHAT_FORMATS",
    "DPOParams",
    "FeedbackModel",
    "GenerationParams",
    "LoraParams",
    "ModelRoles",
    "PPOParams",
    "RewardModelParams",
    "SFTParams",
    "Target",
    "TargetError",
    "DEFAULT_TARGET",
    "list_targets",
    "load_target",
    "parse_target",
]

DEFAULT_TARGET = "smollm2-cpu"
"""The target used when none is named."""

EMBEDDED_DEFAULT = "embedded:smollm2-135m"

CHAT_FORMATS = ("chatml", "llama3", "llama2", "mistral", "model")
"""Known chat formats; ``model`` means: use the tokenizer's own chat template."""


class TargetError(CaiError):
    """A target could not be found or is invalid; the message says where and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BackendOptions(_Strict):
    """``[backend_options]``: how requests reach the model."""

    batch_size: int = Field(8, ge=1, le=4096, description="prompts generated or scored per batch")
    base_url: str | None = Field(None, description="OpenAI-compatible server URL (backend `openai`), e.g. http://localhost:8000/v1")
    api_key_env: str | None = Field(
        None, description="name of the environment variable holding the API key (never the key itself)"
    )
    timeout_s: float = Field(120.0, gt=0, description="per-request timeout of HTTP backends, seconds")
    max_concurrency: int = Field(8, ge=1, le=1024, description="parallel HTTP requests (backend `openai`)")
    tensor_parallel_size: int = Field(1, ge=1, le=64, description="GPUs per model (backend `vllm`)")
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1, description="fraction of GPU memory vLLM may use")
    batch_dir: str | None = Field(
        None, description="directory of the OpenAI batch files (backend `batch`): requests.jsonl is written there, "
        "results*.jsonl are read from there"
    )


class FeedbackModel(_Strict):
    """One member of the feedback (comparison) ensemble."""

    model: str = Field(description="model spec: `embedded:smollm2-135m`, a local HF directory or a .gguf file")
    weight: float = Field(1.0, gt=0, description="weight of this model's soft label in the ensemble average")


def _feedback_list(value: Any) -> Any:
    if value is None:
        return value
    if isinstance(value, (str, dict)):
        value = [value]
    if isinstance(value, list):
        return [{"model": v} if isinstance(v, str) else v for v in value]
    return value


class ModelRoles(_Strict):
    """``[models]``: which model plays which role."""

    policy: str = Field(EMBEDDED_DEFAULT, description="the model being trained (and generating responses)")
    critic: str | None = Field(
        None, description="the model that writes critiques and revisions; default: the policy model"
    )
    feedback: tuple[FeedbackModel, ...] = Field(
        (),
        description="the comparison model(s); several form an ensemble whose soft labels are weight-averaged; "
        "default: the critic model",
    )
    classifier: str | None = Field(None, description="the model that tags prompts with facet values; default: the critic")

    @field_validator("feedback", mode="before")
    @classmethod
    def _coerce_feedback(cls, value: Any) -> Any:
        return _feedback_list(value)

    @field_validator("policy", "critic", "classifier")
    @classmethod
    def _non_empty(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("a model spec must not be empty")
        return value

    @property
    def critic_model(self) -> str:
        return self.critic or self.policy

    @property
    def feedback_models(self) -> tuple[FeedbackModel, ...]:
        return self.feedback or (FeedbackModel(model=self.critic_model),)

    @property
    def classifier_model(self) -> str:
        return self.classifier or self.critic_model


class GenerationParams(_Strict):
    """``[generation]``: decoding of responses, critiques and revisions."""

    max_new_tokens: int = Field(128, ge=1, le=32768, description="token budget of each generated turn")
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="sampling temperature (0 = greedy)")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="nucleus sampling mass")
    cot_max_new_tokens: int = Field(
        256, ge=1, le=32768, description="token budget of a chain-of-thought comparison's reasoning"
    )


class LoraParams(_Strict):
    r: int = Field(16, ge=1, le=1024, description="LoRA rank")
    alpha: int = Field(32, ge=1, le=4096, description="LoRA scaling alpha")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="LoRA dropout")
    target_modules: tuple[str, ...] = Field(
        ("q_proj", "k_proj", "v_proj", "o_proj"), description="module names LoRA adapts"
    )


class SFTParams(_Strict):
    """``[sft]``: supervised fine-tuning on revised responses."""

    use_lora: bool = Field(True, description="train LoRA adapters instead of all weights")
    lora: LoraParams = LoraParams()
    learning_rate: float = Field(2e-4, gt=0, description="optimizer learning rate")
    epochs: int = Field(1, ge=1, le=100, description="passes over the dataset")
    batch_size: int = Field(8, ge=1, le=4096, description="examples per optimizer step (before accumulation)")
    grad_accum: int = Field(1, ge=1, le=1024, description="gradient accumulation steps")
    max_seq_len: int = Field(512, ge=16, le=131072, description="tokens per training example (longer are truncated)")
    warmup_ratio: float = Field(0.03, ge=0, lt=1, description="fraction of steps with linear warm-up")


class RewardModelParams(_Strict):
    """``[reward_model]``: the preference model trained on AI-feedback labels."""

    base: str | None = Field(None, description="model spec the reward model starts from; default: the policy model")
    use_lora: bool = True
    lora: LoraParams = LoraParams()
    learning_rate: float = Field(1e-4, gt=0)
    epochs: int = Field(1, ge=1, le=100)
    batch_size: int = Field(8, ge=1, le=4096)
    max_seq_len: int = Field(512, ge=16, le=131072)


class PPOParams(_Strict):
    """``[ppo]``: RL against the reward model."""

    learning_rate: float = Field(1e-5, gt=0)
    kl_coef: float = Field(0.05, ge=0, description="KL penalty towards the reference (SFT) policy")
    clip_range: float = Field(0.2, gt=0, le=1, description="PPO ratio clipping")
    vf_coef: float = Field(0.1, ge=0, description="value-loss coefficient")
    gae_lambda: float = Field(0.95, ge=0, le=1, description="GAE lambda")
    gamma: float = Field(1.0, ge=0, le=1, description="discount")
    ppo_epochs: int = Field(4, ge=1, le=64, description="optimisation epochs per rollout batch")
    rollout_batch_size: int = Field(16, ge=1, le=65536, description="prompts per rollout")
    mini_batch_size: int = Field(4, ge=1, le=4096)
    total_episodes: int = Field(256, ge=1, description="prompts rolled out in total")


class DPOParams(_Strict):
    """``[dpo]``: direct preference optimisation on AI-feedback pairs."""

    beta: float = Field(0.1, gt=0, description="DPO temperature beta")
    learning_rate: float = Field(5e-6, gt=0)
    epochs: int = Field(1, ge=1, le=100)
    batch_size: int = Field(8, ge=1, le=4096)
    max_seq_len: int = Field(512, ge=16, le=131072)
    use_lora: bool = True
    lora: LoraParams = LoraParams()
    loss_type: Literal["sigmoid", "ipo", "hinge"] = Field("sigmoid", description="DPO loss variant")


class Target(_Strict):
    """A compilation target (one TOML file). See ``targets/README.md``."""

    name: str = Field(description="short name, e.g. smollm2-cpu", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    backend: Literal["transformers", "openai", "vllm", "batch"] = "transformers"
    backend_options: BackendOptions = BackendOptions()
    chat_format: Literal["chatml", "llama3", "llama2", "mistral", "model"] = Field(
        "model", description="prompt format; `model` = the tokenizer's chat template"
    )
    system_prompt: str | None = Field(None, description="system message put first in every prompt, or none")
    device: Literal["cpu", "cuda", "mps", "auto"] = "cpu"
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"
    max_revisions: int | None = Field(
        None, ge=1, le=16, description="cap on critique/revision rounds, whatever the deployment sets"
    )
    max_principles_per_comparison: int | None = Field(
        None, ge=1, le=64, description="cap on principles sampled per comparison"
    )
    models: ModelRoles = ModelRoles()
    generation: GenerationParams = GenerationParams()
    sft: SFTParams = SFTParams()
    reward_model: RewardModelParams = RewardModelParams()
    ppo: PPOParams = PPOParams()
    dpo: DPOParams = DPOParams()

    @model_validator(mode="after")
    def _backend_needs(self) -> "Target":
        if self.backend == "openai" and not self.backend_options.base_url:
            raise ValueError("backend `openai` needs backend_options.base_url")
        if self.backend == "batch" and not self.backend_options.batch_dir:
            raise ValueError("backend `batch` needs backend_options.batch_dir")
        return self


# ------------------------------------------------------------------ loading


def _packaged_dir():
    return resources.files("cai_dsl.targets")


def list_targets() -> list[str]:
    """Names of the packaged targets, sorted."""
    return sorted(
        entry.name[: -len(".toml")]
        for entry in _packaged_dir().iterdir()
        if entry.name.endswith(".toml") and entry.is_file()
    )


def _key_line(text: str, loc: tuple) -> int | None:
    """Best-effort line (1-based) of the key a validation error is about: the line of the
    longest table header or ``key =`` path that is a prefix of the error's location."""
    names = [str(p) for p in loc if isinstance(p, str)]
    if not names:
        return None
    section: list[str] = []
    best, best_len = None, 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        header = re.match(r"^\[\[?\s*([^\]]+?)\s*\]\]?", line)
        if header:
            section = [s.strip().strip('"') for s in header.group(1).split(".")]
            path = section
        else:
            m = re.match(r"^([A-Za-z0-9_.\-\"]+)\s*=", line)
            if not m:
                continue
            path = section + [k.strip().strip('"') for k in m.group(1).split(".")]
        if names[: len(path)] == path and len(path) > best_len:
            best, best_len = number, len(path)
    return best


def parse_target(text: str, origin: str = "<target>") -> Target:
    """Parse and validate a target from TOML text; ``origin`` names it in error messages."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        if m:
            where = f"{origin}:{m.group(1)}:{m.group(2)}"
            msg = msg[: m.start()].strip()
        else:
            where = origin
        raise TargetError(f"{where}: invalid TOML: {msg}") from None
    try:
        return Target.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err.get("loc", ()))
            dotted = ".".join(str(p) for p in loc) or "(top level)"
            line = _key_line(text, loc)
            where = f"{origin}:{line}" if line else origin
            message = err.get("msg", "invalid value")
            if err.get("type") == "extra_forbidden":
                message = "unknown field (see targets/README.md for the schema)"
            elif err.get("type") == "missing":
                message = "required field is missing"
            problems.append(f"{where}: `{dotted}`: {message}")
        raise TargetError("invalid target:\n  " + "\n  ".join(problems)) from None


def load_target(name_or_path: str | os.PathLike[str] | Target | None = None) -> Target:
    """Load a target by packaged name (``smollm2-cpu``) or from a TOML file path.

    A value containing a path separator, ending in ``.toml`` or naming an existing file is a
    path; anything else is looked up among the packaged targets. ``None`` gives the default
    target. Raises :class:`TargetError` with a clear message on any problem.
    """
    if isinstance(name_or_path, Target):
        return name_or_path
    if name_or_path is None:
        name_or_path = DEFAULT_TARGET
    raw = os.fspath(name_or_path)
    is_path = raw.endswith(".toml") or os.sep in raw or "/" in raw or os.path.isfile(raw)
    if is_path:
        path = Path(raw)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise TargetError(f"{raw}: target file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise TargetError(f"{raw}: cannot read target file: {exc}") from None
        return parse_target(text, raw)
    entry = _packaged_dir() / f"{raw}.toml"
    if not entry.is_file():
        known = ", ".join(list_targets()) or "(none)"
        raise TargetError(f"unknown target `{raw}`; packaged targets: {known} (or give the path of a .toml file)")
    return parse_target(entry.read_text(encoding="utf-8"), f"targets/{raw}.toml")
