"""LoRA adapters served next to the base (`cai serve --lora NAME=DIR`): a request naming an adapter gets that
adapter's answer, any other the base's, concurrent requests for different models never share a batch, and a bad
adapter is a clear error."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from cai_dsl.run.backends.base import GenerationParams, Prompt
from cai_dsl.run.serve import make_server
from cai_dsl.run.serve_adapters import AdapterError, load_served_adapters

PROMPTS = [Prompt.user(t) for t in ("How do I bake bread?", "Name a colour.", "Tell me about rivers.")]
PARAMS = GenerationParams(max_new_tokens=6, temperature=0.0)


@pytest.fixture(scope="module")
def adapters(tmp_path_factory, tiny_model_dir):
    import torch
    from peft import LoraConfig, get_peft_model

    from cai_dsl.run.loading import load_model

    out = tmp_path_factory.mktemp("lora")
    for name, seed in (("one", 1), ("two", 2)):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = get_peft_model(load_model(str(tiny_model_dir)).model,
                                   LoraConfig(task_type="CAUSAL_LM", r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
        model.save_pretrained(str(out / name))
    return {"one": out / "one", "two": out / "two"}


@pytest.fixture(scope="module")
def served(tiny_model_dir, adapters):
    from cai_dsl.run.loading import load_model

    backend, lora = load_served_adapters(load_model(str(tiny_model_dir)), adapters, batch_size=4)
    srv = make_server(backend, "127.0.0.1", 0, model_name="tiny", adapters=lora)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv, backend, lora
    srv.shutdown()
    srv.server_close()


def _ask(srv, model: str, prompt: Prompt) -> str:
    client = openai.OpenAI(base_url=srv.url, api_key="unused", max_retries=0)
    reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt.messages[-1].content}],
                                           max_tokens=PARAMS.max_new_tokens, temperature=0.0)
    assert reply.model == model
    return reply.choices[0].message.content


def test_each_model_answers_as_in_process(served):
    srv, backend, lora = served
    expected = {}
    for name in ("tiny", "one", "two"):
        with lora.use(None if name == "tiny" else name):
            expected[name] = [g.text for g in backend.generate(PROMPTS, PARAMS)]
    assert expected["one"] != expected["tiny"] and expected["two"] != expected["one"]  # the adapters change answers
    jobs = [(name, i) for name in expected for i in range(len(PROMPTS))]
    with ThreadPoolExecutor(len(jobs)) as pool:  # concurrent: batches must not mix models
        got = list(pool.map(lambda j: _ask(srv, j[0], PROMPTS[j[1]]), jobs))
    assert got == [expected[name][i] for name, i in jobs]
    ids = [m.id for m in openai.OpenAI(base_url=srv.url, api_key="unused").models.list().data]
    assert ids == ["tiny", "one", "two"]


def test_unknown_model_is_a_404_listing_what_is_served(served):
    srv, _, _ = served
    with pytest.raises(openai.NotFoundError) as info:
        _ask(srv, "three", PROMPTS[0])
    assert "'one'" in str(info.value) and "'two'" in str(info.value)


def test_bad_adapters_are_refused(tmp_path, tiny_model_dir):
    from cai_dsl.run.loading import load_model

    loaded = load_model(str(tiny_model_dir))
    with pytest.raises(AdapterError, match="no adapter_config.json"):
        load_served_adapters(loaded, {"x": tmp_path})
    with pytest.raises(AdapterError, match="without spaces"):
        load_served_adapters(loaded, {"a b": tmp_path})


def test_cli_rejects_a_malformed_lora_option():
    from typer.testing import CliRunner

    from cai_dsl.cli import app

    result = CliRunner().invoke(app, ["serve", "--lora", "nodir"])
    assert result.exit_code == 2 and "expected NAME=DIR" in result.output
