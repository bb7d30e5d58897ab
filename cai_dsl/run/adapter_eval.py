"""Before/after evaluation of an SL-CAI adapter: log-probabilities of the revisions and greedy answers."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from cai_dsl.compile.ir import Program
from cai_dsl.run.backends.base import GenerationParams, continuation_ids, prompt_ids
from cai_dsl.run.context import ExecutionContext
from cai_dsl.run.errors import SLError
from cai_dsl.run.prompts import PromptRenderer, policy_prompt
from cai_dsl.run.sl_loop import last_user_text

__all__ = ["evaluate_adapter"]


def _completion_logprobs(backend: Any, program: Program, records: Sequence[dict[str, Any]]) -> list[tuple[float, int]]:
    """(summed log-prob, tokens) of each record's final response after its prompt, under ``backend``."""
    seqs, starts = [], []
    for r in records:
        text = backend.render(policy_prompt(program, r["prompt"]))
        pids = prompt_ids(backend.tokenizer, text)
        completion = PromptRenderer.of(program).text((r.get("final") or "").strip())
        seqs.append(pids + continuation_ids(backend.tokenizer, text, pids, completion))
        starts.append(len(pids))
    rows = backend.token_logprobs(seqs, starts)
    return [(sum(t.logprob for t in row), len(row)) for row in rows]


def _mean_per_token(pairs: Sequence[tuple[float, int]]) -> float | None:
    total = sum(n for _, n in pairs)
    return round(sum(lp for lp, _ in pairs) / total, 4) if total else None


def evaluate_adapter(
    program: Program,
    base_spec: str,
    adapter_dir: str | os.PathLike[str],
    held_out: Sequence[dict[str, Any]],
    train: Sequence[dict[str, Any]] = (),
    *,
    examples: int = 3,
    max_new_tokens: int = 48,
) -> dict[str, Any]:
    """Before/after numbers for an SL-CAI adapter.

    * mean log-probability per token of the held-out records' final revisions (and of the training
      records', a fit check) under the base model and under the base model with the adapter merged;
    * greedy answers of both models to the first ``examples`` held-out prompts, side by side.
    """
    from cai_dsl.run.loading import ModelError

    context = ExecutionContext.of(program)
    params = GenerationParams(max_new_tokens=max_new_tokens, temperature=0.0, seed=0)
    shown = list(held_out[:examples])
    out: dict[str, Any] = {"held_out": len(held_out), "train": len(train), "examples": []}
    answers: dict[str, list[str]] = {}
    for label, adapter in (("base", None), ("adapted", adapter_dir)):
        try:
            loaded = context.load(base_spec, adapter=adapter)
        except ModelError as exc:
            raise SLError(str(exc)) from None
        backend = context.transformers_backend(loaded, batch_size=8)
        out[f"{label}_logprob_held_out"] = _mean_per_token(_completion_logprobs(backend, program, held_out))
        out[f"{label}_logprob_train"] = _mean_per_token(_completion_logprobs(backend, program, train)) if train else None
        gens = backend.generate([policy_prompt(program, r["prompt"]) for r in shown], params)
        answers[label] = [g.text.strip() for g in gens]
        del backend, loaded
    for k, r in enumerate(shown):
        out["examples"].append(
            {"id": r["id"], "prompt": last_user_text(r["prompt"]), "base": answers["base"][k], "adapted": answers["adapted"][k]}
        )
    return out
