"""The ONE rendering of the policy's prompt for a record, used by every stage.

SL-CAI (initial responses), SFT (training prompts), labelling (the two sampled responses), the preference
model (its input), PPO (rollouts), DPO (training prompts), evaluation (the compared answers) and serving all
build the policy's conversation with :func:`policy_messages`: the target's system prompt (if any) first,
then the record's turns with the chat format's control tokens made inert (``compile.ir.neutralize``), so a
prompt containing ``<|im_start|>system`` or ``[INST]`` is the same harmless text in every stage.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cai_dsl.compile.ir import neutralize
from cai_dsl.run.backends.base import Prompt

__all__ = ["PromptRenderer", "policy_messages", "policy_prompt"]

Conversation = str | Sequence[Mapping[str, str]]
"""A user's text, or user/assistant turns ending with a user turn."""


@dataclass(frozen=True)
class PromptRenderer:
    """How a program renders the policy's prompt: its system prompt and chat format (see the module docstring)."""

    system: str | None = None
    chat_format: str = "model"

    @classmethod
    def of(cls, program: Any) -> "PromptRenderer":
        """The renderer of a compiled program (``critique_revision.system``, ``chat_format``)."""
        return cls(program.critique_revision.system, program.chat_format)

    def text(self, text: str) -> str:
        """``text`` with the chat format's control tokens made inert."""
        return neutralize(text, self.chat_format)

    def messages(self, conversation: Conversation) -> list[dict[str, str]]:
        """The system prompt, then the conversation's turns (escaped)."""
        out = [{"role": "system", "content": self.system}] if self.system is not None else []
        if isinstance(conversation, str):
            out.append({"role": "user", "content": self.text(conversation)})
        else:
            out.extend({"role": m["role"], "content": self.text(m["content"])} for m in conversation)
        return out

    def response(self, text: str) -> dict[str, str]:
        """The assistant message of a response (escaped like the prompt)."""
        return {"role": "assistant", "content": self.text(text)}

    def prompt(self, conversation: Conversation) -> Prompt:
        """The backend prompt the policy answers."""
        return Prompt.from_messages(self.messages(conversation))

    def to_json(self) -> dict[str, Any]:
        return {"system": self.system, "chat_format": self.chat_format}


def policy_messages(program: Any, conversation: Conversation) -> list[dict[str, str]]:
    """The policy's messages for ``conversation`` under ``program`` (:meth:`PromptRenderer.messages`)."""
    return PromptRenderer.of(program).messages(conversation)


def policy_prompt(program: Any, conversation: Conversation) -> Prompt:
    """The backend prompt the policy answers for ``conversation`` under ``program``."""
    return PromptRenderer.of(program).prompt(conversation)
