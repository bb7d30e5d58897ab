"""Generation backends: one interface (``Backend``), several implementations.

* ``transformers`` (default): a local model run in-process (``TransformersBackend``);
* ``openai``: any OpenAI-compatible server, e.g. ``cai serve`` or vLLM (``OpenAIBackend``, stdlib only);
* ``vllm``: vLLM's offline engine on a GPU machine (``VLLMBackend``, needs the vllm extra);
* ``batch``: the ``openai`` backend's requests written to an OpenAI batch file and answered from its results
  file (``BatchFileBackend``: run the heavy part elsewhere with ``vllm run-batch`` or a Batch API).

Backend modules are imported lazily by ``make_backend`` so that importing this package stays cheap.
"""

from __future__ import annotations

from typing import Any

from cai_dsl.run.backends.base import (
    Backend,
    BackendError,
    ChatMessage,
    Generation,
    GenerationParams,
    Prompt,
    truncate_at_stop,
)

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendError",
    "ChatMessage",
    "Generation",
    "GenerationParams",
    "Prompt",
    "make_backend",
    "truncate_at_stop",
]

BACKENDS = ("transformers", "openai", "vllm", "batch")
_ALIASES = {"hf": "transformers", "huggingface": "transformers", "local": "transformers", "http": "openai"}


def make_backend(name: str = "transformers", **options: Any) -> Backend:
    """Create a backend by name (``transformers``, ``openai``, ``vllm``), passing ``options`` to its constructor.

    transformers: ``model`` (spec or LoadedModel), ``batch_size``, ``dtype``, ``device``, ``prefix_cache``;
    openai: ``base_url``, ``model``, ``api_key``, ``tokenizer``, ``timeout``, ``max_retries``;
    vllm: ``model`` and ``vllm.LLM`` keyword arguments;
    batch: ``directory``, ``model``, ``tokenizer``.
    """
    key = _ALIASES.get(name.strip().lower(), name.strip().lower())
    if key == "transformers":
        from cai_dsl.run.backends.transformers_backend import TransformersBackend

        return TransformersBackend(**options)
    if key == "openai":
        from cai_dsl.run.backends.openai_backend import OpenAIBackend

        return OpenAIBackend(**options)
    if key == "vllm":
        from cai_dsl.run.backends.vllm_backend import VLLMBackend

        return VLLMBackend(**options)
    if key == "batch":
        from cai_dsl.run.backends.batch_file import BatchFileBackend

        return BatchFileBackend(**options)
    raise BackendError(f"Unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}.")
