"""Control-token neutralisation: text can never open, close or re-role a chat message.

Inside slot values (and few-shot texts, system prompts and conversation turns) the *control
tokens* of the target's chat format are neutralised by :func:`neutralize`: a backslash is
inserted after the token's first character (``<|im_start|>`` becomes ``<\\|im_start|>``, ``</s>``
becomes ``<\\/s>``, ``[INST]`` becomes ``[\\INST]``). No control token contains a backslash, so the
escaped text contains no control token and the escape cannot create one. The chatml family also
covers the other added tokens of SmolLM2's tokenizer (``<file_sep>``, ``<jupyter_code>``, ...), which
its tokenizer would otherwise read as special tokens.
"""

from __future__ import annotations

import re
from typing import Sequence

__all__ = ["CONTROL_TOKEN_PATTERNS", "contains_control_token", "neutralize"]

_PIPE_TOKEN = r"<\|[A-Za-z0-9_]+\|>"  # chatml, llama3, phi...: <|im_start|>, <|eot_id|>, ...
_STARCODER_TOKENS = tuple(
    f"<{name}>"
    for name in (
        "file_sep", "filename", "reponame", "repo_name", "gh_stars", "issue_start", "issue_comment", "issue_closed",
        "jupyter_start", "jupyter_text", "jupyter_code", "jupyter_output", "jupyter_script", "empty_output",
    )
)  # the added tokens of SmolLM2's (StarCoder-family) tokenizer besides its chatml ones
_INST_TOKENS = ("[INST]", "[/INST]", "<<SYS>>", "<</SYS>>", "<s>", "</s>", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]")


def _token_regex(fixed: Sequence[str], pipe: bool) -> re.Pattern[str]:
    parts = [re.escape(t) for t in sorted(fixed, key=len, reverse=True)]
    if pipe:
        parts.insert(0, _PIPE_TOKEN)
    return re.compile("|".join(parts))


CONTROL_TOKEN_PATTERNS: dict[str, re.Pattern[str]] = {
    "chatml": _token_regex(_STARCODER_TOKENS, pipe=True),
    "llama3": _token_regex((), pipe=True),
    "llama2": _token_regex(_INST_TOKENS, pipe=False),
    "mistral": _token_regex(_INST_TOKENS, pipe=False),
    "model": _token_regex(_INST_TOKENS + _STARCODER_TOKENS, pipe=True),  # unknown template: neutralise every known family
}
"""Per chat format, the control tokens neutralised in text (see the module docstring)."""


def _escape_token(match: re.Match[str]) -> str:
    token = match.group(0)
    return token[0] + "\\" + token[1:]


def neutralize(text: str, chat_format: str = "model") -> str:
    """``text`` with the chat format's control tokens made inert (backslash after their first character)."""
    if not isinstance(text, str):
        raise TypeError(f"expected text, got {type(text).__name__}")
    pattern = CONTROL_TOKEN_PATTERNS.get(chat_format, CONTROL_TOKEN_PATTERNS["model"])
    for _ in range(4):  # one pass suffices (an escape never creates a token); the loop is a guard
        escaped = pattern.sub(_escape_token, text)
        if escaped == text:
            return text
        text = escaped
    return text


def contains_control_token(text: str, chat_format: str = "model") -> bool:
    pattern = CONTROL_TOKEN_PATTERNS.get(chat_format, CONTROL_TOKEN_PATTERNS["model"])
    return pattern.search(text) is not None
