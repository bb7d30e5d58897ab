"""LoRA adapters served next to the base model by ``cai serve`` (``--lora NAME=PATH``, like vLLM's ``--lora-modules``).

All adapters live in one PEFT model over the served base, in the base's dtype; a request whose ``model`` is an
adapter's name runs with that adapter active (the model worker selects it around each call), any other request
with every adapter disabled. This is how the ``batch`` backend's requests for an SL or RL adapter are answered.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cai_dsl.core.errors import CaiError

__all__ = ["AdapterError", "ServedAdapters", "load_served_adapters"]


class AdapterError(CaiError):
    """An adapter that cannot be served (bad name, not an adapter directory, another base)."""


@dataclass(frozen=True)
class ServedAdapters:
    """LoRA adapters loaded into one PEFT model over the served base: ``use(name)`` activates adapter ``name`` for
    a block (``None``: every adapter disabled, the base)."""

    peft_model: Any
    names: tuple[str, ...]

    def use(self, name: str | None) -> contextlib.AbstractContextManager:
        from cai_dsl.run.train.reward_model import use_adapter

        return use_adapter(self.peft_model, name)


def load_served_adapters(loaded: Any, adapters: Mapping[str, str | Path], *, batch_size: int = 8) -> tuple[Any, ServedAdapters]:
    """A backend over ``loaded`` with every adapter of ``adapters`` (served name -> PEFT adapter directory) loaded
    in the base's dtype, and the :class:`ServedAdapters` that switch between them. Bad directories or adapters of
    another base raise :class:`AdapterError`."""
    from cai_dsl.run.context import quiet_transformers
    from cai_dsl.run.backends.transformers_backend import TransformersBackend
    from cai_dsl.run.loading import LoadedModel

    if not adapters:
        raise AdapterError("no adapters to serve")
    peft_model = None
    with quiet_transformers():
        for name, path in adapters.items():
            path = Path(path)
            if not name or any(c.isspace() for c in name):
                raise AdapterError(f"adapter name {name!r}: give a name without spaces")
            if not (path / "adapter_config.json").is_file():
                raise AdapterError(f"{path}: not a PEFT adapter directory (no adapter_config.json)")
            try:
                if peft_model is None:
                    from peft import PeftModel

                    peft_model = PeftModel.from_pretrained(loaded.model, str(path), adapter_name=name,
                                                           autocast_adapter_dtype=False)
                else:
                    peft_model.load_adapter(str(path), adapter_name=name, autocast_adapter_dtype=False)
            except Exception as exc:  # peft raises several types for a mismatched adapter
                raise AdapterError(f"{path}: cannot load adapter {name!r} onto {loaded.name}: {type(exc).__name__}: {exc}") from None
    peft_model.eval()
    model = LoadedModel(model=peft_model.get_base_model(), tokenizer=loaded.tokenizer, name=loaded.name, path=loaded.path)
    return TransformersBackend(model, batch_size=batch_size), ServedAdapters(peft_model, tuple(adapters))
