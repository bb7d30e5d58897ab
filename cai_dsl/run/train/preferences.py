"""Preference pairs: the ``cai label`` records and the TRL / Anthropic HH preference formats, and the hybrid
RLHF + CAI mix of human and AI pairs."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cai_dsl.run.errors import RLAIFError
from cai_dsl.run.feedback import read_jsonl

__all__ = ["PreferencePair", "load_pairs", "mix_pairs", "parse_pair", "parse_transcript"]


@dataclass(frozen=True)
class PreferencePair:
    """One preference: ``conversation`` (a prompt string or a list of user/assistant turns ending with a user
    turn), the ``chosen`` and ``rejected`` responses, ``probability`` = P(chosen better), where it came from."""

    id: str
    conversation: Any
    chosen: str
    rejected: str
    probability: float = 1.0
    source: str = "ai"
    origin: str = ""
    principles: tuple[str, ...] = ()


_TURN_RE = re.compile(r"(?:^|\n\n)(Human|Assistant):[ \t]?")


def parse_transcript(text: str) -> tuple[list[dict[str, str]], str] | None:
    """Split an Anthropic HH transcript ("\\n\\nHuman: ...\\n\\nAssistant: ...") into (turns before the last
    assistant turn, last assistant text); None when it has no final assistant turn after a human turn."""
    marks = list(_TURN_RE.finditer(text))
    if len(marks) < 2 or marks[-1].group(1) != "Assistant":
        return None
    turns = []
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        role = "user" if m.group(1) == "Human" else "assistant"
        turns.append({"role": role, "content": text[m.end() : end].strip()})
    *context, last = turns
    if not context or context[-1]["role"] != "user":
        return None
    return context, last["content"]


def _messages(value: Any, where: str, name: str) -> list[dict[str, str]] | None:
    if not isinstance(value, list):
        return None
    out = []
    for m in value:
        if not isinstance(m, dict) or not isinstance(m.get("content"), str) or m.get("role") not in ("user", "assistant", "system"):
            raise RLAIFError(f"{where}: `{name}` must be a list of {{role, content}} messages")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def _conversation(msgs: list[dict[str, str]]) -> Any:
    turns = [m for m in msgs if m["role"] != "system"]
    if len(turns) == 1 and turns[0]["role"] == "user":
        return turns[0]["content"]
    return turns


def parse_pair(obj: dict, where: str) -> tuple[Any, str, str, float]:
    """``(conversation, better, worse, probability)`` of one preference record, in any supported format:

    * ``cai label`` records and TRL explicit-prompt preferences: ``prompt`` (string or messages), ``chosen``,
      ``rejected`` (strings or one assistant message each); ``probability`` is read when present, else 1;
    * TRL implicit-prompt preferences: ``chosen``/``rejected`` message lists sharing the conversation;
    * Anthropic transcripts (HH-RLHF ``chosen``/``rejected``, or ``text_correct``/``text_incorrect``):
      "Human: ... Assistant: ..." texts whose last assistant turn is the response.
    """
    if "text_correct" in obj or "text_incorrect" in obj:
        good, bad = obj.get("text_correct"), obj.get("text_incorrect")
        names = ("text_correct", "text_incorrect")
    else:
        good, bad = obj.get("chosen"), obj.get("rejected")
        names = ("chosen", "rejected")
    if good is None or bad is None:
        raise RLAIFError(
            f"{where}: expected `prompt`/`chosen`/`rejected` (TRL preference), `text_correct`/`text_incorrect`, "
            f"or `prompt`/`corrects`/`incorrects`; found keys {sorted(obj)}"
        )
    prob = obj.get("probability", 1.0)
    if not isinstance(prob, (int, float)) or isinstance(prob, bool) or not 0.0 <= float(prob) <= 1.0 or math.isnan(prob):
        raise RLAIFError(f"{where}: `probability` must be a number in [0, 1]")
    prompt = obj.get("prompt")
    good_msgs, bad_msgs = _messages(good, where, names[0]), _messages(bad, where, names[1])
    if prompt is not None:
        conv_msgs = _messages(prompt, where, "prompt")
        if conv_msgs is not None:
            conversation = _conversation(conv_msgs)
        elif isinstance(prompt, str):
            parsed = parse_transcript(prompt + "\n\nAssistant: x") if "Human:" in prompt else None
            conversation = _conversation(parsed[0]) if parsed else prompt
        else:
            raise RLAIFError(f"{where}: `prompt` must be a string or a list of messages")
        responses = []
        for value, msgs, name in ((good, good_msgs, names[0]), (bad, bad_msgs, names[1])):
            if msgs is not None:
                if len(msgs) != 1 or msgs[0]["role"] != "assistant":
                    raise RLAIFError(f"{where}: `{name}` must be one assistant message when `prompt` is given")
                responses.append(msgs[0]["content"])
            elif isinstance(value, str):
                responses.append(value)
            else:
                raise RLAIFError(f"{where}: `{name}` must be a string or a list of messages")
        return conversation, responses[0], responses[1], float(prob)
    if good_msgs is not None and bad_msgs is not None:
        if not good_msgs or not bad_msgs or good_msgs[-1]["role"] != "assistant" or bad_msgs[-1]["role"] != "assistant":
            raise RLAIFError(f"{where}: implicit-prompt `{names[0]}`/`{names[1]}` must end with an assistant message")
        if good_msgs[:-1] != bad_msgs[:-1]:
            raise RLAIFError(f"{where}: `{names[0]}` and `{names[1]}` must share the same conversation before the last turn")
        return _conversation(good_msgs[:-1]), good_msgs[-1]["content"], bad_msgs[-1]["content"], float(prob)
    if isinstance(good, str) and isinstance(bad, str):
        a, b = parse_transcript(good), parse_transcript(bad)
        if a is None or b is None:
            raise RLAIFError(
                f"{where}: without a `prompt`, `{names[0]}`/`{names[1]}` must be transcripts ending with an "
                "\"Assistant:\" turn (Anthropic HH format) or message lists"
            )
        if a[0] != b[0]:
            raise RLAIFError(
                f"{where}: `{names[0]}` and `{names[1]}` answer different prompts (their turns before the last "
                "\"Assistant:\" differ); a comparison needs two responses to the same conversation"
            )
        return _conversation(a[0]), a[1], b[1], float(prob)
    raise RLAIFError(f"{where}: `{names[0]}`/`{names[1]}` must be strings or lists of messages")


def load_pairs(path: str | os.PathLike[str], source: str = "ai") -> list[PreferencePair]:
    """Read preference pairs from a JSONL file (``cai label`` output or TRL/Anthropic formats, see :func:`parse_pair`)."""
    pairs = []
    for number, obj in read_jsonl(path):
        where = f"{path}:{number}"
        conversation, chosen, rejected, prob = parse_pair(obj, where)
        principles = obj.get("principles") or ()
        pairs.append(
            PreferencePair(
                id=str(obj.get("id", f"{Path(path).name}:{number}")),
                conversation=conversation,
                chosen=chosen,
                rejected=rejected,
                probability=prob,
                source=source,
                origin=where,
                principles=tuple(principles) if isinstance(principles, list) else (),
            )
        )
    if not pairs:
        raise RLAIFError(f"{path}: no preference pairs")
    return pairs


def mix_pairs(ai: Sequence[PreferencePair], human: Sequence[PreferencePair], human_fraction: float, seed: int = 0) -> list[PreferencePair]:
    """Hybrid RLHF + CAI: the AI pairs plus enough human pairs (sampled with ``seed``, without replacement) that
    they make up ``human_fraction`` of the mix (fewer if there are not enough). ``human_fraction`` 1 keeps only
    the human pairs; 0 only the AI pairs."""
    import random

    if not 0.0 <= human_fraction <= 1.0:
        raise RLAIFError("the human fraction must be in [0, 1]")
    if human_fraction == 0.0 or not human:
        return list(ai)
    if human_fraction == 1.0 or not ai:
        return list(human)
    wanted = round(len(ai) * human_fraction / (1.0 - human_fraction))
    picked = random.Random(seed).sample(list(human), min(wanted, len(human)))
    return list(ai) + picked
