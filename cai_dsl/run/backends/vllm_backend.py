"""Optional in-process vLLM backend (GPU machines; ``pip install 'cai-dsl[vllm]'``).

``vllm`` is imported only when this backend is constructed.  Prompts are rendered with the model's own chat
template and passed to ``LLM.generate`` as token ids (``{"prompt_token_ids": ...}``), so generation and scoring
see exactly the tokens the transformers backend would.  ``score`` asks vLLM for prompt log-probs
(``SamplingParams(max_tokens=1, prompt_logprobs=1)``): ``RequestOutput.prompt_logprobs`` holds, per prompt
position, ``None`` for the first token and otherwise a dict ``token_id -> Logprob`` that always contains the
actual prompt token.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from cai_dsl.run.loading import DEFAULT_MODEL, ModelError, resolve_model_dir
from cai_dsl.run.backends.base import (
    BackendError,
    Generation,
    GenerationParams,
    Prompt,
    continuation_ids,
    prompt_ids,
    render_chat,
)

__all__ = ["VLLMBackend"]


class VLLMBackend:
    """Generate and score with vLLM's offline ``LLM`` engine.

    ``model`` is a model spec (GGUF sources are dequantized to the safetensors cache first); extra keyword
    arguments go to ``vllm.LLM`` (e.g. ``gpu_memory_utilization``, ``max_model_len``, ``tensor_parallel_size``).
    """

    def __init__(
        self, model: str | os.PathLike[str] = DEFAULT_MODEL, *, dtype: str = "auto", seed: int = 0, **llm_kwargs: Any
    ) -> None:
        try:
            import vllm
        except ImportError as exc:
            raise BackendError(
                "The vllm backend needs the vllm package, which runs on NVIDIA GPU machines: install the vllm "
                "extra there (`pip install 'cai-dsl[vllm]'`), or use the transformers backend (the default) or "
                "the openai backend pointed at a running vLLM server."
            ) from exc
        try:
            path = resolve_model_dir(model)
        except ModelError as exc:
            raise BackendError(str(exc)) from exc
        self._vllm = vllm
        self.path = path
        self._name = os.path.basename(os.fspath(model)) if not str(model).startswith("embedded") else str(model)
        self.llm = vllm.LLM(
            model=str(path), tokenizer=str(path), trust_remote_code=False, dtype=dtype, seed=seed, **llm_kwargs
        )
        self.tokenizer = self.llm.get_tokenizer()

    @property
    def name(self) -> str:
        """``vllm:<model>``."""
        return f"vllm:{self._name}"

    def render(self, prompt: Prompt) -> str:
        """The text fed to the model: chat template with generation prompt, then the assistant prefix."""
        return render_chat(self.tokenizer, prompt)

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams | None = None) -> list[Generation]:
        """Generate one answer per prompt (vLLM batches internally), in input order."""
        params = params or GenerationParams()
        if not prompts:
            return []
        inputs = [{"prompt_token_ids": prompt_ids(self.tokenizer, self.render(p))} for p in prompts]
        if params.max_new_tokens == 0:
            return [Generation("", len(x["prompt_token_ids"]), 0, "length") for x in inputs]
        sampling = self._vllm.SamplingParams(
            n=1,
            max_tokens=params.max_new_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            seed=params.seed,
            stop=list(params.stop) or None,
        )
        outputs = self.llm.generate(inputs, sampling, use_tqdm=False)
        results = []
        for inp, out in zip(inputs, outputs, strict=True):
            completion = out.outputs[0]
            results.append(
                Generation(
                    text=completion.text,
                    prompt_tokens=len(inp["prompt_token_ids"]),
                    completion_tokens=len(completion.token_ids),
                    finish_reason="length" if completion.finish_reason == "length" else "stop",
                )
            )
        return results

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[str]) -> list[list[float]]:
        """Total log-prob of each continuation after each rendered prompt, from vLLM prompt log-probs."""
        seqs: list[list[int]] = []
        starts: list[int] = []
        for p in prompts:
            text = self.render(p)
            pids = prompt_ids(self.tokenizer, text)
            for c in continuations:
                seqs.append(pids + continuation_ids(self.tokenizer, text, pids, c))
                starts.append(len(pids))
        if not seqs:
            return [[] for _ in prompts]
        sampling = self._vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=1)
        outputs = self.llm.generate([{"prompt_token_ids": s} for s in seqs], sampling, use_tqdm=False)
        sums = []
        for seq, start, out in zip(seqs, starts, outputs, strict=True):
            total = 0.0
            plp = out.prompt_logprobs
            for pos in range(start, len(seq)):
                entry = plp[pos] if plp is not None else None
                if entry is None or seq[pos] not in entry:
                    raise BackendError("vLLM returned no prompt log-prob for a continuation token")
                total += float(entry[seq[pos]].logprob)
            sums.append(total)
        k = len(continuations)
        return [sums[i * k : (i + 1) * k] for i in range(len(prompts))]
