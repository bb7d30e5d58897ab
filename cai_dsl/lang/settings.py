"""Compiler parameters a deployment may ``set``: names, types, ranges and defaults.

Defaults follow the CAI paper (Bai et al., 2022) where it states one: four
revision rounds with one principle sampled per round, one principle sampled per
comparison, chain-of-thought probabilities clamped to 40-60%.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class DeploymentSettings(BaseModel):
    """The parameters of ``set key = value`` lines, validated."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    revisions: int = Field(4, ge=1, le=16, description="critique/revision rounds per prompt")
    selection: Literal["random", "all", "applicable"] = Field(
        "random",
        description="principles per round: one sampled at random (paper), all in priority order, "
        "or those whose `when` holds for the prompt's scenario (weighted sample)",
    )
    principles_per_comparison: int = Field(1, ge=1, le=64, description="principles sampled and averaged per comparison")
    few_shot: int = Field(2, ge=0, le=32, description="few-shot examples in each critique/comparison preamble")
    seed: int = Field(0, ge=0, description="seed for principle sampling")
    stop_when_satisfied: bool = Field(True, description="stop revising when the critique finds nothing to fix")
    position_debias: bool = Field(True, description="score both option orders and average")
    soft_labels: bool = Field(True, description="keep normalised probabilities rather than hard 0/1 labels")
    chain_of_thought: bool = Field(False, description="reason before choosing; probabilities clamped")
    cot_clamp_min: float = Field(0.4, ge=0.0, le=0.5, description="lower clamp of chain-of-thought probabilities")
    cot_clamp_max: float = Field(0.6, ge=0.5, le=1.0, description="upper clamp of chain-of-thought probabilities")
    vote: Literal["weighted", "priority"] = Field(
        "weighted",
        description="how principle votes combine: weight-averaged, or the highest-priority principle decides",
    )
    classify_scenarios: bool = Field(True, description="tag prompts with facet values using the classifier program")
    max_new_tokens: int = Field(128, ge=1, le=8192, description="token budget of each generated turn")
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="sampling temperature of responses")

    @model_validator(mode="after")
    def _clamp_order(self) -> "DeploymentSettings":
        if self.cot_clamp_min > self.cot_clamp_max:
            raise ValueError("cot_clamp_min must not exceed cot_clamp_max")
        return self


def known_settings() -> dict[str, str]:
    """Setting name -> description, for diagnostics and docs."""
    return {name: f.description or "" for name, f in DeploymentSettings.model_fields.items()}


def validate_setting(key: str, value: object) -> str | None:
    """None when ``set key = value`` is acceptable on its own, else a message."""
    if key not in DeploymentSettings.model_fields:
        return f"unknown setting `{key}`"
    annotation = DeploymentSettings.model_fields[key].annotation
    if annotation is int and isinstance(value, bool) or annotation is bool and not isinstance(value, bool):
        return f"`{key}` expects {'true or false' if annotation is bool else 'a whole number'}"
    if annotation is int and isinstance(value, float):
        return f"`{key}` expects a whole number"
    try:
        DeploymentSettings.model_validate({key: value})
    except ValidationError as exc:
        return f"invalid value for `{key}`: {exc.errors()[0]['msg']}"
    return None
