"""String literals of the language: escapes and triple-quoted (dedented) strings."""

from __future__ import annotations

import re
import textwrap

_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "r": "\r"}
_ESCAPE_RE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)", re.S)


def unescape(body: str) -> str:
    """Resolve ``\\"``, ``\\\\``, ``\\n``, ``\\t``, ``\\r`` and ``\\uXXXX``; raise ValueError otherwise."""

    def sub(match: re.Match) -> str:
        esc = match.group(1)
        if esc in _ESCAPES:
            return _ESCAPES[esc]
        if esc.startswith("u") and len(esc) == 5:
            return chr(int(esc[1:], 16))
        raise ValueError(f"unknown escape `\\{esc}`")

    return _ESCAPE_RE.sub(sub, body)


def long_string_value(raw_body: str) -> str:
    """The value of a triple-quoted string body: a first newline is dropped, the
    closing line's indentation and newline are dropped, common indentation is removed."""
    body = raw_body
    if body.startswith("\r\n"):
        body = body[2:]
    elif body.startswith("\n"):
        body = body[1:]
    body = re.sub(r"\r?\n[ \t]*\Z", "", body)
    body = body.replace("\r\n", "\n")
    return unescape(textwrap.dedent(body))
