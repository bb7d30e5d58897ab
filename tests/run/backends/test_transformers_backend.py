"""The transformers backend on a tiny random Llama (fast) and on the embedded SmolLM2 (marked ``model``)."""

from __future__ import annotations

import math

import pytest
import torch

from cai_dsl.run.backends import BackendError, GenerationParams, Prompt, make_backend
from cai_dsl.run.backends.base import ChatMessage, truncate_at_stop
from cai_dsl.run.backends.transformers_backend import TransformersBackend

PROMPTS = [
    Prompt.user("hi"),
    Prompt.user("Tell me a long story about a dragon who learned to read books in the library."),
    Prompt.user("What is two plus two?", system="Answer briefly."),
    Prompt.user("Name a colour.", assistant_prefix="My favourite colour is"),
    Prompt.user("Why is the sky blue? Explain like I am five years old, please."),
]


@pytest.fixture(scope="module")
def unbatched(tiny_backend):
    return TransformersBackend(tiny_backend.loaded, batch_size=1, prefix_cache=False)


def test_render_uses_chat_template_and_prefix(tiny_backend):
    text = tiny_backend.render(Prompt.user("hello", assistant_prefix="The answer is: ("))
    assert text.startswith("<|im_start|>system\n")
    assert text.endswith("<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\nThe answer is: (")


def test_prompt_types_validate():
    p = Prompt.from_messages([{"role": "user", "content": "x"}])
    assert p.messages == (ChatMessage("user", "x"),)
    with pytest.raises(ValueError):
        ChatMessage("robot", "x")
    with pytest.raises(ValueError):
        Prompt(())
    assert GenerationParams(stop="\n").stop == ("\n",)
    assert truncate_at_stop("abc.def\nx", ["\n", "."]) == ("abc", True)


def test_batched_generation_keeps_order_and_equals_unbatched(tiny_backend, unbatched):
    params = GenerationParams(max_new_tokens=8)
    batched = tiny_backend.generate(PROMPTS, params)
    singles = [unbatched.generate([p], params)[0] for p in PROMPTS]
    assert [g.text for g in batched] == [g.text for g in singles]
    assert [g.prompt_tokens for g in batched] == [len(tiny_backend.encode_prompt(p)) for p in PROMPTS]
    assert all(g.completion_tokens == 8 and g.finish_reason == "length" for g in batched)
    # a different batch size (different padding and grouping) gives the same greedy answers
    assert [g.text for g in unbatched.generate(PROMPTS, params)] == [g.text for g in batched]


def test_stop_sequences_truncate_and_stop_early(tiny_backend):
    params = GenerationParams(max_new_tokens=12)
    full = tiny_backend.generate(PROMPTS[:2], params)
    text = full[0].text
    stop = text[len(text) // 2 : len(text) // 2 + 3]
    assert stop and text.find(stop) > 0
    cut = tiny_backend.generate(PROMPTS[:2], GenerationParams(max_new_tokens=12, stop=(stop, "\x00never")))
    assert cut[0].text == text[: text.find(stop)]
    assert cut[0].finish_reason == "stop"
    assert cut[0].completion_tokens < 12
    # the other row is unaffected unless it contains the stop string too
    if stop not in full[1].text:
        assert cut[1].text == full[1].text


def test_all_rows_stopped_ends_generation(tiny_backend):
    full = tiny_backend.generate(PROMPTS[:1], GenerationParams(max_new_tokens=6))[0]
    first_word = full.text[:2]
    out = tiny_backend.generate(PROMPTS[:1], GenerationParams(max_new_tokens=50, stop=(first_word,)))[0]
    assert out.text == "" and out.finish_reason == "stop"
    assert out.completion_tokens <= 3


def test_sampling_is_seeded_and_leaves_global_rng_alone(tiny_backend):
    state = torch.get_rng_state()
    p = GenerationParams(max_new_tokens=5, temperature=1.0, top_p=0.9, seed=7)
    a = tiny_backend.generate(PROMPTS[:3], p)
    b = tiny_backend.generate(PROMPTS[:3], p)
    c = tiny_backend.generate(PROMPTS[:3], GenerationParams(max_new_tokens=5, temperature=1.0, seed=8))
    assert a == b
    assert [g.text for g in a] != [g.text for g in c]
    assert torch.equal(state, torch.get_rng_state())


def test_zero_new_tokens_and_empty_inputs(tiny_backend):
    assert tiny_backend.generate([], GenerationParams()) == []
    out = tiny_backend.generate(PROMPTS[:1], GenerationParams(max_new_tokens=0))
    assert out[0].text == "" and out[0].completion_tokens == 0


def test_context_budget_is_enforced(tiny_backend):
    long_prompt = Prompt.user("word " * 2100)
    with pytest.raises(BackendError, match="context"):
        tiny_backend.generate([long_prompt], GenerationParams(max_new_tokens=4))


def _hand_score(backend: TransformersBackend, prompt: Prompt, continuation: str) -> tuple[float, int]:
    text = backend.render(prompt)
    pids = backend.encode(text)
    cids = backend.encode(text + continuation)[len(pids) :]
    ids = torch.tensor([pids + cids])
    with torch.inference_mode():
        logits = backend.model(input_ids=ids).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    total = sum(logprobs[len(pids) + k - 1, t].item() for k, t in enumerate(cids))
    return total, len(cids)


@pytest.mark.parametrize("prefix_cache", [False, True])
def test_score_equals_hand_computed_log_softmax(tiny_backend, prefix_cache):
    backend = TransformersBackend(tiny_backend.loaded, batch_size=2, prefix_cache=prefix_cache, min_prefix_tokens=4)
    continuations = [" Paris is", "A", " hello world"]
    scores = backend.score(PROMPTS[:3], continuations)
    assert len(scores) == 3 and all(len(row) == 3 for row in scores)
    expected, n_tokens = _hand_score(backend, PROMPTS[0], " Paris is")
    assert n_tokens == 2
    assert scores[0][0] == pytest.approx(expected, abs=1e-4)
    for i, p in enumerate(PROMPTS[:3]):
        for j, c in enumerate(continuations):
            assert scores[i][j] == pytest.approx(_hand_score(backend, p, c)[0], abs=1e-4)


def test_score_empty_continuation_is_zero(tiny_backend):
    assert tiny_backend.score(PROMPTS[:2], ["", "A"])[1][0] == 0.0


def test_shared_prefix_kv_reuse_matches_no_cache(tiny_backend, monkeypatch):
    preamble = "Here are examples. " + " ".join(f"Q{i}: what is {i}+{i}? A: {2 * i}." for i in range(12))
    prompts = [Prompt.user(f"{preamble} Now: what is {n}+{n}?", system="You are a calculator.") for n in (3, 5, 8, 13)]
    options = ["A", " B", " 26 is the answer"]
    calls = []
    original = TransformersBackend._prefix_kv

    def spy(self, prefix):
        calls.append(len(prefix))
        return original(self, prefix)

    monkeypatch.setattr(TransformersBackend, "_prefix_kv", spy)
    cached = TransformersBackend(tiny_backend.loaded, batch_size=2, prefix_cache=True, min_prefix_tokens=8)
    plain = TransformersBackend(tiny_backend.loaded, batch_size=2, prefix_cache=False)
    with_cache = cached.score(prompts, options)
    assert calls and calls[0] > 100  # the shared preamble was run once and reused
    without = plain.score(prompts, options)
    assert len(calls) == 1
    for row_a, row_b in zip(with_cache, without, strict=True):
        for a, b in zip(row_a, row_b, strict=True):
            assert math.isfinite(a) and a == pytest.approx(b, abs=1e-4)


def test_token_logprobs_top_k(tiny_backend):
    ids = tiny_backend.encode_prompt(PROMPTS[0]) + tiny_backend.encode(" hello there")
    entries = tiny_backend.token_logprobs([ids], [1], top_k=3)[0]
    assert len(entries) == len(ids) - 1
    for e in entries:
        assert len(e.top) == 3 and e.top[0][1] >= e.top[1][1] >= e.top[2][1]
        assert e.logprob <= e.top[0][1] + 1e-5


def test_make_backend_factory(tiny_model_dir):
    backend = make_backend("transformers", model=str(tiny_model_dir), batch_size=2)
    assert backend.name == f"transformers:{tiny_model_dir.name}"
    with pytest.raises(BackendError, match="Unknown backend"):
        make_backend("nope")


def test_vllm_backend_explains_missing_package():
    pytest.importorskip("torch")
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(BackendError, match="vllm extra"):
            make_backend("vllm")
    else:  # pragma: no cover - only on GPU machines
        pytest.skip("vllm is installed")


def test_missing_model_is_a_backend_error(tmp_path):
    with pytest.raises(BackendError, match="no config.json"):
        TransformersBackend(str(tmp_path))


# -- the real embedded model ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smol(embedded_model):
    return TransformersBackend(embedded_model, batch_size=4)


@pytest.mark.model
def test_embedded_model_answers_capital_of_france(smol):
    out = smol.generate([Prompt.user("What is the capital of France?")], GenerationParams(max_new_tokens=12))[0]
    assert "Paris" in out.text


@pytest.mark.model
def test_embedded_model_scores_the_obvious_option(smol):
    prompt = Prompt.user("What is the capital of France?", assistant_prefix="The capital of France is")
    paris, london, berlin = smol.score([prompt], [" Paris", " London", " Berlin"])[0]
    assert paris > max(london, berlin) + 2
