"""Request validation for ``cai serve``: limits, OpenAI-style errors, and the parsing of every request field.

Every field of a request is either understood (and its type and range checked), accepted and ignored
(``IGNORED_FIELDS``), refused because ``cai serve`` does not implement it (``tools``, ``response_format``,
``n > 1``, ...: a 400 naming the field), or unknown (a 400, as the OpenAI API answers). Errors carry the
OpenAI error object ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cai_dsl.core.errors import CaiError
from cai_dsl.run.backends.base import GenerationParams, encode_text

__all__ = [
    "CHAT_FIELDS",
    "COMPLETION_FIELDS",
    "RequestError",
    "ServeLimits",
    "check_fields",
    "int_field",
    "parse_completion_prompts",
    "parse_messages",
    "parse_params",
]


@dataclass(frozen=True)
class ServeLimits:
    """The bounds of one server: body size (checked from ``Content-Length`` before reading), ``max_tokens``,
    prompts per ``/v1/completions`` request, ``top_logprobs``, the socket timeout in seconds, and micro-batching:
    at most ``max_batch`` concurrent chat completions per batch, collected until no new one has arrived for
    ``batch_window_s`` seconds, and for at most ``batch_max_wait_s`` after the first."""

    max_body_bytes: int = 1 << 20
    max_tokens: int = 4096
    max_prompts: int = 32
    max_top_logprobs: int = 20
    timeout_s: float = 30.0
    max_batch: int = 16
    batch_window_s: float = 0.01
    batch_max_wait_s: float = 0.25

    def __post_init__(self) -> None:
        if self.batch_window_s < 0 or self.batch_max_wait_s < 0:
            raise ValueError("batch_window_s and batch_max_wait_s must be >= 0")
        for name in ("max_body_bytes", "max_tokens", "max_prompts", "max_top_logprobs", "max_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if not self.timeout_s > 0:
            raise ValueError("timeout_s must be positive")


class RequestError(CaiError):
    """A request the server refuses: the HTTP status and the OpenAI error object's fields."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        kind: str = "invalid_request_error",
        code: str | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.kind = kind
        self.code = code

    def payload(self) -> dict[str, Any]:
        """The OpenAI-style error body."""
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


_COMMON = frozenset({"model", "max_tokens", "temperature", "top_p", "seed", "stop", "logprobs", "n", "stream"})
CHAT_FIELDS = _COMMON | {
    "messages", "max_completion_tokens", "top_logprobs", "continue_final_message", "add_generation_prompt",
}
"""The fields ``/v1/chat/completions`` implements."""
COMPLETION_FIELDS = _COMMON | {"prompt", "echo", "best_of", "suffix"}
"""The fields ``/v1/completions`` implements."""
IGNORED_FIELDS = frozenset({"user", "metadata", "store", "service_tier"})
"""Fields with no effect on the answer, accepted and ignored."""
_NEUTRAL: dict[str, Any] = {
    # field -> its value when unused (a request may send that); anything else is refused
    "tools": [], "tool_choice": "none", "functions": [], "function_call": "none", "parallel_tool_calls": None,
    "response_format": {"type": "text"}, "stream_options": None, "presence_penalty": 0, "frequency_penalty": 0,
    "logit_bias": {}, "audio": None, "modalities": ["text"], "prediction": None, "reasoning_effort": None,
    "web_search_options": None,
}


def check_fields(req: dict[str, Any], known: frozenset[str]) -> None:
    """Refuse unsupported fields set to a value that would change the answer, and unknown fields."""
    for key, value in req.items():
        if key in known or key in IGNORED_FIELDS:
            continue
        if key in _NEUTRAL:
            if value is None or value == _NEUTRAL[key] or (key == "response_format" and value == "text"):
                continue
            raise RequestError(400, f"{key} is not supported by cai serve", key, code="unsupported_parameter")
        raise RequestError(400, f"unrecognized request argument supplied: {key}", key, code="unknown_parameter")
    if req.get("stream"):
        raise RequestError(400, "streaming is not supported by cai serve", "stream", code="unsupported_parameter")
    for key in ("n", "best_of"):
        value = req.get(key, 1)
        if value not in (None, 1) or isinstance(value, bool):
            raise RequestError(400, f"only {key}=1 is supported", key, code="unsupported_parameter")
    for key in ("continue_final_message", "add_generation_prompt", "echo"):
        if req.get(key) is not None and not isinstance(req[key], bool):
            raise RequestError(400, f"{key} must be a boolean", key)


def _number(req: dict[str, Any], key: str, default: float) -> float:
    value = req.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(400, f"{key} must be a number", key)
    return float(value)


def int_field(req: dict[str, Any], key: str, default: int, lo: int | None, hi: int | None) -> int:
    """``req[key]`` as an integer in ``[lo, hi]`` (``default`` when absent); a 400 naming ``key`` otherwise."""
    value = req.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(400, f"{key} must be an integer", key)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise RequestError(400, f"{key} must be between {lo} and {hi}", key)
    return value


def parse_params(req: dict[str, Any], key: str, default: int, limits: ServeLimits) -> GenerationParams:
    """The sampling parameters of a request; ``req[key]`` is the token budget (at most ``limits.max_tokens``)."""
    max_tokens = int_field(req, key, min(default, limits.max_tokens), 0, limits.max_tokens)
    temperature = _number(req, "temperature", 1.0)
    top_p = _number(req, "top_p", 1.0)
    if not 0 <= temperature <= 2:
        raise RequestError(400, "temperature must be between 0 and 2", "temperature")
    if not 0 < top_p <= 1:
        raise RequestError(400, "top_p must be in (0, 1]", "top_p")
    seed = req.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise RequestError(400, "seed must be an integer", "seed")
    stop = req.get("stop")
    if stop is None:
        stops: tuple[str, ...] = ()
    elif isinstance(stop, str):
        stops = (stop,)
    elif isinstance(stop, list) and len(stop) <= 4 and all(isinstance(s, str) for s in stop):
        stops = tuple(stop)
    else:
        raise RequestError(400, "stop must be a string or a list of at most 4 strings", "stop")
    return GenerationParams(max_new_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed, stop=stops)


def parse_messages(value: Any) -> list[dict[str, str]]:
    """The chat ``messages`` as ``[{"role", "content"}]`` (``developer`` is ``system``; text parts joined)."""
    if not isinstance(value, list) or not value:
        raise RequestError(400, "messages must be a non-empty list", "messages")
    out = []
    for m in value:
        if not isinstance(m, dict):
            raise RequestError(400, "each message must be an object", "messages")
        role = m.get("role")
        if role == "developer":
            role = "system"
        if role not in ("system", "user", "assistant"):
            raise RequestError(400, f"unsupported message role {role!r}", "messages")
        content = m.get("content")
        if isinstance(content, list):  # content parts: keep the text ones
            parts = []
            for part in content:
                if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                    raise RequestError(400, "only text content parts are supported", "messages")
                parts.append(part["text"])
            content = "".join(parts)
        if content is None:
            content = ""
        if not isinstance(content, str):
            raise RequestError(400, "message content must be a string", "messages")
        if m.get("tool_calls") or m.get("function_call"):
            raise RequestError(400, "tool calls are not supported by cai serve", "messages")
        out.append({"role": role, "content": content})
    return out


def parse_completion_prompts(value: Any, tok: Any, limits: ServeLimits) -> list[tuple[list[int], str]]:
    """Normalize a completions ``prompt`` to [(token ids, text)], at most ``limits.max_prompts`` of them."""

    def is_ids(x: Any) -> bool:
        return isinstance(x, list) and bool(x) and all(isinstance(t, int) and not isinstance(t, bool) for t in x)

    if isinstance(value, str):
        items: list[Any] = [value]
    elif is_ids(value):
        items = [value]
    elif isinstance(value, list) and value and all(isinstance(x, str) or is_ids(x) for x in value):
        items = value
    else:
        raise RequestError(
            400, "prompt must be a string, a list of token ids, or a non-empty list of either", "prompt"
        )
    if len(items) > limits.max_prompts:
        raise RequestError(400, f"at most {limits.max_prompts} prompts per request (got {len(items)})", "prompt")
    vocab = len(tok)
    out = []
    for item in items:
        if isinstance(item, str):
            ids = encode_text(tok, item, add_special_tokens=True)
            if not ids:
                raise RequestError(400, "prompt must not be empty", "prompt")
            out.append((ids, item))
        else:
            if any(t < 0 or t >= vocab for t in item):
                raise RequestError(400, f"token ids must be in [0, {vocab})", "prompt")
            out.append((list(item), tok.decode(item)))
    return out
