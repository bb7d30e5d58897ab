"""The inference-time constitutional loop: critique and revise one answer (``cai revise``, ``cai serve --constitution``)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cai_dsl.compile.ir import Program
from cai_dsl.run.data import PromptItem
from cai_dsl.run.sl_loop import ModelSet, SLOptions, SLRunner

__all__ = ["make_transform", "revise_once"]


def revise_once(
    program: Program,
    models: ModelSet,
    prompt: str | Sequence[Mapping[str, str]],
    *,
    response: str | None = None,
    options: SLOptions | None = None,
    on_step: Callable[[str, int, dict], None] | None = None,
    key: str | None = None,
) -> dict[str, Any]:
    """The constitutional loop for one prompt at inference time: generate (unless ``response`` is
    given), then critique and revise for the program's rounds. Returns the result dict (``initial``,
    ``rounds``, ``final``, ``stopped``...); ``on_step`` sees each step as it happens."""
    conv: str | tuple[dict, ...] = prompt if isinstance(prompt, str) else tuple(dict(m) for m in prompt)
    text = conv if isinstance(conv, str) else json.dumps(list(conv), sort_keys=True)
    item = PromptItem(id="p-" + hashlib.sha256(text.encode()).hexdigest()[:16], prompt=conv)
    runner = SLRunner(program, models, options)
    return runner.run_chunk([item], key or item.id, initial=[response], on_step=on_step)[0]


def make_transform(program: Program, backend: Any, *, options: SLOptions | None = None) -> Callable[[list[dict], str], str]:
    """The ``cai serve`` answer hook: critique and revise every chat answer with ``program``, using the
    served backend for every role (it is called with the server's model lock held)."""
    models = ModelSet.from_backend(program, backend)

    def transform(messages: list[dict[str, str]], answer: str) -> str:
        turns = [m for m in messages if m.get("role") in ("user", "assistant")]
        if not turns or turns[-1].get("role") != "user":
            return answer  # e.g. continuing an assistant message: nothing to critique
        result = revise_once(program, models, turns, response=answer, options=options)
        return result["final"] if result["final"] else answer

    return transform
