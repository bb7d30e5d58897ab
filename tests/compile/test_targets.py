"""Targets: the packaged TOML files load, the schema is documented, errors are clear."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from cai_dsl.compile.targets import (
    DEFAULT_TARGET,
    FeedbackModel,
    Target,
    TargetError,
    list_targets,
    load_target,
    parse_target,
)

REPO = Path(__file__).resolve().parents[2]


def test_packaged_targets_load():
    assert {"smollm2-cpu", "llama-7b-gpu"} <= set(list_targets())
    for name in list_targets():
        target = load_target(name)
        assert target.name == name


def test_smollm2_cpu_is_small_and_embedded():
    t = load_target("smollm2-cpu")
    assert load_target(None) == t and DEFAULT_TARGET == "smollm2-cpu"
    assert t.backend == "transformers" and t.device == "cpu" and t.chat_format == "chatml"
    assert 48 <= t.generation.max_new_tokens <= 64
    assert t.backend_options.batch_size == 8
    assert t.max_revisions is not None
    assert t.models.policy == t.models.critic_model == "embedded:smollm2-135m"
    assert t.models.feedback_models == (FeedbackModel(model="embedded:smollm2-135m", weight=1.0),)


def test_llama_7b_gpu_example():
    t = load_target("llama-7b-gpu")
    assert t.device == "cuda" and t.dtype == "bfloat16" and t.backend in ("vllm", "transformers")
    assert len(t.models.feedback_models) >= 2  # an ensemble
    assert t.sft.lora.r >= 16


def test_load_by_path_and_defaults(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('name = "mine"\n[models]\npolicy = "/models/x"\nfeedback = "/models/judge"\n', encoding="utf-8")
    t = load_target(str(path))
    assert t.name == "mine" and t.chat_format == "model" and t.backend == "transformers"
    assert t.models.critic_model == "/models/x" and t.models.classifier_model == "/models/x"
    assert t.models.feedback_models == (FeedbackModel(model="/models/judge"),)
    assert load_target(t) is t


@pytest.mark.parametrize(
    "text, expected",
    [
        ('name = "x"\nbogus = 1\n', r"t\.toml:2: `bogus`: unknown field"),
        ('name = "x"\n[generation]\nmax_new_tokens = 0\n', r"t\.toml:3: `generation\.max_new_tokens`"),
        ('name = "x"\n[models]\npolicy = 3\n', r"t\.toml:3: `models\.policy`"),
        ("name = \n", r"t\.toml:1:\d+: invalid TOML"),
        ('description = "no name"\n', r"`name`: required field is missing"),
        ('name = "x"\nbackend = "openai"\n', r"base_url"),
        ('name = "x"\nchat_format = "jinja"\n', r"`chat_format`"),
        ('name = "x"\n[[models.feedback]]\nmodel = "a"\nweight = -1\n', r"t\.toml:\d+: `models\.feedback\.0\.weight`"),
    ],
)
def test_errors_name_file_line_and_field(text, expected):
    with pytest.raises(TargetError) as info:
        parse_target(text, "t.toml")
    assert re.search(expected, str(info.value)), str(info.value)


def test_unknown_name_lists_the_packaged_targets(tmp_path):
    with pytest.raises(TargetError, match="smollm2-cpu"):
        load_target("no-such-target")
    with pytest.raises(TargetError, match="not found"):
        load_target(str(tmp_path / "absent.toml"))


def _fields(model: type[BaseModel], prefix: str = "") -> list[str]:
    out = []
    for name, field in model.model_fields.items():
        out.append(prefix + name)
        annotation = field.annotation
        inner = getattr(annotation, "__args__", None) or (annotation,)
        for t in inner:
            if isinstance(t, type) and issubclass(t, BaseModel):
                out.extend(_fields(t, prefix + name + "."))
    return out


def test_readme_documents_every_field():
    readme = (REPO / "targets" / "README.md").read_text(encoding="utf-8")
    def documented(path: str) -> bool:
        leaf = path.split(".")[-1]
        return f"`{leaf}`" in readme or f"[{path}]" in readme

    missing = [f for f in _fields(Target) if not documented(f)]
    assert not missing, f"targets/README.md does not document: {missing}"
    for name in list_targets():
        assert name in readme


def test_a_target_round_trips_through_its_dump():
    t = load_target("llama-7b-gpu")
    assert Target.model_validate(t.model_dump()) == t
