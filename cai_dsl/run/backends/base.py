"""The generation-backend interface shared by every backend (transformers, OpenAI-compatible HTTP, vLLM).

This module imports neither torch nor transformers, so that choosing a backend stays cheap.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from cai_dsl.core.errors import CaiError

if TYPE_CHECKING:
    from cai_dsl.compile.ir import ChatPrompt

__all__ = [
    "Backend",
    "BackendError",
    "ChatMessage",
    "Generation",
    "GenerationParams",
    "Prompt",
    "ROLES",
    "continuation_ids",
    "encode_text",
    "prompt_ids",
    "render_chat",
    "truncate_at_stop",
    "uses_chat_template",
]

ROLES = ("system", "user", "assistant")


class BackendError(CaiError):
    """A backend could not be created or a request failed; the message says what to fix."""


@dataclass(frozen=True)
class ChatMessage:
    """One chat turn."""

    role: str
    content: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"chat role must be one of {ROLES}, not {self.role!r}")
        if not isinstance(self.content, str):
            raise TypeError(f"chat content must be a string, not {type(self.content).__name__}")

    def to_dict(self) -> dict[str, str]:
        """Return the OpenAI/transformers message dict ``{"role": ..., "content": ...}``."""
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class Prompt:
    """A chat conversation to continue, plus an optional start of the assistant's answer.

    ``assistant_prefix`` is appended after the rendered generation prompt: the model continues after it (e.g.
    ``"The answer is: ("`` for multiple-choice scoring).
    """

    messages: tuple[ChatMessage, ...]
    assistant_prefix: str = ""

    def __post_init__(self) -> None:
        msgs = tuple(m if isinstance(m, ChatMessage) else ChatMessage(m["role"], m["content"]) for m in self.messages)
        if not msgs:
            raise ValueError("a prompt needs at least one message")
        object.__setattr__(self, "messages", msgs)

    @classmethod
    def user(cls, text: str, *, system: str | None = None, assistant_prefix: str = "") -> Prompt:
        """A one-turn prompt: an optional system message and one user message."""
        msgs = ([ChatMessage("system", system)] if system is not None else []) + [ChatMessage("user", text)]
        return cls(tuple(msgs), assistant_prefix)

    @classmethod
    def from_messages(cls, messages: Iterable[Any], assistant_prefix: str = "") -> Prompt:
        """Build a prompt from ChatMessage objects or ``{"role", "content"}`` dicts."""
        return cls(tuple(messages), assistant_prefix)

    @classmethod
    def from_chat(cls, chat: ChatPrompt) -> Prompt:
        """The backend prompt of a compiled :class:`~cai_dsl.compile.ir.ChatPrompt`."""
        return cls.from_messages(chat.message_dicts(), assistant_prefix=chat.assistant_prefix)

    def message_dicts(self) -> list[dict[str, str]]:
        """The messages as a list of ``{"role", "content"}`` dicts."""
        return [m.to_dict() for m in self.messages]


@dataclass(frozen=True)
class GenerationParams:
    """Decoding parameters. ``temperature == 0`` means greedy decoding.

    ``seed`` makes sampling reproducible: the same seed, inputs and batch size give the same outputs.
    ``stop`` strings end a generation; the returned text excludes them.
    """

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = 0
    stop: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        else:
            object.__setattr__(self, "stop", tuple(s for s in self.stop if s))
        if self.max_new_tokens < 0:
            raise ValueError("max_new_tokens must be >= 0")
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")

    @property
    def greedy(self) -> bool:
        """True when decoding is deterministic argmax (temperature 0)."""
        return self.temperature == 0


@dataclass(frozen=True)
class Generation:
    """One generated answer. ``finish_reason`` is ``"stop"`` (EOS or a stop string) or ``"length"``."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str


@runtime_checkable
class Backend(Protocol):
    """What the execution layer needs from a model: render, generate and score."""

    @property
    def name(self) -> str:
        """A short description such as ``transformers:smollm2-135m``."""
        ...

    def render(self, prompt: Prompt) -> str:
        """The exact text fed to the model for ``prompt`` (chat template + generation prompt + prefix)."""
        ...

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams | None = None) -> list[Generation]:
        """Generate one answer per prompt, in input order."""
        ...

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[str]) -> list[list[float]]:
        """For each prompt, the total log-probability of each continuation right after the rendered prompt."""
        ...


def truncate_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut ``text`` at the earliest occurrence of any stop string; return (text, whether one was found)."""
    cut = -1
    for s in stop:
        if not s:
            continue
        i = text.find(s)
        if i != -1 and (cut == -1 or i < cut):
            cut = i
    if cut == -1:
        return text, False
    return text[:cut], True


def render_chat(tokenizer: Any, prompt: Prompt) -> str:
    """Render ``prompt`` with a tokenizer's chat template (generation prompt added) plus its assistant prefix.

    Tokenizers without a chat template (base models) get a plain ``Role: text`` transcript ending in
    ``Assistant:``.
    """
    messages = prompt.message_dicts()
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    else:
        text = "".join(f"{m['role'].capitalize()}: {m['content']}\n\n" for m in messages) + "Assistant:"
        if prompt.assistant_prefix and not prompt.assistant_prefix[:1].isspace():
            text += " "
    return text + prompt.assistant_prefix


def encode_text(tokenizer: Any, text: str, *, add_special_tokens: bool = False) -> list[int]:
    """Token ids of ``text`` (no special tokens unless asked: rendered chat text already contains them)."""
    return list(tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])


def uses_chat_template(tokenizer: Any) -> bool:
    """Whether ``render_chat`` uses the tokenizer's chat template (else prompts get the tokenizer's BOS)."""
    return bool(getattr(tokenizer, "chat_template", None))


def continuation_ids(tokenizer: Any, prompt_text: str, prompt_ids: Sequence[int], continuation: str) -> list[int]:
    """Token ids of ``continuation`` as it follows ``prompt_text`` (whose ids are ``prompt_ids``).

    The joint tokenization of ``prompt_text + continuation`` is used when it extends ``prompt_ids`` unchanged
    (the common case); when a token would straddle the boundary, the continuation is tokenized on its own so
    that the prompt tokens stay exactly those the model sees during generation.
    """
    if not continuation:
        return []
    special = not uses_chat_template(tokenizer)
    joint = encode_text(tokenizer, prompt_text + continuation, add_special_tokens=special)
    n = len(prompt_ids)
    if len(joint) > n and joint[:n] == list(prompt_ids):
        return joint[n:]
    return encode_text(tokenizer, continuation)


def prompt_ids(tokenizer: Any, prompt_text: str) -> list[int]:
    """Token ids of a rendered prompt: the chat template already holds special tokens; plain text gets BOS."""
    return encode_text(tokenizer, prompt_text, add_special_tokens=not uses_chat_template(tokenizer))
