"""Chat messages, rendered prompts, and the raw-text renderer of the built-in chat formats."""

from __future__ import annotations

from typing import Literal, Sequence

from cai_dsl.compile.base import Frozen

__all__ = ["ChatFormat", "ChatPrompt", "Message", "Role", "render_chat"]

Role = Literal["system", "user", "assistant"]
ChatFormat = Literal["chatml", "llama3", "llama2", "mistral", "model"]


class Message(Frozen):
    """One chat turn."""

    role: Role
    content: str


class ChatPrompt(Frozen):
    """A rendered prompt: messages, the start of the assistant's answer, and (for scoring) the continuations.

    ``assistant_prefix`` is text the model's answer starts with (the model continues after it);
    ``continuations`` are the strings whose log-probabilities are scored right after it.
    ``stop`` lists strings that end a generation.
    """

    messages: tuple[Message, ...]
    assistant_prefix: str = ""
    continuations: tuple[str, ...] = ()
    stop: tuple[str, ...] = ()

    def message_dicts(self) -> list[dict[str, str]]:
        return [{"role": m.role, "content": m.content} for m in self.messages]


def render_chat(
    messages: Sequence[Message],
    chat_format: str,
    add_generation_prompt: bool = True,
    assistant_prefix: str = "",
) -> str:
    """Render messages as raw text for ``chatml``, ``llama3``, ``llama2`` or ``mistral``.

    Contents are inserted as given: the Program's rendering API has already neutralised control
    tokens in them. ``model`` (the tokenizer's own template) cannot be rendered here.
    """
    if chat_format == "chatml":
        text = "".join(f"<|im_start|>{m.role}\n{m.content}<|im_end|>\n" for m in messages)
        if add_generation_prompt:
            text += "<|im_start|>assistant\n" + assistant_prefix
        return text
    if chat_format == "llama3":
        text = "<|begin_of_text|>" + "".join(
            f"<|start_header_id|>{m.role}<|end_header_id|>\n\n{m.content}<|eot_id|>" for m in messages
        )
        if add_generation_prompt:
            text += "<|start_header_id|>assistant<|end_header_id|>\n\n" + assistant_prefix
        return text
    if chat_format in ("llama2", "mistral"):
        system = None
        rest = list(messages)
        if rest and rest[0].role == "system":
            system, rest = rest[0].content, rest[1:]
        text = ""
        pending_user: str | None = None
        for m in rest:
            if m.role == "user":
                content = m.content
                if system is not None:
                    content = (f"<<SYS>>\n{system}\n<</SYS>>\n\n" if chat_format == "llama2" else system + "\n\n") + content
                    system = None
                pending_user = content
                text += f"<s>[INST] {content} [/INST]"
            elif m.role == "assistant":
                text += f" {m.content} </s>"
                pending_user = None
            else:
                raise ValueError("a system message may only come first")
        if add_generation_prompt:
            text += (" " if pending_user is not None and assistant_prefix else "") + assistant_prefix
        return text
    raise ValueError(
        f"chat format `{chat_format}` has no built-in renderer; the backend renders with the tokenizer's template"
    )
