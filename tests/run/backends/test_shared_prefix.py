"""Shared-prefix decoding (``run.backends.shared_prefix``) gives the reference path's tokens and scores."""

from __future__ import annotations

import pytest

from cai_dsl.run.backends import GenerationParams, Prompt
from cai_dsl.run.backends import shared_prefix
from cai_dsl.run.backends.transformers_backend import TransformersBackend
from cai_dsl.run.generation import BatchedGenerator

PREAMBLE = "You are a careful assistant. Read the examples and answer in the same way. " * 6
QUESTIONS = ["hi", "What is two plus two?", "Name a colour, any colour you like.", "Why is the sky blue?", "Bye"]


def _pair(loaded, batch_size=4):
    fast = TransformersBackend(loaded, batch_size=batch_size, min_prefix_tokens=4)
    reference = TransformersBackend(loaded, batch_size=batch_size, min_prefix_tokens=4, fast_decode=False)
    return fast, reference


def _rows(backend):
    return [backend.encode_prompt(Prompt.user(q, system=PREAMBLE)) for q in QUESTIONS]


@pytest.fixture(scope="module")
def pair(tiny_backend):
    return _pair(tiny_backend.loaded)


def test_plain_generation_equals_model_generate(pair):
    fast, reference = pair
    prompts = [Prompt.user(q) for q in QUESTIONS]
    for params in (
        GenerationParams(max_new_tokens=10),
        GenerationParams(max_new_tokens=6, temperature=1.0, top_p=0.9, seed=5),
    ):
        assert fast.generate(prompts, params) == reference.generate(prompts, params)


def test_shared_prefix_generation_equals_reference_and_is_not_copied(pair, monkeypatch):
    fast, reference = pair
    rows = _rows(fast)
    params = GenerationParams(max_new_tokens=10)
    seen = []
    real = shared_prefix.decode

    def spy(model, prefix, prefix_len, input_ids, mask, spec):
        seen.append((prefix_len, None if prefix is None else {k.shape[0] for k, _ in prefix}, input_ids.shape[0]))
        return real(model, prefix, prefix_len, input_ids, mask, spec)

    monkeypatch.setattr(shared_prefix, "decode", spy)
    got = BatchedGenerator(fast, min_prefix_tokens=8).generate_ids(rows, params)
    assert got == BatchedGenerator(reference, min_prefix_tokens=8).generate_ids(rows, params)
    assert got == reference.generate_ids(rows, params)  # and equals generation without any prefix reuse
    with_prefix = [s for s in seen if s[0] > 0]
    # one copy of the prefix (batch dimension 1) serves every row of a batch
    assert all(s[1] == {1} for s in with_prefix) and max(s[2] for s in with_prefix) > 1


def test_stop_strings_and_eos_match_reference(pair):
    fast, reference = pair
    prompts = [Prompt.user(q) for q in QUESTIONS]
    full = reference.generate(prompts, GenerationParams(max_new_tokens=12))
    stop = full[1].text[3:5]
    params = GenerationParams(max_new_tokens=12, stop=(stop,))
    assert fast.generate(prompts, params) == reference.generate(prompts, params)


def test_scoring_with_shared_prefix_matches_reference(pair):
    fast, reference = pair
    prompts = [Prompt.user(q, system=PREAMBLE) for q in QUESTIONS[:3]]
    options = [" yes", " no", " maybe so"]
    for got, want in zip(fast.score(prompts, options), reference.score(prompts, options), strict=True):
        assert got == pytest.approx(want, abs=1e-3)


@pytest.mark.model
def test_embedded_model_shared_prefix_tokens_equal_reference(embedded_model):
    fast, reference = _pair(embedded_model, batch_size=3)
    rows = _rows(fast)[:3]
    params = GenerationParams(max_new_tokens=8)
    got = BatchedGenerator(fast, min_prefix_tokens=8).generate_ids(rows, params)
    assert got == reference.generate_ids(rows, params)
